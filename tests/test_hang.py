"""Hangs: a rank that stops making progress ends the job with an error naming it, in bounded time."""

from __future__ import annotations

import time

import pytest
import torch

from docvlm import faults
from docvlm.dist import DistContext
from docvlm.watchdog import Watchdog
from test_resume import cache, corpus, launch  # noqa: F401

CTX = DistContext(0, 1, 0, torch.device("cpu"))


def watch(timeout_s: float) -> tuple[Watchdog, list[str]]:
    hangs: list[str] = []
    return Watchdog(CTX, timeout_s, key="test", poll_s=0.05, on_hang=hangs.append), hangs


def test_silent_rank_is_named_with_what_it_was_doing():
    dog, hangs = watch(0.3)
    dog.beat("extraction: stage extract, batch of 2 (a.png, b.png)")
    time.sleep(0.8)
    dog.close()
    assert len(hangs) == 1
    assert "rank 0 made no progress" in hangs[0] and "batch of 2 (a.png, b.png)" in hangs[0]


def test_beating_or_waiting_rank_is_not_a_hang():
    dog, hangs = watch(0.3)
    for _ in range(10):
        dog.beat("working")
        time.sleep(0.08)
    dog.waiting()  # done: now in a collective, however long the others take
    time.sleep(0.6)
    dog.close()
    assert hangs == []


def test_fault_spec_errors_name_the_problem(monkeypatch):
    assert faults.parse("crash:rank=1:after=2, oom:doc=a.png") == [
        faults.Fault("crash", rank=1, after=2), faults.Fault("oom", doc="a.png")]
    for bad in ("boom:rank=1", "crash:rank=1", "crash:at=nowhere", "oom:rank=1", "hang:after=1:x=2"):
        with pytest.raises(ValueError, match="DOCVLM_FAULTS"):
            faults.parse(bad)
    monkeypatch.delenv(faults.ENV, raising=False)
    faults.after_records(0, 1)  # no faults set: nothing happens
    faults.before_batch("detect", ["a.png"])


def test_hung_rank_ends_the_torchrun_job_within_the_timeout(corpus, cache, tmp_path):
    started = time.monotonic()
    proc = launch(2, corpus, tmp_path / "out", "processing.hang_timeout_s=3", "processing.batch_size=1",
                  "processing.group_window=1", cache=cache, faults="hang:rank=1:after=1", timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert "rank 1 made no progress" in proc.stderr, proc.stderr[-4000:]
    assert "processing.hang_timeout_s" in proc.stderr
    assert elapsed < 60  # far below the 1800 s collective timeout
