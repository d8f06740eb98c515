"""Live progress on rank 0: documents finished by ALL ranks, documents/s, ETA and the phase of each rank.

Every rank adds to counters in the process group's key-value store: no collectives, so nothing here
can put the ranks out of step. Rank 0 polls the counters from a thread. On a terminal it draws a
tqdm bar; otherwise (Slurm logs, pipes, torchrun --tee) it logs one line every `log_every` documents.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from contextlib import ExitStack
from typing import Optional, TextIO

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from docvlm import dist
from docvlm.dist import DistContext

log = logging.getLogger(__name__)

PHASES = ("loading", "detection", "detection+extraction", "extraction", "bank turns", "merge")  # in pipeline order


class _Counters:
    """Named integer counters shared by all ranks (the process group's store), or local ones."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.store = dist.store()
        self._local: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 0) -> int:
        """Add `n` (0 reads) and return the new value."""
        if self.store is not None:
            return int(self.store.add(f"{self.prefix}/{name}", n))
        with self._lock:
            self._local[name] = self._local.get(name, 0) + n
            return self._local[name]


class Progress:
    """Create on every rank with the same `key` (unique per job); call `close()` on every rank.

    resumed(n): documents recorded by an earlier run (counted, but not in documents/s).
    advance(n): documents finished now.  phase(name): this rank entered one of PHASES.
    """

    def __init__(self, ctx: DistContext, total: int, key: str, *, interactive: Optional[bool] = None,
                 log_every: Optional[int] = None, poll_s: float = 0.5, stream: Optional[TextIO] = None) -> None:
        self.ctx = ctx
        self.total = total
        self.counters = _Counters(key)
        self._phase: Optional[str] = None
        self.phase("loading")
        self.bar: Optional[tqdm] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._while_shown = ExitStack()
        if not ctx.is_main:
            return
        stream = stream or sys.stderr
        self.interactive = stream.isatty() if interactive is None else interactive
        self.log_every = log_every or max(1, math.ceil(total / 10))
        self._next_log = self.log_every
        self._last_logged = -1
        self._started = time.perf_counter()
        self._resumed_seen = 0
        if self.interactive:
            # smoothing=0: documents/s and ETA from the average over the run, steadier than a moving one.
            self.bar = tqdm(total=total, unit="doc", desc="loading", file=stream, dynamic_ncols=True, smoothing=0)
            self._while_shown.enter_context(logging_redirect_tqdm())  # log lines above the bar, not through it
        self._thread = threading.Thread(target=self._poll, args=(poll_s,), name="docvlm-progress", daemon=True)
        self._thread.start()

    def phase(self, name: str) -> None:
        if name not in PHASES:
            raise ValueError(f"unknown progress phase {name!r}; known: {PHASES}")
        if name == self._phase:
            return
        if self._phase is not None:
            self.counters.add(f"phase/{self._phase}", -1)
        self.counters.add(f"phase/{name}", 1)
        self._phase = name

    def resumed(self, n: int) -> None:
        if n:
            self.counters.add("resumed", n)

    def advance(self, n: int = 1) -> None:
        self.counters.add("done", n)

    def done_count(self) -> int:
        """Documents finished by all ranks so far, resumed ones included."""
        return self.counters.add("resumed") + self.counters.add("done")

    def phases(self) -> dict[str, int]:
        """How many ranks are in each phase now (phases with none left out), in pipeline order."""
        counts = {name: self.counters.add(f"phase/{name}") for name in PHASES}
        return {name: n for name, n in counts.items() if n > 0}

    def close(self) -> int:
        """Stop polling and show the final count; returns it (-1 if the store failed).

        Call it after every rank has advanced (run.py: after the gather).
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            done = self.done_count()
            if self.ctx.is_main:
                self._show_final(done)
            return done
        except Exception as err:  # noqa: BLE001 - the display must not hide the job's own outcome
            log.warning("progress display failed: %s", err)
            return -1
        finally:
            self._while_shown.close()

    def _show_final(self, done: int) -> None:
        if self.bar is not None:
            self._update_bar(done, self.counters.add("resumed"))
            self.bar.close()
        elif self._last_logged != done:
            self._log_line(done, self.counters.add("resumed"))

    def _poll(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            try:
                self._show()
            except Exception as err:  # noqa: BLE001 - the progress display must never end the run
                log.debug("progress poll stopped: %s", err)
                return

    def _show(self) -> None:
        resumed, done = self.counters.add("resumed"), self.done_count()
        if self.bar is not None:
            self._update_bar(done, resumed)
        elif done >= self._next_log:
            self._log_line(done, resumed)
            self._next_log = (done // self.log_every + 1) * self.log_every

    def _update_bar(self, done: int, resumed: int) -> None:
        assert self.bar is not None
        if resumed != self._resumed_seen:  # move tqdm's `initial` along: resumed documents add no rate
            self.bar.initial += resumed - self._resumed_seen
            self.bar.n += resumed - self._resumed_seen
            self._resumed_seen = resumed
        self.bar.set_description(self._phase_text(), refresh=False)
        if done > self.bar.n:
            self.bar.update(done - self.bar.n)
        else:
            self.bar.refresh()

    def _log_line(self, done: int, resumed: int) -> None:
        elapsed = time.perf_counter() - self._started
        rate = (done - resumed) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        self._last_logged = done
        log.info("progress %d/%d documents (%.0f%%) | %s | %.2f documents/s | ETA %s", done, self.total,
                 100.0 * done / max(self.total, 1), self._phase_text(), rate, _clock(eta))

    def _phase_text(self) -> str:
        counts = self.phases()
        if len(counts) == 1:
            return next(iter(counts))
        return ", ".join(f"{name} {n}" for name, n in counts.items())  # ranks per phase


def _clock(seconds: float) -> str:
    if math.isnan(seconds):
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"
