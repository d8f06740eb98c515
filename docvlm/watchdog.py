"""Hang detection: a rank that stops making progress ends the job with an error naming it.

Each rank publishes a heartbeat in the process group's key-value store: a counter and a line saying
what it is doing ("extraction: batch of 4 from a.png"). The pipeline beats per batch and per record.
A thread on every rank reads all heartbeats; when a working rank's counter has not moved for
`timeout_s` (measured on the reader's own clock, so clock skew between nodes does not matter), it
logs the error and leaves with os._exit: a rank stuck in a collective cannot be raised out of it, and
torchrun tears the whole job down once one rank exits non-zero. A rank that finished its work and
waits for the others calls `waiting()` and is not judged.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Callable, Optional

from docvlm import dist
from docvlm.dist import DistContext

log = logging.getLogger(__name__)

EXIT_CODE = 3  # distinct from a crash (-9) and an ordinary failure (1)
WAITING = "waiting for the other ranks"


class _LocalStore:
    """Stands in for the c10d store without a process group (one process)."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}

    def set(self, key: str, value: str) -> None:
        self._data[key] = value.encode()

    def check(self, keys: list[str]) -> bool:
        return all(k in self._data for k in keys)

    def get(self, key: str) -> bytes:
        return self._data[key]


class Watchdog:
    """Create on every rank with the same `key`; `beat(what)` while working; `close()` on every rank."""

    def __init__(self, ctx: DistContext, timeout_s: float, key: str, *, poll_s: Optional[float] = None,
                 on_hang: Optional[Callable[[str], None]] = None) -> None:
        self.ctx = ctx
        self.timeout_s = timeout_s
        self.key = key
        self.store = dist.store() or _LocalStore()
        self.on_hang = on_hang or _end_job
        self._count = 0
        self._stop = threading.Event()
        self.beat("starting")
        self._thread = threading.Thread(target=self._watch, args=(poll_s or min(5.0, timeout_s / 4),),
                                        name="docvlm-watchdog", daemon=True)
        self._thread.start()

    def beat(self, what: str) -> None:
        """This rank made progress; `what` says what it does now (shown if it then stops)."""
        self._count += 1
        self.store.set(self._rank_key(self.ctx.rank), f"{self._count}|{what}")

    def waiting(self) -> None:
        """This rank's own work is done; it now waits in a collective and is not judged any more."""
        self.beat(WAITING)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def _rank_key(self, rank: int) -> str:
        return f"{self.key}/rank-{rank}"

    def _watch(self, poll_s: float) -> None:
        last_seen: dict[int, tuple[str, float]] = {}  # rank -> (its heartbeat, when it last changed)
        while not self._stop.wait(poll_s):
            try:
                stuck = self._check(last_seen, time.monotonic())
            except Exception as err:  # noqa: BLE001 - store gone (job ending): the collectives' timeout is the backstop
                log.debug("watchdog stopped: %s", err)
                return
            if stuck is not None and not self._stop.is_set():
                self.on_hang(stuck)
                return

    def _check(self, last_seen: dict[int, tuple[str, float]], now: float) -> Optional[str]:
        """The error message for the first rank stuck longer than the timeout, or None."""
        for rank in range(self.ctx.world_size):
            key = self._rank_key(rank)
            if not self.store.check([key]):
                continue  # not started yet: judged from its first heartbeat on
            beat = self.store.get(key).decode()
            if rank not in last_seen or last_seen[rank][0] != beat:
                last_seen[rank] = (beat, now)
                continue
            what = beat.split("|", 1)[1]
            silent = now - last_seen[rank][1]
            if what != WAITING and silent > self.timeout_s:
                return (f"rank {rank} made no progress for {silent:.0f} s (timeout {self.timeout_s:g} s, "
                        f"processing.hang_timeout_s); it was: {what}. Ending the job; rerun the same "
                        "command to resume (see logs/ for that rank's last lines)")
        return None


def _end_job(message: str) -> None:
    """Log the error where users look (console, rank log, torchrun's failure summary), then exit."""
    log.error("HANG: %s", message)
    for handler in logging.getLogger().handlers:
        handler.flush()
    _record_for_torchrun(message)
    sys.stderr.flush()
    os._exit(EXIT_CODE)  # the main thread may be stuck in C code: only this ends the process


def _record_for_torchrun(message: str) -> None:
    try:
        from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

        ErrorHandler().record_exception(TimeoutError(message))  # no-op without torchrun
    except Exception as err:  # noqa: BLE001 - the exit below matters more than the summary
        log.debug("could not record the hang for torchrun: %s", err)
