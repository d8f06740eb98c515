"""Run a stage over items in batches; a failing batch is split and retried down to single items.

A CUDA out-of-memory (or any other error) in a batch of n items retries the two halves; an item
that still fails on its own gets the error, and nothing else in the batch is lost.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence, TypeVar

import torch

log = logging.getLogger(__name__)
T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_in_batches(
    items: Sequence[T],
    batch_size: int,
    run_batch: Callable[[Sequence[T]], None],
    on_item_error: Callable[[T, BaseException], None],
    upcoming: Optional[Callable[[Sequence[T]], None]] = None,
) -> None:
    """`upcoming(batch)` is called for the first batch, then for each next one before the current runs
    (to prepare it meanwhile; the first batch first, so its own preparation is not queued behind)."""
    batches = chunks(items, batch_size)
    if upcoming is not None and batches:
        upcoming(batches[0])
    for i, batch in enumerate(batches):
        if upcoming is not None and i + 1 < len(batches):
            upcoming(batches[i + 1])
        _run_or_split(batch, run_batch, on_item_error)


def _run_or_split(batch: Sequence[T], run_batch: Callable[[Sequence[T]], None],
                  on_item_error: Callable[[T, BaseException], None]) -> None:
    try:
        run_batch(batch)
        return
    except Exception as err:  # noqa: BLE001 - a document's failure must never stop the rank
        if len(batch) == 1:
            log.warning("item failed alone: %s: %s", type(err).__name__, str(err))
            on_item_error(batch[0], err)
            return
        # str(err): a log record must not keep the exception (its traceback holds the batch's tensors)
        log.warning("batch of %d failed (%s: %s); retrying as two halves", len(batch), type(err).__name__, str(err))
    # Out of the except block: the exception's traceback, and with it every tensor the failed batch's
    # frames held (KV buffers among them), is gone before the halves run and the cache is emptied.
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = len(batch) // 2
    _run_or_split(batch[:half], run_batch, on_item_error)
    _run_or_split(batch[half:], run_batch, on_item_error)
