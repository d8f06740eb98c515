"""A progress bar on rank 0 that counts documents finished by ALL ranks.

Every rank adds to a counter in the process group's key-value store; rank 0 polls it from a thread
and moves the bar. With one process the bar is moved directly.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Optional

from tqdm import tqdm

from docvlm import dist
from docvlm.dist import DistContext

log = logging.getLogger(__name__)


class Progress:
    def __init__(self, ctx: DistContext, total: int, initial: int, key: str, poll_s: float = 0.5) -> None:
        self.ctx = ctx
        self.key = key
        self.initial = initial
        self.store = dist.store() if ctx.distributed else None
        self._local = 0
        self._stop = threading.Event()
        self.bar: Optional[tqdm] = None
        if ctx.is_main:
            # Not a TTY (batch job logs): a line every ~10% instead of a redrawn bar.
            interactive = sys.stderr.isatty()
            self.bar = tqdm(total=total, initial=initial, unit="doc", desc="loading", dynamic_ncols=True,
                            mininterval=0.5 if interactive else 30.0, file=sys.stderr)
            if self.store is not None:
                self._thread = threading.Thread(target=self._poll, args=(poll_s,), daemon=True)
                self._thread.start()

    def phase(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_description(name)

    def advance(self, n: int = 1) -> None:
        if self.store is not None:
            self.store.add(self.key, n)
        else:
            self._local += n
            self._refresh(self._local)

    def done_count(self) -> int:
        """Documents finished by all ranks so far (rank 0's view)."""
        return self.store.add(self.key, 0) if self.store is not None else self._local

    def close(self) -> None:
        self._stop.set()
        if self.bar is not None:
            self._refresh(self.done_count())
            self.bar.close()

    def _refresh(self, done: int) -> None:
        if self.bar is not None:
            self.bar.n = self.initial + done
            self.bar.refresh()

    def _poll(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            try:
                self._refresh(self.done_count())
            except Exception as err:  # noqa: BLE001 - the bar must never kill the run
                log.debug("progress poll failed: %s", err)
                return
