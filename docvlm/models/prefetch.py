"""The processor runs ahead in threads: the next batch's first turns are ready when the engine gets to them."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional, Sequence

import torch

from docvlm.models.protocol import Request

PREPROCESS_THREADS = 8  # at most; no more than this rank's share of CPU cores (torch's thread count)


class Prefetcher:
    """Processor outputs by (id(image), prompt); the image is kept with its future so its id stays unique."""

    def __init__(self, preprocess: Callable[[Sequence[Request]], dict[str, Any]]):
        self.preprocess = preprocess
        self.prepared: dict[tuple[int, str], tuple[Any, Future]] = {}
        self.latest: set[tuple[int, str]] = set()
        self.pool: Optional[ThreadPoolExecutor] = None

    def prepare(self, requests: Sequence[Request]) -> None:
        """Start the processor on these first-turn requests in background threads (the next batch)."""
        self.latest = {(id(request.image), request.prompt) for request in requests}
        self.submit(requests)

    def submit(self, requests: Sequence[Request]) -> None:
        """The processor starts on every request not started yet (threads: the first batch too)."""
        if self.pool is None:
            workers = max(2, min(PREPROCESS_THREADS, torch.get_num_threads()))
            self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docvlm-preprocess")
        for request in requests:
            key = (id(request.image), request.prompt)
            if key not in self.prepared:
                self.prepared[key] = (request.image, self.pool.submit(self.preprocess, [request]))

    def take(self, request: Request) -> dict[str, Any]:
        """The processor's output for `request` (computed now if it was never submitted)."""
        _, future = self.prepared.pop((id(request.image), request.prompt), (None, None))
        return future.result() if future is not None else self.preprocess([request])

    def forget_unused(self) -> None:
        """Prefetches for a batch that never ran (its documents failed before) are dropped."""
        self.prepared = {k: v for k, v in self.prepared.items() if k in self.latest}
