"""Crashes and OOM under torchrun: nothing lost, nothing duplicated, every failure a record."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from docvlm.paths import REPO_ROOT
from test_resume import FAST, N_DOCS, cache, corpus, launch, ok, part_records, reference, reference_dir, stable  # noqa: F401


def test_torchrun_max_restarts_recovers_from_a_crashed_rank(corpus, cache, reference, tmp_path):
    out = tmp_path / "out"
    proc = ok(launch(2, corpus, out, cache=cache, faults="crash:rank=1:after=1", torchrun_args=("--max-restarts=1",)))
    assert "injected crash on rank 1" in proc.stderr  # it did crash, and torchrun restarted it
    assert stable(out) == reference
    images = [r["image"] for r in part_records(out)]
    assert len(images) == len(set(images)) == N_DOCS


def test_kill_9_of_the_whole_job_at_any_moment_then_rerun(corpus, cache, reference, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(REPO_ROOT / "launch.py"), f"data.dir={corpus}", f"output.dir={out}", *FAST,
           "processing.batch_size=1", "processing.group_window=1"]  # one record at a time
    env = {**os.environ, "DOCVLM_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    env.pop("DOCVLM_FAULTS", None)
    job = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.monotonic() + 120
    while job.poll() is None and not part_records_safe(out) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)  # torchrun and every rank, mid-write or not
    job.wait()
    assert job.returncode == -signal.SIGKILL and not (out / "results.jsonl").exists()

    ok(launch(1, corpus, out, cache=cache))
    assert stable(out) == reference


def part_records_safe(out: Path) -> int:
    try:
        return sum(len(p.read_text().splitlines()) for p in (out / "parts").glob("rank-*.jsonl"))
    except OSError:
        return 0


def test_injected_oom_and_bad_files_end_as_error_records_counted_by_kind(corpus, cache, reference, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(corpus, data)
    (data / "empty.png").write_bytes(b"")
    (data / "notes.png").write_text("not an image\n")
    victim = reference[0]["image"]
    out = tmp_path / "out"
    ok(launch(2, data, out, cache=cache, faults=f"oom:doc={victim}"))

    rows = stable(out)
    assert [r["image"] for r in rows] == [r["image"] for r in reference] + ["empty.png", "notes.png"]
    assert rows[0]["error"]["kind"] == "OutOfMemoryError" and rows[0]["error"]["stage"] == "detect+extract"
    assert rows[1:N_DOCS] == reference[1:]  # its batch mate and all the others: as in a clean run
    summary = json.loads((out / "summary.json").read_text())
    assert summary["errors_by_kind"] == {"OutOfMemoryError": 1, "empty_file": 1, "not_an_image": 1}
    logs = "".join(p.read_text() for p in (out / "logs").glob("rank-*.log"))
    assert "retrying as two halves" in logs  # the batch was split, not failed whole
