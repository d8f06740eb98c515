"""The static engine's KV cache: buffers allocated once per batch size, leased to one live conversation.

Every decoder layer has [rows, kv heads, columns, head dim] keys and values (a cross-attention layer:
the image's columns), and one (rows, columns) attention bias. A conversation batch holds rows
[0, rows) as a `Lease` (its `cache` is a transformers cache over the buffers, so transformers' own
forward writes straight into them: `BufferLayer`). One lease lives at a time: a new conversation
retires the last (`serial`). Buffers grow in row buckets and 256-column steps, plus a reserve of
columns for follow-up turns: what the caller plans for them (`Request.later_tokens`), else
`FOLLOW_UP_COLUMNS`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

log = logging.getLogger(__name__)

ROW_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256)
COLUMN_STEP = 256  # attention reads columns up to the next multiple: one graph per 256 columns
FOLLOW_UP_COLUMNS = 2048  # room for later turns nobody planned, so a follow-up rarely has to grow the buffers


def round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def row_bucket(rows: int) -> int:
    return next((b for b in ROW_BUCKETS if b >= rows), round_up(rows, 64))


class BufferLayer(DynamicLayer):
    """A transformers cache layer over rows [0, n) of preallocated buffers: `update` writes in place."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int = 0):
        super().__init__()
        self.key_buffer, self.value_buffer = keys, values  # (rows, kv heads, capacity, head dim) views
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self.set_length(length)

    def set_length(self, length: int) -> None:
        self.length = length
        self.keys = self.key_buffer[:, :, :length]
        self.values = self.value_buffer[:, :, :length]

    def lazy_initialization(self, *args: Any, **kwargs: Any) -> None:
        pass  # the buffers exist already

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        end = self.length + key_states.shape[-2]
        if end > self.key_buffer.shape[2]:
            raise RuntimeError(f"KV buffer of {self.key_buffer.shape[2]} columns is too short for {end}")
        self.key_buffer[:, :, self.length : end].copy_(key_states)
        self.value_buffer[:, :, self.length : end].copy_(value_states)
        self.set_length(end)
        return self.keys, self.values


def buffer_cache(layers: list[DynamicLayer]) -> DynamicCache:
    """A transformers cache whose layers are ours."""
    cache = DynamicCache()
    cache.layers = layers
    return cache


@dataclass
class Buffers:
    """KV for every decoder layer (cross-attention layers: the image's KV), and the attention bias."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    bias: torch.Tensor  # (rows, columns): 0 where a column is attended, dtype min where not
    rows: int
    columns: int


@dataclass
class Lease:
    """A live conversation batch: rows [0, rows) of the buffers. Stands in `Conversations.cache`."""

    cache: DynamicCache
    rows: int
    serial: int  # the engine's conversation number when this lease was made

    @property
    def length(self) -> int:
        return self.cache.layers[0].length


class KVBuffers:
    """Allocation, growth, leases and row selection. `on_change(buffers)` hears of every change: None
    before the buffers are dropped (whatever holds them, e.g. CUDA graphs, must let go first), the
    new buffers after an allocation."""

    def __init__(self, layer_shapes: list[tuple[int, int, bool]], cross_columns: int, dtype: torch.dtype,
                 device: torch.device, name: str, on_change: Callable[[Optional[Buffers]], None]):
        self.layer_shapes, self.cross_columns = layer_shapes, cross_columns
        self.dtype, self.device, self.name = dtype, device, name
        self.on_change = on_change
        self.buffers: Optional[Buffers] = None
        self.serial = 0

    def get(self) -> Buffers:
        assert self.buffers is not None
        return self.buffers

    def release(self) -> None:
        """Free the buffers now (the next batch allocates them again)."""
        self.on_change(None)
        self.buffers = None
        self.serial += 1  # any state still held is over

    def new_conversation(self, rows: int, columns: int, later: int) -> Lease:
        """A fresh conversation batch at rows [0, rows) whose first turn reaches `columns` and later turns
        take `later` more: the last live state ends here."""
        self.serial += 1
        self.ensure_capacity(rows, columns + later)
        return self.lease(rows, length=0)

    def ensure_capacity(self, rows: int, columns: int) -> None:
        """Buffers for a new conversation batch: its rows' bucket and `columns` (every turn's); the last
        buffers serve if they hold both. Otherwise exactly this batch's shape, not the union with the last
        (a bank batch's longer conversations after a batch of more rows: the union is neither batch's
        planned memory). No conversation lives on the old buffers any more, so they are freed BEFORE the
        new ones are allocated (side by side they would need two batches' memory at once)."""
        current = (self.buffers.rows, self.buffers.columns) if self.buffers is not None else (0, 0)
        if row_bucket(rows) <= current[0] and columns <= current[1]:
            return
        self.release()  # (holding no reference to them here: they are freed now)
        self.allocate(row_bucket(rows), round_up(columns, COLUMN_STEP))

    def ensure_columns(self, lease: Lease, needed: int) -> Lease:
        """Columns for a follow-up turn reaching `needed`. One that does not fit in the reserve (a mixed
        batch's statements after a long extraction turn) moves to buffers of ITS rows only: the selected
        few, not the whole batch's rows beside the old buffers."""
        buffers = self.get()
        if needed <= buffers.columns:
            return lease
        log.info("%s: a follow-up turn of %d rows needs %d columns (%d reserved): growing", self.name,
                 lease.rows, needed, buffers.columns)
        lengths = [layer.length for layer in lease.cache.layers]
        self.allocate(row_bucket(lease.rows), round_up(needed + FOLLOW_UP_COLUMNS, COLUMN_STEP), keep=lease)
        return self.lease(lease.rows, lengths[0], lengths)

    def allocate(self, rows: int, columns: int, keep: Optional[Lease] = None) -> None:
        """(Re)allocate buffers; `keep`'s KV is copied over. What was built on the old ones is dropped."""
        old = self.buffers if keep is not None else None  # otherwise freed before the new ones exist
        self.buffers = None
        self.on_change(None)  # frees the graphs (and their references to the old buffers)
        keys, values = [], []
        for heads, head_dim, is_cross in self.layer_shapes:
            shape = (rows, heads, self.cross_columns if is_cross else columns, head_dim)
            keys.append(torch.zeros(shape, dtype=self.dtype, device=self.device))
            values.append(torch.zeros(shape, dtype=self.dtype, device=self.device))
        bias = torch.full((rows, columns), torch.finfo(self.dtype).min, dtype=self.dtype, device=self.device)
        self.buffers = Buffers(keys, values, bias, rows, columns)
        if old is not None and keep is not None:
            for layer, new_keys, new_values, old_keys, old_values in zip(
                    keep.cache.layers, keys, values, old.keys, old.values):
                new_keys[: keep.rows, :, : layer.length] = old_keys[: keep.rows, :, : layer.length]
                new_values[: keep.rows, :, : layer.length] = old_values[: keep.rows, :, : layer.length]
        del old
        self.on_change(self.buffers)
        log.info("%s: KV buffers for %d rows x %d columns (%.2f GiB)", self.name, rows, columns,
                 sum(t.numel() * t.element_size() for t in keys + values) / 2**30)

    def lease(self, rows: int, length: int, lengths: Optional[list[int]] = None) -> Lease:
        buffers = self.get()
        lengths = lengths or [length] * len(buffers.keys)
        layers = [BufferLayer(k[:rows], v[:rows], n) for k, v, n in zip(buffers.keys, buffers.values, lengths)]
        return Lease(buffer_cache(layers), rows, self.serial)

    def check_lease(self, cache: Any) -> Lease:
        if not isinstance(cache, Lease) or cache.serial != self.serial:
            raise ValueError(f"{self.name}: this conversation state belongs to an earlier batch; the static "
                             "engine keeps one live conversation batch (its KV buffers were reused)")
        return cache

    def select(self, cache: Any, index: torch.Tensor) -> Lease:
        """The rows `index` of the lease `cache`, moved to rows [0, len(index))."""
        lease = self.check_lease(cache)
        buffers = self.get()
        for layer, keys, values in zip(lease.cache.layers, buffers.keys, buffers.values):
            used = layer.length
            keys[: len(index), :, :used] = keys[index, :, :used]  # a gathered copy, then written back
            values[: len(index), :, :used] = values[index, :, :used]
        return self.lease(len(index), lease.length, [layer.length for layer in lease.cache.layers])

    def key_bias(self, mask: torch.Tensor) -> torch.Tensor:
        """The bias for rows [0, len(mask)): 0 on the columns `mask` marks real, masked elsewhere."""
        bias = self.get().bias
        bias.fill_(torch.finfo(self.dtype).min)  # every row: a graph's rows past the batch read no stale columns
        bias[: mask.shape[0], : mask.shape[1]].masked_fill_(mask.bool(), 0.0)
        return bias[: mask.shape[0]]
