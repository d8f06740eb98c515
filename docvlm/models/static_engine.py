"""The static engine: KV cache in preallocated buffers, and its own loop around transformers' layers.

Why: eager `generate` pays ~90 ms a decode step in kernel launches and, with a padding mask, copies
every layer's KV four times (`repeat_kv` for grouped-query attention). Here:
- the KV cache lives in buffers allocated once per batch size ([rows, kv heads, columns, head dim] a
  layer); transformers' own forward writes straight into them (`BufferLayer`);
- a first turn is prefilled with no padding, each row right-aligned in the buffers so the batch
  decodes together: InternVL packs several documents into one sequence (`PACK_TOKENS`, `packing.py`:
  the GEMMs of one document do not fill an H100), the other families go one document at a time; the
  processor runs ahead in threads (`prepare`);
- a follow-up turn (left-padded new tokens for every row) runs OUR layer loop over the buffers
  (InternVL, Qwen3-VL: `_prefill_turn`; transformers' `generate` repeated every layer's KV per query
  head); Mllama's cross-attention turns still go through `generate(max_new_tokens=1)`;
- each later token is one pass of OUR step over the decoder layers and, on CUDA, a CUDA graph
  captured once per row bucket and replayed: one launch a step. Where the Triton attention runs, the
  step attends over every column of the buffers: the kernel skips the blocks the bias masks (the
  unwritten tail), so one graph serves every prompt length (a capture costs ~0.6 s on an H100, and
  every rank pays its own); elsewhere, one graph per (row bucket, 256-column bucket). The graph feeds its
  outputs back (token, position, column, row done), so the host only replays and looks for the end
  every few steps.
Attention reads the grouped-query KV as it is (`attention.py`: Triton kernels on CUDA, matmuls
elsewhere); RMSNorm and the gated MLP run fused while the engine runs (`fused.py`).
One live conversation per engine: a new `generate` reuses the buffers and retires the last state.
"""

from __future__ import annotations

import inspect
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from transformers import DynamicCache, GenerationConfig
from transformers.cache_utils import DynamicLayer

from docvlm.models import attention
from docvlm.models.fused import fused_kernels, runs_on
from docvlm.models.hf_engine import _CACHE_KWARG, HFEngine, _Run, _sync
from docvlm.models.packing import PackedWriteLayer, packed_text_attention, packs
from docvlm.models.protocol import BatchResult, Conversations, Request

log = logging.getLogger(__name__)

ROW_BUCKETS = (1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256)
COLUMN_STEP = 256  # attention reads columns up to the next multiple: one graph per 256 columns
FOLLOW_UP_COLUMNS = 2048  # room reserved for later turns, so a follow-up rarely has to grow the buffers
END_CHECK_EVERY = 16  # decode steps between looks (one device sync) for "every row has ended"
SEQUENCE_INPUTS = ("input_ids", "attention_mask", "cross_attention_mask", "mm_token_type_ids")  # left-padded
PACK_TOKENS = 8192  # a packed prefill holds documents up to this many tokens: full GEMMs, bounded activations
PREPROCESS_THREADS = 8  # at most; no more than this rank's share of CPU cores (torch's thread count)
TURN_CHUNK_TOKENS = 16384  # a follow-up turn's rows go through the layers this many tokens at a time


def _round_up(n: int, step: int) -> int:
    return -(-n // step) * step


def row_bucket(rows: int) -> int:
    return next((b for b in ROW_BUCKETS if b >= rows), _round_up(rows, 64))


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


@dataclass
class _Buffers:
    """KV for every decoder layer (cross-attention layers: the image's KV), and the attention bias."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    bias: torch.Tensor  # (rows, columns): 0 where a column is attended, dtype min where not
    rows: int
    columns: int


@dataclass
class _Lease:
    """A live conversation batch: rows [0, rows) of the buffers. Stands in `Conversations.cache`."""

    cache: DynamicCache
    rows: int
    serial: int  # the engine's conversation number when this lease was made

    @property
    def length(self) -> int:
        return self.cache.layers[0].length


@dataclass
class _StepState:
    """The small tensors a decode step reads and advances (fixed addresses: graphs replay on them)."""

    tokens: torch.Tensor  # (rows, 1) the token fed this step
    positions: torch.Tensor  # (rows, 1) its rotary position
    column: torch.Tensor  # (1,) the buffer column it is written to
    generated: torch.Tensor  # (rows,) tokens generated so far
    budgets: torch.Tensor  # (rows,)
    running: torch.Tensor  # (rows,) bool: not ended yet (ended rows are fed the pad token, as generate does)
    check_end: torch.Tensor  # (1,) bool: end ids end a row (False under force_length)
    cross_bias: Optional[torch.Tensor] = None  # Mllama: (rows, 1, 1, image tokens)
    cross_rows: Optional[torch.Tensor] = None  # Mllama: (rows, 1, 1) 0 where a text row sees no image
    graphs: dict[tuple[int, int], Any] = field(default_factory=dict)


class StaticEngine(HFEngine):
    """Mixin over a family adapter (`class StaticInternVL(StaticEngine, InternVL)`)."""

    use_graphs: bool = True  # CUDA only; False runs the same step eagerly (tests compare both)
    packs_prefill: bool = False  # families whose first turns can be packed (`_prefill_pack`)
    owns_turns: bool = False  # families whose follow-up turns run our layer loop (`_prefill_turn`), not generate

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.text = self.model.model.language_model
        self.lm_head = self.model.lm_head
        self.cross_layers = set(getattr(self.text, "cross_attention_layers", None) or [])
        self.apply_rotary = self._rotary_function()
        self.buffers: Optional[_Buffers] = None
        self.state: Optional[_StepState] = None
        self.serial = 0
        self.pool = None
        self.captures, self.capture_s = 0, 0.0  # CUDA graphs recorded so far and the time it took
        self.graphs_on = self.use_graphs and self.device.type == "cuda"
        self.end_ids = torch.tensor(self.eos_ids, device=self.device)
        # Prefetched processor outputs: (id(image), prompt) -> (the image, kept so its id stays unique, future)
        self._prepared: dict[tuple[int, str], tuple[Any, Future]] = {}
        self._latest_prepared: set[tuple[int, str]] = set()
        self._preprocessor: Optional[ThreadPoolExecutor] = None

    # ---- sizes (also used to plan the batch size) ---------------------------------------------

    @property
    def head_dim(self) -> int:
        config = self.text.config
        return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads

    def kv_bytes_per_token(self) -> int:
        """Bytes of KV one token costs in the self-attention layers."""
        layers = self.text.config.num_hidden_layers - len(self.cross_layers)
        return 2 * layers * self.text.config.num_key_value_heads * self.head_dim * self.dtype.itemsize

    def cross_kv_bytes(self) -> int:
        """Bytes of one document's image KV in the cross-attention layers (Mllama)."""
        per_column = 2 * len(self.cross_layers) * self.text.config.num_key_value_heads * self.head_dim
        return self._cross_columns() * per_column * self.dtype.itemsize

    def release(self) -> None:
        """Free the KV buffers and graphs now (the next batch allocates them again)."""
        self.buffers, self.state, self.pool = None, None, None
        self.serial += 1  # any state still held is over

    # ---- first turns: into right-aligned rows (packed, or one document at a time) ------------------

    def prepare(self, requests: Sequence[Request]) -> None:
        """Start the processor on these first-turn requests in background threads (the next batch)."""
        self._latest_prepared = {(id(request.image), request.prompt) for request in requests}
        self._submit(requests)

    def _submit(self, requests: Sequence[Request]) -> None:
        """The processor starts on every request not started yet (threads: the first batch too)."""
        if self._preprocessor is None:
            workers = max(2, min(PREPROCESS_THREADS, torch.get_num_threads()))
            self._preprocessor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="docvlm-preprocess")
        for request in requests:
            key = (id(request.image), request.prompt)
            if key not in self._prepared:
                self._prepared[key] = (request.image, self._preprocessor.submit(self.preprocess, [request]))

    def _encode_one(self, request: Request) -> dict[str, torch.Tensor]:
        _, future = self._prepared.pop((id(request.image), request.prompt), (None, None))
        inputs = future.result() if future is not None else self.preprocess([request])
        return {key: self._to_device(value) for key, value in inputs.items()}

    def _forget_unused_prefetches(self) -> None:
        """Prefetches for a batch that never ran (its documents failed before) are dropped."""
        self._prepared = {k: v for k, v in self._prepared.items() if k in self._latest_prepared}

    @torch.inference_mode()
    def generate(self, requests: Sequence[Request], keep_state: bool = False,
                 force_length: bool = False) -> BatchResult:
        with self._released_on_oom(), self._fused_kernels():
            return self._generate(requests, keep_state, force_length)

    def continue_(self, *args: Any, **kwargs: Any) -> BatchResult:
        with self._released_on_oom(), self._fused_kernels():
            return super().continue_(*args, **kwargs)

    def _fused_kernels(self):
        """The language model's RMSNorms and gated MLPs on fused kernels while this engine runs (CUDA half precision)."""
        return fused_kernels(self.text, enabled=runs_on(self.dtype, self.device))

    @contextmanager
    def _released_on_oom(self) -> Iterator[None]:
        """Out of memory: free the buffers (sized for this batch) so the smaller retry can fit."""
        try:
            yield
        except torch.OutOfMemoryError:
            self.release()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            raise

    def _generate(self, requests: Sequence[Request], keep_state: bool, force_length: bool) -> BatchResult:
        if not requests:
            return BatchResult([], None, 0.0, 0.0, 0)
        self._submit(requests)
        singles = [self._encode_one(request) for request in requests]
        self._forget_unused_prefetches()
        inputs = self._left_padded(singles)
        budgets = [request.max_new_tokens for request in requests]
        start = inputs["input_ids"].shape[1]
        lease = self._new_cache(len(requests), start + max(budgets))
        _sync(self.device)
        began = time.perf_counter()
        first, lengths = self._prefill_rows(lease, singles, start)
        lease = self._lease(lease.rows, start, lengths)
        _sync(self.device)
        sequences = torch.cat([inputs["input_ids"], first[:, None]], dim=1)
        run = self._complete(lease, inputs, sequences, budgets, force_length, began, time.perf_counter())
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        return self._result(run, inputs, inputs["attention_mask"], prompt_tokens, lease, keep_state)

    def _left_padded(self, singles: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The batch view of per-document inputs, as the processor would pad it (for state and decode)."""
        width = max(single["input_ids"].shape[1] for single in singles)
        batch = {}
        for key in SEQUENCE_INPUTS:
            if key not in singles[0]:
                continue
            rows = []
            for single in singles:
                value = single[key]
                pad = width - value.shape[1]
                fill = self.pad_id if key == "input_ids" else 0
                rows.append(torch.cat([value.new_full((1, pad, *value.shape[2:]), fill), value], dim=1))
            batch[key] = torch.cat(rows, dim=0)
        return batch

    def _prefill_rows(self, lease: _Lease, singles: list[dict[str, torch.Tensor]],
                      start: int) -> tuple[torch.Tensor, list[int]]:
        """Each document's KV lands in its row at columns [start - length, start).
        Returns the first tokens and every layer's filled length (cross-attention: the image tokens)."""
        if self.packs_prefill:
            lengths = [single["input_ids"].shape[1] for single in singles]
            firsts = [self._prefill_pack([singles[row] for row in rows], rows, start) for rows in packs(lengths, PACK_TOKENS)]
            return torch.cat(firsts), [start] * len(self._buffers().keys)
        buffers = self._buffers()
        lengths = [start] * len(buffers.keys)
        firsts, extras = [], []
        for row, single in enumerate(singles):
            offset = start - single["input_ids"].shape[1]
            cache = DynamicCache()
            cache.layers = [BufferLayer(k[row : row + 1, :, (0 if i in self.cross_layers else offset):],
                                        v[row : row + 1, :, (0 if i in self.cross_layers else offset):])
                            for i, (k, v) in enumerate(zip(buffers.keys, buffers.values))]
            out = self.model(**single, **{_CACHE_KWARG: cache}, use_cache=True, logits_to_keep=1)
            firsts.append(out.logits[:, -1].float().argmax(dim=-1))
            extras.append(self.row_extras())
            for i in self.cross_layers:
                lengths[i] = cache.layers[i].length
        self.set_batch_extras(extras)
        return torch.cat(firsts), lengths

    def _prefill_pack(self, singles: list[dict[str, torch.Tensor]], rows: list[int], start: int) -> torch.Tensor:
        """Several documents as ONE sequence through the model (positions restart at each document);
        returns their first tokens."""
        lengths = [single["input_ids"].shape[1] for single in singles]
        counts = torch.tensor(lengths, device=self.device)
        ends = counts.cumsum(0)
        starts = F.pad(ends, (1, 0)).to(torch.int32)
        row_of_token = torch.repeat_interleave(torch.tensor(rows, device=self.device), counts)
        column_of_token = torch.cat([torch.arange(start - n, start, device=self.device) for n in lengths])
        buffers = self._buffers()
        cache = DynamicCache()
        cache.layers = [PackedWriteLayer(k, v, row_of_token, column_of_token) for k, v in zip(buffers.keys, buffers.values)]
        inputs = {key: torch.cat([single[key] for single in singles], dim=1 if key in SEQUENCE_INPUTS else 0)
                  for key in singles[0] if key != "attention_mask"}
        positions = torch.cat([torch.arange(n, device=self.device) for n in lengths])[None]
        with packed_text_attention(self.text.config, starts, max(lengths)):
            out = self.model(**inputs, position_ids=positions, **{_CACHE_KWARG: cache}, use_cache=True,
                             logits_to_keep=ends - 1)
        return out.logits[0].float().argmax(dim=-1)

    def row_extras(self) -> Any:
        """Family state one document's prefill left on the model (Qwen3-VL: its rope delta)."""
        return None

    def set_batch_extras(self, extras: list[Any]) -> None:
        """Put the batch's family state back together on the model."""

    # ---- engine hooks -------------------------------------------------------------------------

    def _new_cache(self, rows: int, columns: int = 0) -> _Lease:
        """A fresh conversation batch at rows [0, rows) whose first turn reaches `columns`: the last live
        state ends here."""
        self.serial += 1
        self._ensure_capacity(rows, columns)
        return self._lease(rows, length=0)

    def _select_cache(self, cache: Any, index: torch.Tensor) -> Any:
        lease = self._check_lease(cache)
        buffers = self._buffers()
        for layer, keys, values in zip(lease.cache.layers, buffers.keys, buffers.values):
            used = layer.length
            keys[: len(index), :, :used] = keys[index, :, :used]  # a gathered copy, then written back
            values[: len(index), :, :used] = values[index, :, :used]
        return self._lease(len(index), lease.length, [layer.length for layer in lease.cache.layers])

    def _run(self, inputs: dict[str, torch.Tensor], budgets: list[int], force_length: bool, cache: Any) -> _Run:
        lease = self._check_lease(cache)
        start = inputs["input_ids"].shape[1]
        lease = self._ensure_columns(lease, start + max(budgets))
        _sync(self.device)
        began = time.perf_counter()
        if self.owns_turns:
            first = torch.cat([inputs["input_ids"], self._prefill_turn(lease, inputs)[:, None]], dim=1)
        else:
            config = GenerationConfig(max_new_tokens=1, do_sample=False, num_beams=1,
                                      eos_token_id=None if force_length else self.eos_ids, pad_token_id=self.pad_id)
            first = self.model.generate(**inputs, generation_config=config, **{_CACHE_KWARG: lease.cache})
        _sync(self.device)
        return self._complete(lease, inputs, first, budgets, force_length, began, time.perf_counter())

    def _prefill_turn(self, lease: _Lease, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """A follow-up turn's new tokens (left-padded, at the columns after the cache) through our own layer
        loop: no generate, no repeated KV; rows in chunks of at most `TURN_CHUNK_TOKENS` tokens (bounded
        activations). Returns each row's first token."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        start, end, rows = lease.length, ids.shape[1], lease.rows
        buffers = self._buffers()
        bias = self._key_bias(mask)
        positions = self.turn_positions(mask, start)
        step = max(1, TURN_CHUNK_TOKENS // (end - start))
        firsts = []
        for a in range(0, rows, step):
            b = min(rows, a + step)
            hidden = self.text.embed_tokens(ids[a:b, start:])
            cos, sin = self.text.rotary_emb(hidden, self.rotary_ids(positions[a:b]))
            attend = partial(self._turn_attend, bias=bias[a:b], start=start)
            for index, layer in enumerate(self.text.layers):
                hidden = self._self_layer(layer, hidden, cos, sin, buffers.keys[index][a:b],
                                          buffers.values[index][a:b], attend)
            firsts.append(self._last_logits(hidden).argmax(dim=-1))
        for layer in lease.cache.layers:
            layer.set_length(end)
        return torch.cat(firsts)

    def _complete(self, lease: _Lease, inputs: dict[str, torch.Tensor], sequences: torch.Tensor, budgets: list[int],
                  force_length: bool, began: float, prefilled: float) -> _Run:
        """Decode the rest after prefill produced `sequences` (prompt + first token)."""
        start = sequences.shape[1] - 1
        if max(budgets) > 1:
            rest = self._decode(lease, inputs, sequences[:, -1], budgets, force_length)
            sequences = torch.cat([sequences, rest], dim=1)
        _sync(self.device)
        ended = time.perf_counter()
        run = self._make_run(sequences, start, budgets, force_length, prefilled - began, ended - prefilled)
        run.cache = lease  # type: ignore[attr-defined]  # a grown lease replaces the one passed in
        return run

    def _state(self, run: _Run, inputs: dict[str, torch.Tensor], input_mask: torch.Tensor, cache: Any) -> Conversations:
        return super()._state(run, inputs, input_mask, getattr(run, "cache", cache))

    # ---- decode -------------------------------------------------------------------------------

    def _decode(self, lease: _Lease, inputs: dict[str, torch.Tensor], first: torch.Tensor, budgets: list[int],
                force_length: bool) -> torch.Tensor:
        """Tokens 2.. of every row: (rows, steps) ids, ended rows padded."""
        rows, start = lease.rows, lease.length
        mask = inputs["attention_mask"]
        state = self._step_state()
        self._key_bias(mask)
        state.tokens[:rows, 0] = first
        state.positions[:rows, 0] = mask.sum(dim=1) + self.position_offsets(rows)
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
        capacity, whole_buffer = self._buffers().columns, self._attends_whole_buffer()  # fixed for the loop
        out = []
        for step in range(max(budgets) - 1):
            columns = capacity if whole_buffer else min(_round_up(start + step + 1, COLUMN_STEP), capacity)
            self._replay(bucket, columns)
            out.append(state.tokens[:rows, 0].clone())
            if not force_length and step % END_CHECK_EVERY == END_CHECK_EVERY - 1 and not state.running[:rows].any():
                break  # every row has ended: generate would stop here too (later ids are pads)
        for index, layer in enumerate(lease.cache.layers):
            if index not in self.cross_layers:  # the image KV of cross-attention layers stays as it is
                layer.set_length(start + len(out))
        return torch.stack(out, dim=1)

    def _attends_whole_buffer(self) -> bool:
        """Whether decode steps attend over every column of the buffers: where the Triton kernel runs
        (it skips the masked tail), so one graph per row bucket serves every length (see the docstring)."""
        return attention.runs(self.dtype, self.device, self.head_dim)

    def _replay(self, rows: int, columns: int) -> None:
        state = self._step_state()
        if not self.graphs_on:
            self._step(rows, columns)
            return
        graph = state.graphs.get((rows, columns))
        if graph is None:
            graph = self._capture(rows, columns)
        graph.replay()

    def _capture(self, rows: int, columns: int) -> Any:
        """Record the step for this bucket; a warm-up run first (as CUDA graphs require), then undone."""
        began = time.perf_counter()
        state = self._step_state()
        saved = [t.clone() for t in (state.tokens, state.positions, state.column, state.generated, state.running)]
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            self._step(rows, columns)  # writes this column's KV: the replay rewrites the same values
        torch.cuda.current_stream(self.device).wait_stream(side)
        for tensor, value in zip((state.tokens, state.positions, state.column, state.generated, state.running), saved):
            tensor.copy_(value)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            self._step(rows, columns)
        state.graphs[(rows, columns)] = graph
        self.captures += 1
        self.capture_s += time.perf_counter() - began
        log.debug("captured the decode step for %d rows, %d columns", rows, columns)
        return graph

    def _step(self, rows: int, columns: int) -> None:
        """One decode step for rows [0, rows), attention over columns [0, columns); advances the state."""
        state, buffers = self._step_state(), self._buffers()
        buffers.bias[:rows].index_fill_(1, state.column, 0.0)  # the new token sees itself
        attend = partial(self._decode_attend, bias=buffers.bias[:rows], columns=columns)
        hidden = self.text.embed_tokens(state.tokens[:rows])
        cos, sin = self.text.rotary_emb(hidden, self.rotary_ids(state.positions[:rows]))
        for index, layer in enumerate(self.text.layers):
            if index in self.cross_layers:
                hidden = self._cross_layer(layer, hidden, buffers.keys[index][:rows], buffers.values[index][:rows])
            else:
                keys, values = buffers.keys[index][:rows], buffers.values[index][:rows]
                hidden = self._self_layer(layer, hidden, cos, sin, keys, values, attend)
        logits = self._last_logits(hidden)
        running = state.running[:rows]
        token = torch.where(running, logits.argmax(dim=-1), torch.full_like(running, self.pad_id, dtype=torch.long))
        state.generated[:rows] += 1
        ended = (state.generated[:rows] >= state.budgets[:rows]) | (
            (token[:, None] == self.end_ids[None, :]).any(dim=1) & state.check_end)
        running &= ~ended
        state.tokens[:rows, 0] = token
        state.positions[:rows] += 1
        state.column += 1

    def _key_bias(self, mask: torch.Tensor) -> torch.Tensor:
        """The buffers' bias for rows [0, len(mask)): 0 on the columns `mask` marks real, masked elsewhere."""
        bias = self._buffers().bias
        bias.fill_(torch.finfo(self.dtype).min)  # every row: a graph's rows past the batch read no stale columns
        bias[: mask.shape[0], : mask.shape[1]].masked_fill_(mask.bool(), 0.0)
        return bias[: mask.shape[0]]

    def _last_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """fp32 logits of each row's last position."""
        return self.lm_head(self.text.norm(hidden[:, -1:]))[:, -1].float()

    def _self_layer(self, layer: torch.nn.Module, hidden: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                    keys: torch.Tensor, values: torch.Tensor, attend: Callable) -> torch.Tensor:
        """A decoder layer over `hidden` (rows, tokens, width); `attend` writes the KV and attends."""
        attn = layer.self_attn
        rows, tokens, head_dim = hidden.shape[0], hidden.shape[1], keys.shape[-1]
        x = layer.input_layernorm(hidden)
        query = attn.q_proj(x).view(rows, tokens, -1, head_dim)
        key = attn.k_proj(x).view(rows, tokens, -1, head_dim)
        if hasattr(attn, "q_norm"):  # Qwen3 normalises each head before rotary
            query, key = attn.q_norm(query), attn.k_norm(key)
        value = attn.v_proj(x).view(rows, tokens, -1, head_dim).transpose(1, 2)
        query, key = self.apply_rotary(query.transpose(1, 2), key.transpose(1, 2), cos, sin)
        hidden = hidden + attn.o_proj(attend(query, key, value, keys, values, attn.scaling))
        return hidden + layer.mlp(layer.post_attention_layernorm(hidden))

    def _decode_attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, keys: torch.Tensor,
                       values: torch.Tensor, scale: float, *, bias: torch.Tensor, columns: int) -> torch.Tensor:
        column = self._step_state().column
        keys.index_copy_(2, column, key)
        values.index_copy_(2, column, value)
        if attention.available(query):
            return attention.decode_attention(query, keys, values, bias, scale, columns)
        return attention.grouped_attention(query, keys[:, :, :columns], values[:, :, :columns],
                                           bias[:, None, None, :columns], scale)

    def _turn_attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, keys: torch.Tensor,
                     values: torch.Tensor, scale: float, *, bias: torch.Tensor, start: int) -> torch.Tensor:
        tokens = query.shape[2]
        keys[:, :, start : start + tokens] = key
        values[:, :, start : start + tokens] = value
        if attention.available(query):
            return attention.turn_attention(query, keys, values, bias, start, scale)
        end = start + tokens
        return attention.grouped_attention(query, keys[:, :, :end], values[:, :, :end],
                                           attention.turn_bias(bias, start, tokens), scale)

    def _cross_layer(self, layer: torch.nn.Module, hidden: torch.Tensor, keys: torch.Tensor,
                     values: torch.Tensor) -> torch.Tensor:
        """Mllama's gated cross-attention to the image KV cached at prefill."""
        attn, state = layer.cross_attn, self._step_state()
        rows = hidden.shape[0]
        x = layer.input_layernorm(hidden)
        query = attn.q_norm(attn.q_proj(x).view(rows, 1, -1, attn.head_dim).transpose(1, 2))
        image = state.cross_bias.shape[-1]
        out = attention.grouped_attention(query, keys[:, :, :image], values[:, :, :image], state.cross_bias[:rows],
                                          attn.scaling)
        hidden = hidden + layer.cross_attn_attn_gate.tanh() * attn.o_proj(out)
        mlp = layer.mlp(layer.post_attention_layernorm(hidden)) * state.cross_rows[:rows]
        return hidden + layer.cross_attn_mlp_gate.tanh() * mlp

    # ---- family hooks (overridden where a family differs) ---------------------------------------

    def position_offsets(self, rows: int) -> torch.Tensor:
        """Added to the count of real tokens to give the next token's rotary position."""
        return torch.zeros(rows, dtype=torch.long, device=self.device)

    def rotary_ids(self, positions: torch.Tensor) -> torch.Tensor:
        return positions

    def turn_positions(self, mask: torch.Tensor, start: int) -> torch.Tensor:
        """Rotary positions of a follow-up turn's tokens (columns start..): generate's rule, real tokens counted."""
        positions = mask.long().cumsum(-1) - 1
        return positions.masked_fill_(mask == 0, 1)[:, start:]

    def _set_cross_bias(self, inputs: dict[str, torch.Tensor], rows: int) -> None:
        """Mllama: the image mask row of the last token, which every generated token repeats."""

    # ---- buffers ------------------------------------------------------------------------------

    def _buffers(self) -> _Buffers:
        assert self.buffers is not None
        return self.buffers

    def _step_state(self) -> _StepState:
        assert self.state is not None
        return self.state

    def _layer_shapes(self) -> list[tuple[int, int, bool]]:
        """(kv heads, head dim, is cross-attention) of every decoder layer."""
        heads = self.text.config.num_key_value_heads
        return [(heads, self.head_dim, i in self.cross_layers) for i in range(len(self.text.layers))]

    def _cross_columns(self) -> int:
        return 0

    def _allocate(self, rows: int, columns: int, keep: Optional[_Lease] = None) -> None:
        """(Re)allocate buffers; `keep`'s KV is copied over. Graphs baked on the old ones are dropped."""
        old = self.buffers if keep is not None else None  # otherwise freed before the new ones exist
        self.buffers = None
        self.state, self.pool = None, None  # frees the graphs (and their references to the old buffers);
        # a fresh pool for the next captures: torch 2.11 asserts when a pool outlives all its graphs and is reused
        cross = self._cross_columns()
        keys, values = [], []
        for heads, head_dim, is_cross in self._layer_shapes():
            shape = (rows, heads, cross if is_cross else columns, head_dim)
            keys.append(torch.zeros(shape, dtype=self.dtype, device=self.device))
            values.append(torch.zeros(shape, dtype=self.dtype, device=self.device))
        bias = torch.full((rows, columns), torch.finfo(self.dtype).min, dtype=self.dtype, device=self.device)
        self.buffers = _Buffers(keys, values, bias, rows, columns)
        if old is not None and keep is not None:
            for layer, new_keys, new_values, old_keys, old_values in zip(
                    keep.cache.layers, keys, values, old.keys, old.values):
                new_keys[: keep.rows, :, : layer.length] = old_keys[: keep.rows, :, : layer.length]
                new_values[: keep.rows, :, : layer.length] = old_values[: keep.rows, :, : layer.length]
        del old
        self.state = self._new_step_state(rows)
        log.info("%s: KV buffers for %d rows x %d columns (%.2f GiB)", self.name, rows, columns,
                 sum(t.numel() * t.element_size() for t in keys + values) / 2**30)

    def _new_step_state(self, rows: int) -> _StepState:
        def longs(*shape: int) -> torch.Tensor:
            return torch.zeros(shape, dtype=torch.long, device=self.device)

        state = _StepState(longs(rows, 1), longs(rows, 1), longs(1), longs(rows), longs(rows),
                           torch.zeros(rows, dtype=torch.bool, device=self.device),
                           torch.zeros(1, dtype=torch.bool, device=self.device))
        if self.cross_layers:
            state.cross_bias = torch.zeros((rows, 1, 1, self._cross_columns()), dtype=self.dtype, device=self.device)
            state.cross_rows = torch.zeros((rows, 1, 1), dtype=self.dtype, device=self.device)
        return state

    def _ensure_capacity(self, rows: int, columns: int) -> None:
        """Buffers for a new conversation batch: its rows' bucket, its first turn and room for later turns.
        No conversation lives on the old buffers any more, so they are freed BEFORE the new ones are
        allocated (side by side they would need two batches' memory at once)."""
        current = (self.buffers.rows, self.buffers.columns) if self.buffers is not None else (0, 0)
        if row_bucket(rows) <= current[0] and columns <= current[1]:
            return
        self.release()  # (holding no reference to them here: they are freed now)
        self._allocate(max(row_bucket(rows), current[0]), _round_up(columns + FOLLOW_UP_COLUMNS, COLUMN_STEP))

    def _ensure_columns(self, lease: _Lease, needed: int) -> _Lease:
        """Columns for a follow-up turn reaching `needed`. One that does not fit in the reserve (a mixed
        batch's statements after a long extraction turn) moves to buffers of ITS rows only: the selected
        few, not the whole batch's rows beside the old buffers."""
        buffers = self._buffers()
        if needed <= buffers.columns:
            return lease
        log.info("%s: a follow-up turn of %d rows needs %d columns (%d reserved): growing", self.name,
                 lease.rows, needed, buffers.columns)
        lengths = [layer.length for layer in lease.cache.layers]
        self._allocate(row_bucket(lease.rows), _round_up(needed + FOLLOW_UP_COLUMNS, COLUMN_STEP), keep=lease)
        return self._lease(lease.rows, lengths[0], lengths)

    def _lease(self, rows: int, length: int, lengths: Optional[list[int]] = None) -> _Lease:
        buffers = self._buffers()
        cache = DynamicCache()
        lengths = lengths or [length] * len(buffers.keys)
        cache.layers = [BufferLayer(k[:rows], v[:rows], n) for k, v, n in zip(buffers.keys, buffers.values, lengths)]
        return _Lease(cache, rows, self.serial)

    def _check_lease(self, cache: Any) -> _Lease:
        if not isinstance(cache, _Lease) or cache.serial != self.serial:
            raise ValueError(f"{self.name}: this conversation state belongs to an earlier batch; the static "
                             "engine keeps one live conversation batch (its KV buffers were reused)")
        return cache

    def _rotary_function(self) -> Callable:
        """The family's own `apply_rotary_pos_emb` (same numerics as its attention)."""
        attention = next(layer.self_attn for i, layer in enumerate(self.text.layers) if i not in self.cross_layers)
        return inspect.getmodule(type(attention)).apply_rotary_pos_emb  # type: ignore[union-attr]
