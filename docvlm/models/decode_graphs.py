"""The static engine's decode loop: tokens 2.. of every row, one step a token over the KV buffers.

Each step is one pass of the language model's layers (text_layers.py) for every row at once; on CUDA
it is a CUDA graph captured once per row bucket and replayed: one launch a step. Where the Triton
attention runs, the step attends over every column of the buffers (the kernel skips the blocks the
bias masks), so one graph serves every prompt length (a capture costs ~0.6 s on an H100, and every
rank pays its own); elsewhere, one graph per (row bucket, 256-column bucket). The graph feeds its
outputs back (token, position, column, row done), so the host only replays and looks for the end
every few steps.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Optional

import torch

from docvlm.models import attention
from docvlm.models.adapter import FamilyAdapter
from docvlm.models.kv_buffers import COLUMN_STEP, Buffers, KVBuffers, Lease, round_up, row_bucket
from docvlm.models.text_layers import TextStack, decode_attend

log = logging.getLogger(__name__)

END_CHECK_EVERY = 16  # decode steps between looks (one device sync) for "every row has ended"


@dataclass
class StepState:
    """The small tensors a decode step reads and advances (fixed addresses: graphs replay on them)."""

    tokens: torch.Tensor  # (rows, 1) the token fed this step
    positions: torch.Tensor  # (rows, 1) its rotary position
    column: torch.Tensor  # (1,) the buffer column it is written to
    first: torch.Tensor  # (rows,) each row's first attended column (its left padding ends): the kernel's walk starts there
    generated: torch.Tensor  # (rows,) tokens generated so far
    budgets: torch.Tensor  # (rows,)
    running: torch.Tensor  # (rows,) bool: not ended yet (ended rows are fed the pad token, as generate does)
    check_end: torch.Tensor  # (1,) bool: end ids end a row (False under force_length)
    cross_bias: Optional[torch.Tensor] = None  # cross-attention: (rows, 1, 1, image tokens)
    cross_rows: Optional[torch.Tensor] = None  # cross-attention: (rows, 1, 1) 0 where a text row sees no image
    graphs: dict[tuple[int, int], Any] = field(default_factory=dict)


class DecodeGraphs:
    """Step state, the step itself, and its CUDA graphs (dropped whenever the buffers change)."""

    def __init__(self, stack: TextStack, adapter: FamilyAdapter, kv: KVBuffers, end_ids: torch.Tensor, pad_id: int,
                 device: torch.device, use_graphs: bool):
        self.stack, self.adapter, self.kv = stack, adapter, kv
        self.end_ids, self.pad_id = end_ids, pad_id
        self.device, self.dtype = device, stack.dtype
        self.graphs_on = use_graphs and device.type == "cuda"
        self.state: Optional[StepState] = None
        self.pool = None
        self.captures, self.capture_s = 0, 0.0  # CUDA graphs recorded so far and the time it took

    def buffers_changed(self, buffers: Optional[Buffers]) -> None:
        """The graphs (and their references to the old buffers) go; new buffers get a new step state.
        A fresh pool for the next captures: torch 2.11 asserts when a pool outlives all its graphs and is reused."""
        self.state, self.pool = None, None
        if buffers is not None:
            self.state = self._new_state(buffers.rows)

    def get(self) -> StepState:
        assert self.state is not None
        return self.state

    def decode(self, lease: Lease, inputs: dict[str, torch.Tensor], first: torch.Tensor, budgets: list[int],
               force_length: bool) -> torch.Tensor:
        """Tokens 2.. of every row: (rows, steps) ids, ended rows padded."""
        rows, start = lease.rows, lease.length
        mask = inputs["attention_mask"]
        state = self.get()
        bias = self.kv.key_bias(mask)
        state.first[:rows] = (bias[:, :start] > attention.masked_bias(bias.dtype)).to(torch.int8).argmax(dim=1)
        state.tokens[:rows, 0] = first
        state.positions[:rows, 0] = mask.sum(dim=1) + self.adapter.position_offsets(rows, self.device)
        state.column.fill_(start)
        state.generated[:rows] = 1
        state.budgets[:rows] = torch.tensor(budgets, device=self.device)
        state.running.zero_()
        state.running[:rows] = state.budgets[:rows] > 1
        if not force_length:
            state.running[:rows] &= ~torch.isin(first, self.end_ids)
        state.check_end.fill_(not force_length)
        self._set_cross_bias(inputs, rows)
        bucket = row_bucket(rows)
        capacity, whole_buffer = self.kv.get().columns, self.attends_whole_buffer()  # fixed for the loop
        out = []
        for step in range(max(budgets) - 1):
            columns = capacity if whole_buffer else min(round_up(start + step + 1, COLUMN_STEP), capacity)
            self.replay(bucket, columns)
            out.append(state.tokens[:rows, 0].clone())
            if not force_length and step % END_CHECK_EVERY == END_CHECK_EVERY - 1 and not state.running[:rows].any():
                break  # every row has ended: generate would stop here too (later ids are pads)
        for index, layer in enumerate(lease.cache.layers):
            if index not in self.stack.cross_layers:  # the image KV of cross-attention layers stays as it is
                layer.set_length(start + len(out))
        return torch.stack(out, dim=1)

    def attends_whole_buffer(self) -> bool:
        """Whether decode steps attend over every column of the buffers: where the Triton kernel runs
        (it skips the masked tail), so one graph per row bucket serves every length (see the docstring)."""
        return attention.runs(self.dtype, self.device, self.stack.head_dim)

    def replay(self, rows: int, columns: int) -> None:
        state = self.get()
        if not self.graphs_on:
            self.step(rows, columns)
            return
        graph = state.graphs.get((rows, columns))
        if graph is None:
            graph = self._capture(rows, columns)
        graph.replay()

    def _capture(self, rows: int, columns: int) -> Any:
        """Record the step for this bucket; a warm-up run first (as CUDA graphs require), then undone."""
        began = time.perf_counter()
        state = self.get()
        saved = [t.clone() for t in (state.tokens, state.positions, state.column, state.generated, state.running)]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self.step(rows, columns)  # writes this column's KV: the replay rewrites the same values
        torch.cuda.current_stream(self.device).wait_stream(side)
        for tensor, value in zip((state.tokens, state.positions, state.column, state.generated, state.running), saved):
            tensor.copy_(value)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self.step(rows, columns)
        state.graphs[(rows, columns)] = graph
        self.captures += 1
        self.capture_s += time.perf_counter() - began
        log.debug("captured the decode step for %d rows, %d columns", rows, columns)
        return graph

    def step(self, rows: int, columns: int) -> None:
        """One decode step for rows [0, rows), attention over columns [0, columns); advances the state."""
        state, buffers, stack = self.get(), self.kv.get(), self.stack
        buffers.bias[:rows].index_fill_(1, state.column, 0.0)  # the new token sees itself
        attend = partial(decode_attend, column=state.column, bias=buffers.bias[:rows], columns=columns,
                         first=state.first[:rows])
        hidden = stack.text.embed_tokens(state.tokens[:rows])
        cos, sin = stack.rotary(hidden, self.adapter.rotary_ids(state.positions[:rows]))
        cross = None if state.cross_bias is None else (state.cross_bias[:rows], state.cross_rows[:rows])
        hidden = stack.layers(hidden, cos, sin, [k[:rows] for k in buffers.keys], [v[:rows] for v in buffers.values],
                              attend, cross)
        logits = stack.last_logits(hidden)
        running = state.running[:rows]
        token = torch.where(running, logits.argmax(dim=-1), torch.full_like(running, self.pad_id, dtype=torch.long))
        state.generated[:rows] += 1
        ended = (state.generated[:rows] >= state.budgets[:rows]) | (
            (token[:, None] == self.end_ids[None, :]).any(dim=1) & state.check_end)
        running &= ~ended
        state.tokens[:rows, 0] = token
        state.positions[:rows] += 1
        state.column += 1

    def _set_cross_bias(self, inputs: dict[str, torch.Tensor], rows: int) -> None:
        """Cross-attention: the image mask row of the last token, which every generated token repeats."""
        found = self.adapter.cross_attention_bias(inputs, self.dtype)
        if found is None:
            return
        bias, text_rows = found
        state = self.get()
        state.cross_bias[:rows].fill_(torch.finfo(self.dtype).min)
        state.cross_bias[:rows, :, :, : bias.shape[-1]] = bias
        state.cross_rows[:rows] = text_rows

    def _new_state(self, rows: int) -> StepState:
        def longs(*shape: int) -> torch.Tensor:
            return torch.zeros(shape, dtype=torch.long, device=self.device)

        state = StepState(longs(rows, 1), longs(rows, 1), longs(1), longs(rows), longs(rows), longs(rows),
                          torch.zeros(rows, dtype=torch.bool, device=self.device),
                          torch.zeros(1, dtype=torch.bool, device=self.device))
        if self.stack.cross_layers:
            columns = self.adapter.cross_columns()
            state.cross_bias = torch.zeros((rows, 1, 1, columns), dtype=self.dtype, device=self.device)
            state.cross_rows = torch.zeros((rows, 1, 1), dtype=self.dtype, device=self.device)
        return state
