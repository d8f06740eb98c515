"""The processor runs ahead in threads: the next batch's first turns are ready when the engine gets to them.

Each result is staged for the upload in its thread too: floating tensors already in the model's dtype
(the cast the upload makes anyway, so the same values) and, on CUDA, in page-locked memory, so the
upload is an asynchronous copy that does not hold the engine's thread (a pageable upload of a page's
pixels held it ~14 ms on an H100 host). Few threads, one intra-op thread each: the thread that launches
the prefill's kernels must not be starved. Measured on an H100 host of 16 cores (2026-11-28), a batch
of 64 documents while the next 64 were prefetched: 8 threads (each fanning out over every core)
5.5-6.2 s, 4 threads of one intra-op thread 4.9 s, the same batch with its inputs already made 4.6 s.
A request no worker has started yet when the engine needs it is made on the engine's thread (it would
only wait; it has every intra-op thread). A run's first batch has nothing to overlap with (~44 ms a
document on one thread for Qwen3-VL at 12 tiles: ~0.6 s before a batch of 56 could start on 4 workers),
so what the engine waits on goes to a worker per core (`submit`; `Prefetcher` says more), requests
already queued behind the background workers (the pipeline `prepare`s a run's first batch too) included.
That pool scales poorly (H100 host, 2026-12-05, scripts/bench_preprocess.py: 35 ms a Qwen3-VL document on
one thread, 13.2 ms a document on 16 workers), and workers running beside the prefill slow the thread
that launches it: first turns streamed into their packs as the pool made the inputs lost as much prefill
time as they saved waiting (BENCHMARKS 2026-12-05, night). The image work on the GPU (the processors take
`device=`; only pixels made here) saved a first batch's wait but put the processor's text side on the
engine's thread for every batch, prefetched ones included: slower on InternVL's two batches and on any
long run (BENCHMARKS 2026-12-05, late).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Sequence

import torch

from docvlm.models.host_memory import keep_freed_memory
from docvlm.models.protocol import Request

PREPROCESS_THREADS = 4  # background workers at most (the next batch, while the GPU works)


class Prefetcher:
    """Processor outputs by (id(image), prompt); the image is kept with its future so its id stays unique.
    Two pools of single-threaded workers: `prepare` (the next batch, while the engine runs this one) on
    at most PREPROCESS_THREADS, so the thread launching the GPU's work is not crowded out; `submit` (what
    the engine is about to wait for: nothing prefetched it, e.g. a run's first batch) on a worker per
    core of this rank: the GPU is idle until those are made. (0802ab1's 8 workers of every intra-op
    thread made a first batch faster than 4 single-threaded ones: the stages' other time rose 0.1-0.9 s
    on an H100, BENCHMARKS 2026-12-05 afternoon.)"""

    def __init__(self, preprocess: Callable[[Sequence[Request]], dict[str, Any]], dtype: torch.dtype, pin: bool):
        self.preprocess = preprocess
        self.dtype, self.pin = dtype, pin  # floating tensors leave in the model's dtype; pinned for CUDA
        self.prepared: dict[tuple[int, str], tuple[Any, Future]] = {}
        self.latest: set[tuple[int, str]] = set()
        self.pools: dict[str, ThreadPoolExecutor] = {}

    def prepare(self, requests: Sequence[Request]) -> None:
        """Start the processor on these first-turn requests in background threads (the next batch)."""
        self.latest = {(id(request.image), request.prompt) for request in requests}
        self._start(requests, "background", PREPROCESS_THREADS)

    def submit(self, requests: Sequence[Request]) -> None:
        """The processor starts on every request not started yet, a worker per core (the caller waits):
        those still queued behind the background workers (a run's first batch was `prepare`d too) move."""
        self._start(requests, "now", torch.get_num_threads(), move_queued=True)

    def _start(self, requests: Sequence[Request], pool_name: str, workers: int, move_queued: bool = False) -> None:
        pool = self.pools.get(pool_name)
        if pool is None:
            keep_freed_memory()  # the workers' temporaries reused, not faulted in again a page (host_memory.py)
            workers = max(2, min(workers, torch.get_num_threads()))
            pool = self.pools[pool_name] = ThreadPoolExecutor(
                max_workers=workers, thread_name_prefix=f"docvlm-preprocess-{pool_name}",
                initializer=_one_intra_op_thread)
        for request in requests:
            key = (id(request.image), request.prompt)
            queued = self.prepared.get(key)
            if queued is None or (move_queued and queued[1].cancel()):
                self.prepared[key] = (request.image, pool.submit(self.staged, request))

    def take(self, request: Request) -> dict[str, Any]:
        """The processor's staged output for `request`, computed now on the caller's thread if it was
        never submitted or no worker has started it: the caller would only wait (a run's first batch has
        nothing to overlap with), and its thread keeps every intra-op thread."""
        _, future = self.prepared.pop((id(request.image), request.prompt), (None, None))
        if future is None or future.cancel():
            return self.staged(request)
        return future.result()

    def staged(self, request: Request) -> dict[str, Any]:
        return {key: self._stage(value) for key, value in self.preprocess([request]).items()}

    def _stage(self, value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        if value.is_floating_point():
            value = value.to(self.dtype)
        return value.pin_memory() if self.pin else value

    def forget_unused(self) -> None:
        """Prefetches for a batch that never ran (its documents failed before) are dropped."""
        self.prepared = {k: v for k, v in self.prepared.items() if k in self.latest}


def _one_intra_op_thread() -> None:
    """A worker's torch ops run on its own thread (the setting is per thread): workers each fanning out
    over every core would crowd out the thread that feeds the GPU."""
    torch.set_num_threads(1)
