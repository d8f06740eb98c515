"""Resume: a rerun with the same output.dir skips what is recorded and ends with the same results.

Runs are killed (kill -9, injected through DOCVLM_FAULTS) before the first flush, mid-shard and after
the part files but before the merge, then rerun with another number of ranks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from docvlm import outputs
from docvlm.inputs import Document
from docvlm.paths import REPO_ROOT
from docvlm.records import DocumentRecord
from docvlm.work import _split_resume
from docvlm.synth import generate_corpus

FAST = [
    "model=tiny_internvl",
    "processing.max_new_tokens.detect=8",
    "processing.max_new_tokens.extract=24",
    "processing.max_new_tokens.bank_headers=8",
    "processing.max_new_tokens.bank_rows=24",
    "processing.batch_size=2",
]
VOLATILE = {"rank", "timings", "attempts"}  # the fingerprints are equal: same files, same settings
N_DOCS = 4


def launch(ranks: int, data: Path, out: Path, *overrides: str, cache: Path, faults: str = "",
           torchrun_args: tuple[str, ...] = (), timeout: int = 300) -> subprocess.CompletedProcess:
    """ranks=0: plain python (no torchrun). Returns the finished process (any exit status)."""
    cmd = [sys.executable]
    if ranks:
        cmd += ["-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--standalone", *torchrun_args]
    cmd += [str(REPO_ROOT / "launch.py"), f"data.dir={data}", f"output.dir={out}", *FAST, *overrides]
    env = {**os.environ, "DOCVLM_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("DOCVLM_FAULTS", None)
    if faults:
        env["DOCVLM_FAULTS"] = faults
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO_ROOT)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"exit {proc.returncode}\nSTDERR:\n{proc.stderr[-6000:]}"
    return proc


def stable(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def part_records(out: Path) -> list[dict]:
    lines = [line for p in sorted((out / "parts").glob("rank-*.jsonl")) for line in p.read_text().splitlines()]
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("resume-docs")
    generate_corpus(data, {"INVOICE": 2, "RECEIPT": 1, "BANK_STATEMENT": 1}, seed=5)
    return data


@pytest.fixture(scope="module")
def cache(tiny_models) -> Path:
    return tiny_models["internvl"].parents[1]


@pytest.fixture(scope="module")
def reference_dir(corpus, cache, tmp_path_factory) -> Path:
    """An uninterrupted run (one process)."""
    out = tmp_path_factory.mktemp("reference")
    ok(launch(0, corpus, out, cache=cache))
    rows = stable(out)
    assert len(rows) == N_DOCS and all(r["error"] is None for r in rows)
    return out


@pytest.fixture(scope="module")
def reference(reference_dir) -> list[dict]:
    return stable(reference_dir)


@pytest.mark.parametrize("first, fault, recorded, second", [
    (2, "crash:rank=0:at=work", None, 1),  # killed before the first flush
    (1, "crash:rank=0:after=2", 2, 2),  # killed mid-shard
    (2, "crash:rank=1:at=merge", N_DOCS, 3),  # part files complete, killed before the merge
], ids=["before-first-flush", "mid-shard", "before-merge"])
def test_resume_after_a_kill_gives_the_uninterrupted_results(first, fault, recorded, second, corpus, cache,
                                                              reference, tmp_path):
    out = tmp_path / "out"
    killed = launch(first, corpus, out, cache=cache, faults=fault)
    assert killed.returncode != 0 and "injected crash" in killed.stderr
    assert not (out / "results.jsonl").exists()
    done = part_records(out)
    if recorded is not None:
        assert len(done) == recorded
    else:
        assert len(done) < N_DOCS  # rank 0 died before its first record; rank 1 may have written some

    ok(launch(second, corpus, out, cache=cache))
    assert stable(out) == reference
    summary = json.loads((out / "summary.json").read_text())
    redone = sum(stats["documents"] for stats in summary["ranks"])  # this run's work only
    assert redone == N_DOCS - len({r["image"] for r in done})
    images = [r["image"] for r in part_records(out)]
    assert sorted(set(images)) == sorted(r["image"] for r in reference)
    assert len(images) == len(set(images)), "a recorded document was processed again"


def test_truncated_last_line_is_redone_and_not_glued_to_the_next_record(corpus, cache, reference_dir, reference,
                                                                        tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference_dir, out)
    part = out / "parts" / "rank-00000.jsonl"
    text = part.read_text()
    last = text.splitlines()[-1]
    part.write_text(text[: len(text) - len(last) // 2 - 1])  # a crash mid-write: half a line, no newline
    (out / "results.jsonl").unlink()

    ok(launch(0, corpus, out, cache=cache))
    assert stable(out) == reference
    recorded = outputs.read_parts(out)  # the redone record sits on a line of its own
    assert sorted(recorded) == sorted(r["image"] for r in reference)
    assert json.loads(last)["image"] in recorded


def _record(image: str, attempts: int, error: bool) -> DocumentRecord:
    failure = {"kind": "OutOfMemoryError", "stage": "detect", "message": "x"} if error else None
    return DocumentRecord(index=0, image=image, attempts=attempts, error=failure)


def test_errors_are_retried_until_max_retries_then_kept():
    docs = [Document(index=i, id=f"d{i}.png", path=Path(f"d{i}.png")) for i in range(4)]
    earlier = {"d0.png": _record("d0.png", 1, error=False), "d1.png": _record("d1.png", 1, error=True),
               "d2.png": _record("d2.png", 2, error=True)}
    kept, todo = _split_resume(docs, earlier, max_retries=1)
    assert [r.image for r in kept] == ["d0.png", "d2.png"]  # d2 failed twice: error kept
    assert [(d.id, attempt) for d, attempt in todo] == [("d1.png", 2), ("d3.png", 1)]
    kept, todo = _split_resume(docs, earlier, max_retries=0)
    assert [r.image for r in kept] == ["d0.png", "d1.png", "d2.png"]


def test_the_latest_attempt_wins_across_world_sizes(tmp_path):
    """Run 1 (2 ranks) failed d on rank 1; run 2 (1 rank) redid it on rank 0: the retry counts."""
    with outputs.PartWriter(tmp_path, 1) as part:
        part.write(_record("d.png", 1, error=True))
    with outputs.PartWriter(tmp_path, 0) as part:
        part.write(_record("d.png", 2, error=False))
    assert outputs.read_parts(tmp_path)["d.png"].ok


def test_overwrite_deletes_only_owned_files_and_never_on_an_elastic_restart(tmp_path, monkeypatch):
    from docvlm.config import RunConfig
    from docvlm.dist import DistContext
    from docvlm.run import _prepare_output

    owned = [tmp_path / "results.jsonl", tmp_path / "summary.json", tmp_path / "parts" / "rank-00000.jsonl"]
    mine = [tmp_path / "notes.txt", tmp_path / "data" / "a.png"]
    for path in owned + mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    cfg = RunConfig()
    cfg.output.overwrite = True
    ctx = DistContext(0, 1, 0, __import__("torch").device("cpu"))

    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "1")  # torchrun restarted the job: keep its progress
    _prepare_output(cfg, ctx, tmp_path)
    assert all(p.exists() for p in owned + mine)

    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", "0")
    _prepare_output(cfg, ctx, tmp_path)
    assert not any(p.exists() for p in owned) and all(p.exists() for p in mine)
