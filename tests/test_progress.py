"""Progress on rank 0 counts the documents of ALL ranks: a tqdm bar on a terminal, log lines otherwise."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import torch

from docvlm.dist import DistContext
from docvlm.paths import REPO_ROOT
from docvlm.progress import Progress
from docvlm.synth import generate_corpus

# Rank 0 finishes 3 documents, rank 1 finishes 4 and had 1 recorded by an earlier run: 8 in all.
TWO_RANKS = """\
import io, json, logging, sys, time
sys.path.insert(0, {repo!r})
import torch.distributed as td
from docvlm import dist
from docvlm.progress import Progress

ctx = dist.init_distributed("cpu", 60)
lines = io.StringIO()
logging.getLogger("docvlm.progress").addHandler(logging.StreamHandler(lines))
logging.getLogger("docvlm.progress").setLevel(logging.INFO)
bar_text = io.StringIO()
bar = Progress(ctx, total=8, key="test/bar", interactive=True, stream=bar_text, poll_s=0.02)
logged = Progress(ctx, total=8, key="test/log", interactive=False, log_every=2, poll_s=0.02)
for progress in (bar, logged):
    progress.resumed([0, 1][ctx.rank])
    progress.phase(["extraction", "bank turns"][ctx.rank])
td.barrier()
phases = bar.phases()
td.barrier()
for _ in range([3, 4][ctx.rank]):
    bar.advance()
    logged.advance()
    time.sleep(0.05)
td.barrier()  # every rank has finished before rank 0 closes (run.py: after the gather)
finals = [bar.close(), logged.close()]
if ctx.is_main:
    print(json.dumps({{"total": bar.bar.total, "n": bar.bar.n, "finals": finals, "phases": phases,
                      "bar": bar_text.getvalue(), "lines": lines.getvalue()}}))
dist.shutdown()
"""


def test_counts_and_phases_of_both_ranks(tmp_path):
    script = tmp_path / "two_ranks.py"
    script.write_text(TWO_RANKS.format(repo=str(REPO_ROOT)))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script)], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-4000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["total"] == 8 and seen["n"] == 8 and seen["finals"] == [8, 8]
    assert seen["phases"] == {"extraction": 1, "bank turns": 1}
    assert re.search(r"\b8/8\b", seen["bar"]) and "doc/s" in seen["bar"]
    lines = seen["lines"].splitlines()
    assert lines[-1].startswith("progress 8/8 documents (100%)"), lines
    assert "documents/s" in lines[-1] and "ETA" in lines[-1]
    assert len(lines) >= 2 and len(lines) == len(set(lines))  # a line per 2 documents, no repeats


def test_one_process_counts_locally():
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    progress = Progress(ctx, total=5, key="local", interactive=False, log_every=5, poll_s=0.01)
    assert progress.phases() == {"loading": 1}
    progress.phase("detection")
    assert progress.phases() == {"detection": 1}
    progress.resumed(2)
    progress.advance(3)
    assert progress.close() == 5
    with pytest.raises(ValueError, match="unknown progress phase 'decoding'"):
        progress.phase("decoding")


def run_in_terminal(cmd: list[str], env: dict[str, str], cwd: Path, timeout_s: float) -> tuple[int, str]:
    """Run `cmd` with a pseudo-terminal (120 columns) as stdin/stdout/stderr; returns (exit status, output)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1.0)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every process holding the terminal has exited
                    break
                if not data:
                    break
                chunks.append(data)
        else:
            proc.kill()
            pytest.fail(f"timed out after {timeout_s} s:\n{b''.join(chunks).decode(errors='replace')[-4000:]}")
    finally:
        os.close(master)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_bar_on_a_terminal_counts_every_rank(tmp_path, tiny_models):
    data = tmp_path / "docs"
    generate_corpus(data, {"INVOICE": 2, "RECEIPT": 1}, seed=4)  # rank 0: 2 documents, rank 1: 1
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO_ROOT / "launch.py"), "model=tiny_internvl", f"data.dir={data}", f"output.dir={tmp_path / 'out'}",
           "processing.max_new_tokens.detect=8", "processing.max_new_tokens.extract=8", "processing.batch_size=1"]
    env = {**os.environ, "DOCVLM_CACHE": str(tiny_models["internvl"].parents[1]), "HF_HUB_OFFLINE": "1",
           "TERM": "xterm"}
    status, out = run_in_terminal(cmd, env, REPO_ROOT, timeout_s=240)
    assert status == 0, out[-4000:]
    assert re.search(r"merge: 100%\|.*\| 3/3 \[", out), out[-3000:]  # rank 0 did 2: the 3rd is rank 1's
    assert "doc/s" in out
    assert "progress 3/3 documents" not in out  # a terminal gets the bar, not the log lines
    assert "[rank 0] INFO" in out and "[rank 1] INFO" not in out  # other ranks: warnings only on the console
