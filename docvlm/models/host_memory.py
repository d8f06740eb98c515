"""The host allocator keeps what it frees (glibc): the processor's threads stop page-faulting.

Why: the processor allocates and frees ~40 MB of temporaries a page (the page as floats, resized,
patches or tiles, the cast copy). glibc serves blocks that large with fresh mmaps (thread arenas: fresh
heaps) and unmaps them on free, so every page's temporaries are faulted in again, page by page, and
page faults of one process's threads serialise on its memory map. Measured on a 2-core host
(scripts/bench_processor_threads.py, Qwen3-VL's processor at 12 tiles, 2026-12-05): 2 worker threads
30.9-31.4 ms a page with 11,300-12,000 minor faults and ~19 ms of kernel time a page; keeping freed
memory (no mmap for big blocks, no trimming, one arena) 22.7-23.2 ms with 270-390 faults and 0.9 ms of
kernel time. The cost: the process keeps its peak heap (a batch's temporaries) instead of returning it.
The entry points (launch.py, scripts/benchmark.py) call it first, while the process has one thread: the
threads started later then share its one arena. Applied after other threads made arenas of their own,
those arenas go on serving from fresh mmapped heaps (measured: faults down only 40-60%); the prefetcher
calls it too when its pools start (once per process, so a no-op after the entry point's call).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX, M_ARENA_MAX = -1, -4, -8
NEVER_TRIM = 2**31 - 1  # mallopt takes a C int: the largest

_applied: bool | None = None
_lock = threading.Lock()


def keep_freed_memory() -> bool:
    """Once per process: glibc keeps freed blocks for reuse. False where the C library is not glibc."""
    global _applied
    with _lock:
        if _applied is None:
            _applied = _mallopt_all(((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM), (M_ARENA_MAX, 1)))
        return _applied


def _mallopt_all(settings: tuple[tuple[int, int], ...]) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # musl, macOS: other allocators, other knobs
        return False
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in settings)
