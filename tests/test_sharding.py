"""Cost-balanced contiguous sharding (processing.shard=cost, issue 5).

balanced_ranges: hand-checked cases and properties against brute force. End to end (torchrun, gloo,
CPU, tiny InternVL): statements clustered at the start of the input; cost mode on 1 and 2 ranks gives
identical records, every document once, phase-1 error records once and not run again, ranges more
balanced by estimated cost than equal counts; a killed cost-mode run resumes without redoing work.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docvlm.bench.scaling import scaling_rows, table
from docvlm.config import RunConfig, ShardCost, TokenBudgets
from docvlm.dist import balanced_ranges, shard_range
from docvlm.paths import REPO_ROOT
from docvlm.pipeline.cost import CostModel
from docvlm.records import DocumentRecord
from docvlm.schema import load_schema
from docvlm.synth import generate_corpus

# ---------------------------------------------------------------- balanced_ranges


def _range_costs(costs: list[float], ranges: list[range]) -> list[float]:
    return [sum(costs[i] for i in r) for r in ranges]


def _brute_force_bottleneck(costs: list[float], world: int) -> float:
    """The smallest largest-range cost over every way to cut `costs` into `world` contiguous ranges."""
    n, best = len(costs), math.inf
    for cuts in itertools.combinations_with_replacement(range(n + 1), world - 1):
        bounds = [0, *cuts, n]
        best = min(best, max(sum(costs[a:b]) for a, b in zip(bounds, bounds[1:])))
    return best


@pytest.mark.parametrize("costs, world, expected", [
    ([1, 1, 1, 1], 2, [(0, 2), (2, 4)]),
    ([4, 1, 1, 1, 1], 2, [(0, 1), (1, 5)]),  # one heavy document alone, the light ones together
    ([1, 1, 1, 1, 4], 2, [(0, 4), (4, 5)]),
    ([5, 5, 5] + [1] * 12, 4, [(0, 1), (1, 2), (2, 6), (6, 15)]),  # best largest cost: 9
    ([0, 0, 0, 0, 0, 0], 3, [(0, 2), (2, 4), (4, 6)]),  # free documents (all resumed): split by count
    ([3, 3], 4, [(0, 1), (1, 2), (2, 2), (2, 2)]),  # fewer documents than ranks: idle ranks
    ([], 3, [(0, 0), (0, 0), (0, 0)]),
    ([2, 7, 1], 1, [(0, 3)]),
])
def test_balanced_ranges_hand_checked(costs, world, expected):
    assert [(r.start, r.stop) for r in balanced_ranges(costs, world)] == expected


def test_balanced_ranges_rejects_bad_input():
    with pytest.raises(ValueError, match="world_size"):
        balanced_ranges([1.0], 0)
    with pytest.raises(ValueError, match="finite and >= 0"):
        balanced_ranges([1.0, -1.0], 2)
    with pytest.raises(ValueError, match="finite and >= 0"):
        balanced_ranges([float("nan")], 2)


def test_balanced_ranges_properties_against_brute_force_and_equal_counts():
    rng = random.Random(5)
    for _ in range(600):
        n, world = rng.randint(0, 9), rng.randint(1, 5)
        costs = [rng.choice([0.0, 1.0, 2.5, 7.0, rng.random() * 10]) for _ in range(n)]
        ranges = balanced_ranges(costs, world)
        assert len(ranges) == world
        assert [i for r in ranges for i in r] == list(range(n)), (costs, world, ranges)  # contiguous, ordered, once
        if n >= world:
            assert all(len(r) > 0 for r in ranges), (costs, world, ranges)  # no rank left idle needlessly
        largest = max(_range_costs(costs, ranges))
        by_count = max(_range_costs(costs, [shard_range(n, r, world) for r in range(world)]))
        assert largest <= by_count + 1e-9
        assert largest == pytest.approx(_brute_force_bottleneck(costs, world), rel=1e-9, abs=1e-12)


def test_balanced_ranges_is_fast_on_a_large_input():
    rng = random.Random(1)
    costs = [rng.choice([1.0, 1.0, 1.0, 4.0]) for _ in range(100_000)]
    start = time.perf_counter()
    ranges = balanced_ranges(costs, 8)
    assert time.perf_counter() - start < 5.0
    per_rank = _range_costs(costs, ranges)
    assert max(per_rank) - min(per_rank) <= 2 * 4.0  # within a couple of documents of even


# ---------------------------------------------------------------- cost estimate and config


def test_cost_of_a_document_follows_its_flow_and_the_budgets():
    schema = load_schema()
    budgets = TokenBudgets(detect=8, extract=256, bank_headers=64, bank_rows=1024)
    model = CostModel(schema, budgets, ShardCost(), max_tiles=6, batch_size=8)
    prefill = 45e-6 * 7 * 256  # 6 tiles + thumbnail, 256 tokens a tile
    invoice = DocumentRecord(index=0, image="a.png", document_type="INVOICE")
    statement = DocumentRecord(index=1, image="b.png", document_type="BANK_STATEMENT")
    failed = DocumentRecord(index=2, image="c.png", error={"kind": "truncated", "stage": "load", "message": "x"})
    assert model.cost(invoice) == pytest.approx(prefill + 0.010 / 8 * 256)
    assert model.cost(statement) == pytest.approx(prefill + 0.010 / 8 * (64 + 1024))
    assert model.cost(failed) == 0.0
    assert model.cost(invoice, "BANK_STATEMENT") == model.cost(statement)  # ground-truth routing decides
    bigger_batch = CostModel(schema, budgets, ShardCost(), max_tiles=6, batch_size=32)
    assert bigger_batch.cost(statement) < model.cost(statement)  # a decode step serves the whole batch
    # statements run in bank batches of their own size (their conversations reach further: fewer rows)
    banks_apart = CostModel(schema, budgets, ShardCost(), max_tiles=6, batch_size=8, bank_batch_size=4)
    assert banks_apart.cost(statement) == pytest.approx(prefill + 0.010 / 4 * (64 + 1024))
    assert banks_apart.cost(invoice) == model.cost(invoice)


def test_shard_config_is_validated():
    cfg = RunConfig()
    cfg.data.dir, cfg.model.path = "/data", "/model"
    cfg.processing.shard = "size"
    with pytest.raises(ValueError, match=r"processing.shard='size'.*\('count', 'cost'\)"):
        cfg.validate()
    cfg.processing.shard = "cost"
    cfg.processing.shard_cost.decode_s_per_step = 0.0
    with pytest.raises(ValueError, match="processing.shard_cost.decode_s_per_step"):
        cfg.validate()
    cfg.processing.shard_cost.decode_s_per_step = 0.01
    cfg.model.family = "ocr"
    with pytest.raises(ValueError, match="processing.shard='cost'.*model.family=ocr"):
        cfg.validate()
    cfg.model.family = "internvl"
    cfg.validate()


def test_scaling_report_separates_the_modes_and_shows_costs():
    def summary(shard: str, world: int, per_s: float, costs: list[float], errors: int = 0) -> dict:
        ranks = [{"rank": r, "documents": 4, "busy_s": 10.0 + r, "load_model_s": 1.0, "first_result_s": 2.0,
                  "shard": shard, "estimated_cost": c} for r, c in enumerate(costs)]
        return {"world_size": world, "processed_this_run": 8, "elapsed_s": 12.0, "documents_per_s": per_s,
                "gather_s": 0.01, "ranks": ranks, "errors": errors}

    rows = scaling_rows([summary("cost", 2, 1.5, [5.0, 5.0]), summary("count", 2, 1.0, [8.0, 2.0], errors=3),
                         summary("count", 1, 0.8, [10.0]), summary("cost", 1, 0.75, [10.0])])
    assert [(r["shard"], r["ranks"]) for r in rows] == [("count", 1), ("count", 2), ("cost", 1), ("cost", 2)]
    assert [r["efficiency"] for r in rows] == [1.0, 0.625, 1.0, 1.0]  # each mode against its own 1-rank run
    assert [r["efficiency_vs_best_1"] for r in rows] == [1.0, 0.625, 0.938, 0.938]  # against count's 0.8
    assert rows[1]["estimated_cost_per_rank"] == [8.0, 2.0] and rows[1]["errors"] == 3
    text = table(rows)
    assert "| count | 2 | 8 | 3 |" in text and "8.0, 2.0" in text and "5.0, 5.0" in text


def test_scaling_report_warns_about_runs_with_error_records(tmp_path, capsys):
    from docvlm.bench.scaling import main

    for name, errors in (("a", 0), ("b", 5)):
        (tmp_path / name).mkdir()
        ranks = [{"rank": 0, "documents": 8, "busy_s": 1.0, "load_model_s": 0.1, "shard": "count"}]
        (tmp_path / name / "summary.json").write_text(json.dumps(
            {"world_size": 1 if name == "a" else 2, "processed_this_run": 8, "elapsed_s": 1.0,
             "documents_per_s": 8.0, "gather_s": 0.0, "ranks": ranks, "errors": errors}))
    main([str(tmp_path / "a"), str(tmp_path / "b")])
    assert "WARNING: runs with error records, their rates are not comparable: count N=2: 5" in capsys.readouterr().out


# ---------------------------------------------------------------- end to end (torchrun, gloo, CPU)

FAST = [
    "model=tiny_internvl",
    "processing.max_tiles=1",  # small prompts: fast on CPU
    "processing.max_new_tokens.detect=8",
    "processing.max_new_tokens.extract=8",
    "processing.max_new_tokens.bank_headers=8",
    "processing.max_new_tokens.bank_rows=40",  # statements cost several invoices
    "processing.batch_size=2",
    "processing.shard=cost",
    "debug.route_by_ground_truth=true",  # the tiny model's detection is noise: the true type picks the flow
]
VOLATILE = {"rank", "timings", "attempts", "evaluation"}
STATEMENTS, OTHERS = 3, 5
BROKEN = "c-broken.png"  # unreadable: an error record from phase 1 (load)


@pytest.fixture(scope="module")
def clustered(tmp_path_factory) -> Path:
    """Bank statements first, then invoices and receipts, then an unreadable file; one ground truth."""
    data = tmp_path_factory.mktemp("clustered")
    rows: list[dict] = []
    for prefix, counts in (("a", {"BANK_STATEMENT": STATEMENTS}), ("b", {"INVOICE": 3, "RECEIPT": 2})):
        part = tmp_path_factory.mktemp(f"part-{prefix}")
        with generate_corpus(part, counts, seed=11).open() as f:
            for row in csv.DictReader(f):
                (data / f"{prefix}-{row['image_file']}").write_bytes((part / row["image_file"]).read_bytes())
                rows.append({**row, "image_file": f"{prefix}-{row['image_file']}"})
    (data / BROKEN).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with (data / "ground_truth.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return data


@pytest.fixture(scope="module")
def cache(tiny_models) -> Path:
    return tiny_models["internvl"].parents[1]


def _oom_doc(data: Path) -> str:
    return sorted(p.name for p in data.glob("b-*.png"))[0]  # detection fails on it: an error from phase 1


def launch(ranks: int, data: Path, out: Path, cache: Path, faults: str, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--standalone",
           str(REPO_ROOT / "launch.py"), f"data.dir={data}", f"data.ground_truth={data / 'ground_truth.csv'}",
           f"output.dir={out}", *FAST, *overrides]
    env = {**os.environ, "DOCVLM_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "DOCVLM_FAULTS": faults}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=REPO_ROOT)


def ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"exit {proc.returncode}\nSTDERR:\n{proc.stderr[-6000:]}"


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def stable(out: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows_of(out)]


def progress_reached_the_total(out: Path, total: int) -> bool:
    """Rank 0's progress counts every rank's documents (resumed ones too) and ends at the total."""
    return f"progress {total}/{total} documents" in (out / "logs" / "rank-00000.log").read_text()


def part_images(out: Path) -> list[str]:
    return [json.loads(line)["image"] for p in sorted((out / "parts").glob("rank-*.jsonl"))
            for line in p.read_text().splitlines()]


@pytest.fixture(scope="module")
def one_rank(clustered, cache, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cost-n1")
    ok(launch(1, clustered, out, cache, faults=f"oom:doc={_oom_doc(clustered)}"))
    return out


def test_cost_mode_on_two_ranks_matches_one_rank_and_balances_the_cost(clustered, cache, one_rank, tmp_path):
    out = tmp_path / "n2"
    ok(launch(2, clustered, out, cache, faults=f"oom:doc={_oom_doc(clustered)}"))
    names = sorted(p.name for p in clustered.glob("*.png"))
    rows = rows_of(out)
    assert [r["image"] for r in rows] == names and [r["index"] for r in rows] == list(range(len(names)))
    assert stable(out) == stable(one_rank)  # world size does not change a single record
    assert sorted(part_images(out)) == names  # every document written once, by one rank
    assert progress_reached_the_total(out, len(names))

    by_image = {r["image"]: r for r in rows}
    assert by_image[BROKEN]["error"]["stage"] == "load"
    assert by_image[_oom_doc(clustered)]["error"]["stage"] == "detect"  # phase-1 error kept, not run again
    good = [r for r in rows if r["error"] is None]
    assert len(good) == STATEMENTS + OTHERS - 1
    assert all("detect" in r["raw"] for r in good)
    statements = [r for r in good if r["document_type"] == "BANK_STATEMENT"]
    assert len(statements) == STATEMENTS and all(r["raw"]["bank_rows"] for r in statements)

    summary = json.loads((out / "summary.json").read_text())
    ranks = summary["ranks"]
    assert [r["shard"] for r in ranks] == ["cost", "cost"]
    assert sum(r["detected"] for r in ranks) == len(names)  # phase 1: equal-count shares
    assert sum(r["documents"] for r in ranks) == len(names)  # phase 2: each document finished once
    assert summary["stages"]["detect"]["documents"] == len(names) - 2  # not the unreadable file, nor the failed one

    # The same cost estimate over equal-count shards (what shard=count would give) is less balanced.
    model = CostModel(load_schema(), TokenBudgets(detect=8, extract=8, bank_headers=8, bank_rows=40), ShardCost(),
                      max_tiles=1, batch_size=2)
    costs = [model.cost(DocumentRecord.from_json(r)) for r in rows]
    by_count = [sum(costs[i] for i in shard_range(len(costs), rank, 2)) for rank in range(2)]
    by_cost = [r["estimated_cost"] for r in ranks]
    assert sum(by_cost) == pytest.approx(sum(costs), abs=1e-2)
    assert max(by_cost) < max(by_count) - 0.05, (by_cost, by_count)


def test_a_killed_cost_mode_run_resumes_without_redoing_work(clustered, cache, one_rank, tmp_path):
    out = tmp_path / "out"
    faults = f"oom:doc={_oom_doc(clustered)}"
    keep_errors = "processing.max_retries=0"  # error records count as recorded: nothing may run twice
    killed = launch(2, clustered, out, cache, f"{faults},crash:rank=0:after=1", keep_errors)
    assert killed.returncode != 0 and "injected crash" in killed.stderr
    done = set(part_images(out))
    assert 1 <= len(done) < len(list(clustered.glob("*.png")))

    ok(launch(2, clustered, out, cache, faults, keep_errors))
    assert stable(out) == stable(one_rank)
    names = sorted(p.name for p in clustered.glob("*.png"))
    images = part_images(out)
    assert sorted(set(images)) == names
    assert len(images) == len(set(images)), "a recorded document was processed again"
    assert progress_reached_the_total(out, len(names))
    ranks = json.loads((out / "summary.json").read_text())["ranks"]
    assert sum(r["documents"] for r in ranks) == len(names) - len(done)
    assert sum(r["detected"] for r in ranks) == len(names) - len(done)  # recorded ones are not detected again
