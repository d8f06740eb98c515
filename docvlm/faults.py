"""Fault injection for tests: crashes, hangs and CUDA out-of-memory errors at chosen points.

Active ONLY when the environment variable DOCVLM_FAULTS is set; otherwise every hook is a no-op.
DOCVLM_FAULTS holds faults separated by ",", each `kind:key=value:key=value`:

  crash:rank=1:after=2     kill -9 this rank right after it wrote its 2nd record of this run
  crash:rank=0:at=work     kill -9 before the pipeline starts (nothing flushed yet)
  crash:rank=0:at=merge    kill -9 after the part file is complete, before the gather
  hang:rank=1:after=1      stop making progress (sleep for ever) after the 1st record
  oom:doc=a.png            raise torch.OutOfMemoryError for every batch holding document a.png

`rank` left out means every rank. Crashes and hangs fire on torchrun's FIRST attempt only
(TORCHELASTIC_RESTART_COUNT=0), so `torchrun --max-restarts=1` shows recovery; an OOM fires always.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from typing import Iterable, Optional

import torch

log = logging.getLogger(__name__)

ENV = "DOCVLM_FAULTS"
KINDS = ("crash", "hang", "oom")
POINTS = ("work", "merge")


@dataclass(frozen=True)
class Fault:
    kind: str
    rank: Optional[int] = None  # None: every rank
    after: Optional[int] = None  # fire after this many records written in this run
    at: Optional[str] = None  # or at one of POINTS
    doc: Optional[str] = None  # oom: the document id

    def applies_to(self, rank: int) -> bool:
        return self.rank is None or self.rank == rank


def parse(text: str) -> list[Fault]:
    """'crash:rank=1:after=2,oom:doc=x.png' -> faults; ValueError naming the bad part."""
    faults = []
    for spec in filter(None, (part.strip() for part in text.split(","))):
        kind, *pairs = spec.split(":")
        if kind not in KINDS:
            raise ValueError(f"{ENV}: unknown fault {kind!r} in {spec!r}; known: {KINDS}")
        opts = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
        if len(opts) != len(pairs) or set(opts) - {"rank", "after", "at", "doc"}:
            raise ValueError(f"{ENV}: bad option in {spec!r}; use rank=N, after=N, at={'|'.join(POINTS)}, doc=ID")
        if opts.get("at") not in (None, *POINTS):
            raise ValueError(f"{ENV}: unknown point at={opts['at']!r} in {spec!r}; known: {POINTS}")
        if kind == "oom" and "doc" not in opts:
            raise ValueError(f"{ENV}: {spec!r} needs doc=ID")
        if kind != "oom" and ("after" in opts) == ("at" in opts):
            raise ValueError(f"{ENV}: {spec!r} needs exactly one of after=N or at=POINT")
        faults.append(Fault(kind, _int(opts.get("rank")), _int(opts.get("after")), opts.get("at"), opts.get("doc")))
    return faults


def active() -> list[Fault]:
    text = os.environ.get(ENV, "")
    return parse(text) if text else []


def after_records(rank: int, written: int) -> None:
    """Hook: this rank has just written (flushed) its `written`-th record of this run."""
    for fault in _first_attempt_faults(rank):
        if fault.after == written:
            _fire(fault, rank, f"after {written} records")


def at_point(point: str, rank: int) -> None:
    """Hook: this rank reached `point` (one of POINTS)."""
    for fault in _first_attempt_faults(rank):
        if fault.at == point:
            _fire(fault, rank, f"at {point}")


def before_batch(stage: str, doc_ids: Iterable[str]) -> None:
    """Hook: a batch of `stage` is about to run; an injected OOM for any of its documents fails it."""
    ids = set(doc_ids)
    for fault in active():
        if fault.kind == "oom" and fault.doc in ids:
            raise torch.OutOfMemoryError(f"CUDA out of memory (injected by {ENV} for {fault.doc} in {stage})")


def _first_attempt_faults(rank: int) -> list[Fault]:
    if os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0":
        return []  # a restarted job must be able to recover
    return [f for f in active() if f.kind in ("crash", "hang") and f.applies_to(rank)]


def _fire(fault: Fault, rank: int, when: str) -> None:
    log.warning("%s: injected %s on rank %d %s", ENV, fault.kind, rank, when)
    for handler in logging.getLogger().handlers:
        handler.flush()
    if fault.kind == "crash":
        os.kill(os.getpid(), signal.SIGKILL)  # as abrupt as the OOM killer or a preempted node
    while True:  # hang: alive but making no progress
        time.sleep(3600)


def _int(value: Optional[str]) -> Optional[int]:
    return None if value is None else int(value)
