"""The faster of exact ways, timed once on this GPU: where two ways of one computation give the same
result and which is faster depends on the GPU and the shapes.

E.g. attention at the vision towers' head dims (72, 80): on an H100 cuDNN's SDPA beat torch's flash
attention by 1.36-1.63x at head dims 64 and 72 (bench_attention.py, 2026-12-05), while flash takes
ragged batches in one call; an A100 or another cuDNN may order them otherwise. The first call with a
key runs each way (a warm-up and a few timed runs, real inputs) and the faster serves the rest of
the process; the choice and its times are logged. A way this GPU cannot run (a kernel tiling that
needs more shared memory than it has) is left out, with a warning; if none runs, the error is raised.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch

from docvlm.models.runs import sync

log = logging.getLogger(__name__)
T = TypeVar("T")
TIMED_RUNS = 3

_CHOSEN: dict[Hashable, str] = {}


def fastest(what: str, key: Hashable, ways: dict[str, Callable[[], T]], device: torch.device) -> T:
    """Run the way chosen for (`what`, `key`), choosing it first if this is the key's first call."""
    chosen = _CHOSEN.get((what, key))
    if chosen is None:
        ms = {}
        for name, way in ways.items():
            try:
                ms[name] = _ms_a_call(way, device)
            except Exception as error:  # noqa: BLE001  (raised below when no way runs)
                log.warning("%s %s: %s does not run here: %s", what, key, name, str(error).splitlines()[0][:200])
                failed = error
        if not ms:
            raise failed
        chosen = _CHOSEN[(what, key)] = min(ms, key=ms.get)
        log.info("%s %s: %s (ms a call: %s)", what, key, chosen,
                 ", ".join(f"{name} {t:.3f}" for name, t in ms.items()))
    return ways[chosen]()


def _ms_a_call(way: Callable[[], object], device: torch.device) -> float:
    way()  # warm-up: kernel selection, caches
    sync(device)
    start = time.perf_counter()
    for _ in range(TIMED_RUNS):
        way()
    sync(device)
    return (time.perf_counter() - start) / TIMED_RUNS * 1e3
