"""The real job as users launch it: torchrun (gloo, CPU) over generated documents with tiny models."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from docvlm.paths import REPO_ROOT
from docvlm.synth import generate_corpus

# Short budgets keep the tiny models fast; the code paths are the real ones.
FAST = [
    "processing.max_new_tokens.detect=8",
    "processing.max_new_tokens.extract=24",
    "processing.max_new_tokens.bank_headers=8",
    "processing.max_new_tokens.bank_rows=24",
    "processing.batch_size=2",
]
VOLATILE = {"rank", "timings"}


@pytest.fixture(scope="module")
def seven_docs(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("seven")
    generate_corpus(data, {"INVOICE": 3, "RECEIPT": 2, "BANK_STATEMENT": 2}, seed=3)
    assert len(list(data.glob("*.png"))) == 7
    return data


def launch(ranks: int, data: Path, out: Path, *overrides: str, env_cache: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--standalone"]
    if ranks == 0:  # plain python, no torchrun
        cmd = [sys.executable]
    cmd += [str(REPO_ROOT / "launch.py"), f"data.dir={data}", f"output.dir={out}", *overrides]
    env = {**os.environ, "DOCVLM_CACHE": str(env_cache), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=REPO_ROOT)
    assert proc.returncode == 0, f"exit {proc.returncode}\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-8000:]}"
    return proc


def stable(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def test_one_two_three_ranks_give_identical_results(seven_docs, tmp_path, tiny_models):
    cache = tiny_models["internvl"].parents[1]
    results = {}
    for ranks in (1, 2, 3):
        out = tmp_path / f"out{ranks}"
        launch(ranks, seven_docs, out, "model=tiny_internvl", *FAST, env_cache=cache)
        results[ranks] = stable(out)
        rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
        assert [r["index"] for r in rows] == list(range(7))
        assert sorted({r["rank"] for r in rows}) == list(range(ranks))
        assert len(list((out / "parts").glob("rank-*.jsonl"))) == ranks
        summary = json.loads((out / "summary.json").read_text())
        assert summary["world_size"] == ranks and summary["documents"] == 7
    assert results[1] == results[2] == results[3]
    images = [r["image"] for r in results[1]]
    assert images == sorted(images)
    assert all(r["error"] is None for r in results[1]), results[1]
    assert all(r["document_type"] in {"INVOICE", "RECEIPT", "BANK_STATEMENT"} for r in results[1])


def test_two_documents_on_three_ranks(seven_docs, tmp_path, tiny_models):
    data = tmp_path / "two"
    data.mkdir()
    for name in sorted(p.name for p in seven_docs.glob("*.png"))[:2]:
        (data / name).write_bytes((seven_docs / name).read_bytes())
    out = tmp_path / "out"
    launch(3, data, out, "model=tiny_internvl", *FAST, env_cache=tiny_models["internvl"].parents[1])
    rows = stable(out)
    assert [r["image"] for r in rows] == sorted(p.name for p in data.glob("*.png"))


@pytest.mark.parametrize("family", ["qwen3_vl", "mllama"])
def test_other_families_run_the_whole_pipeline_without_torchrun(family, seven_docs, tmp_path, tiny_models):
    out = tmp_path / "out"
    launch(0, seven_docs, out, f"model=tiny_{family}", *FAST, env_cache=tiny_models[family].parents[1])
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 7 and all(r["error"] is None for r in rows)
    with (out / "results.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 7 and "TOTAL_AMOUNT" in table[0]


def test_benchmark_mode_random_weights_and_ground_truth_routing(seven_docs, tmp_path, tiny_models):
    """model.random_weights + debug.route_by_ground_truth (the GPU scaling runs): detection still
    runs, then the true type picks the flow, so bank statements take their two turns."""
    out = tmp_path / "out"
    launch(0, seven_docs, out, "model=tiny_internvl", "model.random_weights=true",
           "debug.route_by_ground_truth=true", f"data.ground_truth={seven_docs / 'ground_truth.csv'}",
           "processing.force_length=true", *FAST, env_cache=tiny_models["internvl"].parents[1])
    with (seven_docs / "ground_truth.csv").open() as f:
        truth = {row["image_file"]: row["DOCUMENT_TYPE"] for row in csv.DictReader(f)}
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["image"]: r["document_type"] for r in rows} == truth
    assert all("routed_from" in r["details"] for r in rows)
    statements = [r for r in rows if r["document_type"] == "BANK_STATEMENT"]
    assert statements and all(len(r["raw"]["bank_rows"]) > 0 for r in statements)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["bank_rows"]["new_tokens"] == 24 * len(statements)  # forced lengths
    assert [(r["batch_size"], r["bank_batch_size"]) for r in summary["ranks"]] == [(2, 2)]  # configured: both
