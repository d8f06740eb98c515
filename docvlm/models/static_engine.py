"""The `static` engine: KV cache in preallocated buffers, and its own loops around transformers' layers.

Why: eager `generate` pays ~90 ms a decode step in kernel launches and, with a padding mask, copies
every layer's KV four times (`repeat_kv` for grouped-query attention). This file only orchestrates;
each piece lives in its own module:
- kv_buffers.py: the buffers ([rows, kv heads, columns, head dim] a layer, allocated once per batch
  size), their growth, the one live conversation's lease and row selection;
- first turns (here): prefilled with no padding, each row right-aligned in the buffers so the batch
  decodes together; families whose adapter says `packs_prefill` (InternVL, Qwen-VL) pack several
  documents into one sequence (`PACK_TOKENS`, packing.py: the GEMMs of one document do not fill an
  H100), positions restarting per document (the adapter's `packed_positions`: Qwen-VL's 3-D ones);
  the others (Mllama) run their vision tower for several documents a pass (the adapter's
  `encode_images`), then those documents' text in one forward where their prompts are of one length
  (no padding); the processor runs ahead in threads (prefetch.py);
- follow-up turns (here): left-padded new tokens for every row through OUR layer loop over the
  buffers, every family (transformers' `generate` repeated every layer's KV per query head);
  cross-attention layers read the image KV their prefill cached (text_layers.cross_layer);
- decode_graphs.py: every later token, one step over the layers, a CUDA graph on CUDA;
- text_layers.py: the layer math both loops run.
Attention reads the grouped-query KV as it is (attention.py: Triton kernels on CUDA, matmuls
elsewhere); RMSNorm and the gated MLP run fused while the engine runs (fused.py).
One live conversation per engine: a new `generate` reuses the buffers and retires the last state.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace
from functools import partial
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch.profiler import record_function
from transformers import PreTrainedModel, ProcessorMixin

from docvlm.models.adapter import PLANNED, FamilyAdapter
from docvlm.models.chat import SEQUENCE_INPUTS, Chat
from docvlm.models.decode_graphs import DecodeGraphs
from docvlm.models.fused import fused_kernels, fused_vision_rotary, runs_on
from docvlm.models.kv_buffers import FOLLOW_UP_COLUMNS, BufferLayer, KVBuffers, Lease, buffer_cache
from docvlm.models.packing import PackedWriteLayer, packed_text_attention, packs, runs_of_equal_length
from docvlm.models.prefetch import Prefetcher
from docvlm.models.protocol import BatchResult, Conversations, ModelSpec, Request
from docvlm.models.runs import (
    CACHE_KWARG,
    Run,
    batch_result,
    check_continuation,
    check_selectable,
    conversation_state,
    make_run,
    selected_rows,
    sync,
)
from docvlm.models.text_layers import TextStack, turn_attend
from docvlm.models.text_rotary import fused_prefill_rotary

PACK_TOKENS = 8192  # a packed prefill holds documents up to this many tokens: full GEMMs, bounded activations
VISION_BATCH_TOKENS = 32768  # unpacked prefills: their vision towers (and text) run together up to this many vision tokens
TURN_CHUNK_TOKENS = 16384  # a follow-up turn's rows go through the layers this many tokens at a time


def model_inputs(single: dict[str, Any]) -> list[str]:
    """A document's input keys the model takes (not the adapter's `host_planned` ones)."""
    return [key for key in single if not key.startswith(PLANNED)]


def later_columns(requests: Sequence[Request], keep_state: bool) -> int:
    """KV columns to reserve for a conversation's later turns: what its requests plan, the default
    reserve where one does not say, none when the state is not kept."""
    if not keep_state:
        return 0
    planned = [request.later_tokens for request in requests]
    return FOLLOW_UP_COLUMNS if None in planned else max(planned)


class StaticEngine:
    """A `VisionLanguageModel` with its own KV buffers and decode loop, for any family's adapter."""

    use_graphs: bool = True  # CUDA only; False runs the same step eagerly (tests compare both)

    def __init__(self, model: PreTrainedModel, processor: ProcessorMixin, adapter: FamilyAdapter, spec: ModelSpec,
                 device: torch.device):
        self.model, self.processor, self.adapter = model, processor, adapter
        self.family, self.name = adapter.family, adapter.name
        self.device, self.dtype = device, model.dtype
        self.packs_prefill = adapter.packs_prefill
        self.chat = Chat(model, processor, adapter, device)
        self.tokenizer = self.chat.tokenizer
        self.turn_end, self.turn_end_id = self.chat.turn_end, self.chat.turn_end_id
        self.eos_ids, self.pad_id = self.chat.eos_ids, self.chat.pad_id
        self.stack = TextStack(model, self.dtype)
        self.kv = KVBuffers(self.stack.layer_shapes(), adapter.cross_columns(), self.dtype, device, self.name,
                            on_change=self._buffers_changed)
        self.decoder = DecodeGraphs(self.stack, adapter, self.kv, torch.tensor(self.eos_ids, device=device),
                                    self.pad_id, device, self.use_graphs)
        self.prefetch = Prefetcher(self._first_turn_host, self.dtype, pin=device.type == "cuda")

    def _first_turn_host(self, requests: Sequence[Request]) -> dict[str, Any]:
        """The processor's output with the adapter's `host_planned` inputs (in a prefetch worker, CPU only)."""
        inputs = self.chat.preprocess(requests)
        return {**inputs, **self.adapter.host_planned(inputs)}

    def _buffers_changed(self, buffers: Any) -> None:
        self.decoder.buffers_changed(buffers)

    # ---- sizes (also used to plan the batch size) ---------------------------------------------

    @property
    def head_dim(self) -> int:
        return self.stack.head_dim

    @property
    def buffers(self) -> Any:
        return self.kv.buffers

    @property
    def captures(self) -> int:
        return self.decoder.captures

    @property
    def capture_s(self) -> float:
        return self.decoder.capture_s

    def kv_bytes_per_token(self) -> int:
        return self.stack.kv_bytes_per_token()

    def cross_kv_bytes(self) -> int:
        return self.stack.cross_kv_bytes(self.adapter.cross_columns())

    def release(self) -> None:
        """Free the KV buffers and graphs now (the next batch allocates them again)."""
        self.kv.release()

    # ---- public API ---------------------------------------------------------------------------

    def prepare(self, requests: Sequence[Request]) -> None:
        """Start the processor on these first-turn requests in background threads (the next batch)."""
        self.prefetch.prepare(requests)

    def encode(self, requests: Sequence[Request]) -> dict[str, torch.Tensor]:
        return self.chat.encode(requests)

    def turn_ids(self, prompt: str, previous_ended: bool) -> list[int]:
        return self.chat.turn_ids(prompt, previous_ended)

    @torch.inference_mode()
    def generate(self, requests: Sequence[Request], keep_state: bool = False,
                 force_length: bool = False) -> BatchResult:
        with self._released_on_oom(), self._fused_kernels():
            return self._generate(requests, keep_state, force_length)

    @torch.inference_mode()
    def continue_(self, state: Conversations, prompts: Sequence[str], max_new_tokens: Sequence[int],
                  keep_state: bool = False, force_length: bool = False) -> BatchResult:
        with self._released_on_oom(), self._fused_kernels():
            check_continuation(state, prompts, max_new_tokens)
            inputs, mask, turn_lengths = self.chat.follow_up_inputs(state, prompts)
            state.consumed = True  # the turn extends the cache in place
            run = self._follow_up(inputs, list(max_new_tokens), force_length, state.cache)
            return self._result(run, inputs, mask, turn_lengths, keep_state)

    @torch.inference_mode()
    def select(self, state: Conversations, rows: Sequence[int]) -> Conversations:
        """The conversations of `rows` only (their KV moved to the first rows); consumes `state`."""
        check_selectable(state)
        index = torch.tensor(list(rows), dtype=torch.long, device=state.ids.device)
        return selected_rows(state, index, self.kv.select(state.cache, index))

    @contextmanager
    def _fused_kernels(self) -> Iterator[None]:
        """The language model's RMSNorms, gated MLPs and text rotary, and the Qwen-VL vision towers' rotary
        embedding, on fused kernels while this engine runs (CUDA half precision)."""
        enabled = runs_on(self.dtype, self.device)
        with fused_kernels(self.stack.text, enabled), fused_vision_rotary(self.model, enabled), \
                fused_prefill_rotary(self.stack.rotary_function, self.stack.fused_rotary):
            yield

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

    # ---- first turns: into right-aligned rows (packed, or one document at a time) ------------------

    def _generate(self, requests: Sequence[Request], keep_state: bool, force_length: bool) -> BatchResult:
        if not requests:
            return BatchResult([], None, 0.0, 0.0, 0)
        waited = time.perf_counter()
        self.prefetch.submit(requests)
        singles = [self._encode_one(request) for request in requests]
        self.prefetch.forget_unused()
        inputs = self.chat.left_padded(singles)
        sync(self.device)  # the uploads done: what the prefill would otherwise wait on
        waited = time.perf_counter() - waited
        budgets = [request.max_new_tokens for request in requests]
        start = inputs["input_ids"].shape[1]
        lease = self.kv.new_conversation(len(requests), start + max(budgets), later_columns(requests, keep_state))
        sync(self.device)
        began = time.perf_counter()
        with record_function("docvlm::first-turn prefill"):  # the phases a profile reports (bench/profile.py)
            first, lengths = self._prefill_rows(lease, singles, start)
        lease = self.kv.lease(lease.rows, start, lengths)
        sync(self.device)
        sequences = torch.cat([inputs["input_ids"], first[:, None]], dim=1)
        run = self._complete(lease, inputs, sequences, budgets, force_length, began, time.perf_counter())
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        return replace(self._result(run, inputs, inputs["attention_mask"], prompt_tokens, keep_state), inputs_s=waited)

    def _encode_one(self, request: Request) -> dict[str, torch.Tensor]:
        return {key: self.chat.to_device(value) for key, value in self.prefetch.take(request).items()}

    def _prefill_rows(self, lease: Lease, singles: list[dict[str, torch.Tensor]],
                      start: int) -> tuple[torch.Tensor, list[int]]:
        """Each document's KV lands in its row at columns [start - length, start).
        Returns the first tokens and every layer's filled length (cross-attention: the image tokens)."""
        if self.packs_prefill:
            lengths = [single["input_ids"].shape[1] for single in singles]
            firsts, extras = [], []
            for rows in packs(lengths, PACK_TOKENS):  # consecutive rows: the extras stay in row order
                first, pack_extras = self._prefill_pack([singles[row] for row in rows], rows, start)
                firsts.append(first)
                extras += pack_extras
            self.adapter.set_batch_extras(extras)
            return torch.cat(firsts), [start] * len(self.kv.get().keys)
        buffers = self.kv.get()
        cross_layers = self.stack.cross_layers
        lengths = [start] * len(buffers.keys)
        firsts, extras, row = [], [], 0
        for group in self.adapter.encode_images(singles, VISION_BATCH_TOKENS):
            # a group's documents of one prompt length in one forward (no padding: the GEMMs of one
            # short prompt, Mllama's ~275 text tokens, leave the GPU idle and cost a forward's launches)
            for same in runs_of_equal_length(group):
                rows = slice(row, row + len(same))
                offset = start - same[0]["input_ids"].shape[1]
                cache = buffer_cache([BufferLayer(k[rows, :, (0 if i in cross_layers else offset):],
                                                  v[rows, :, (0 if i in cross_layers else offset):])
                                      for i, (k, v) in enumerate(zip(buffers.keys, buffers.values))])
                inputs = {key: torch.cat([single[key] for single in same]) for key in model_inputs(same[0])}
                out = self.model(**inputs, **{CACHE_KWARG: cache}, use_cache=True, logits_to_keep=1)
                firsts.append(out.logits[:, -1].float().argmax(dim=-1))
                extras.append(self.adapter.row_extras())
                for i in cross_layers:
                    lengths[i] = cache.layers[i].length
                row += len(same)
        self.adapter.set_batch_extras(extras)
        return torch.cat(firsts), lengths

    def _prefill_pack(self, singles: list[dict[str, torch.Tensor]], rows: list[int],
                      start: int) -> tuple[torch.Tensor, list[Any]]:
        """Several documents as ONE sequence through the model (positions restart at each document, the
        adapter's `packed_positions`); returns their first tokens and row extras."""
        lengths = [single["input_ids"].shape[1] for single in singles]
        counts = torch.tensor(lengths, device=self.device)
        ends = counts.cumsum(0)
        starts = F.pad(ends, (1, 0)).to(torch.int32)
        buffers = self.kv.get()
        cache = buffer_cache([PackedWriteLayer(k, v, rows, lengths, start) for k, v in zip(buffers.keys, buffers.values)])
        inputs = {key: torch.cat([single[key] for single in singles], dim=1 if key in SEQUENCE_INPUTS else 0)
                  for key in model_inputs(singles[0]) if key != "attention_mask"}
        positions, extras = self.adapter.packed_positions(singles)
        with packed_text_attention(self.stack.text.config, starts, max(lengths)), self.adapter.packed_vision():
            out = self.model(**inputs, position_ids=positions, **{CACHE_KWARG: cache}, use_cache=True,
                             logits_to_keep=ends - 1)
        return out.logits[0].float().argmax(dim=-1), extras

    # ---- follow-up turns ----------------------------------------------------------------------

    def _follow_up(self, inputs: dict[str, torch.Tensor], budgets: list[int], force_length: bool, cache: Any) -> Run:
        lease = self.kv.check_lease(cache)
        start = inputs["input_ids"].shape[1]
        lease = self.kv.ensure_columns(lease, start + max(budgets))
        sync(self.device)
        began = time.perf_counter()
        with record_function("docvlm::follow-up prefill"):
            first = torch.cat([inputs["input_ids"], self._prefill_turn(lease, inputs)[:, None]], dim=1)
        sync(self.device)
        return self._complete(lease, inputs, first, budgets, force_length, began, time.perf_counter())

    def _prefill_turn(self, lease: Lease, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """A follow-up turn's new tokens (left-padded, at the columns after the cache) through our own layer
        loop: no generate, no repeated KV; rows in chunks of at most `TURN_CHUNK_TOKENS` tokens (bounded
        activations). Returns each row's first token."""
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        start, end, rows = lease.length, ids.shape[1], lease.rows
        buffers, stack = self.kv.get(), self.stack
        bias = self.kv.key_bias(mask)
        positions = self.adapter.turn_positions(mask, start)
        cross = self.adapter.cross_attention_bias(inputs, self.dtype)  # every turn token repeats the last's
        step = max(1, TURN_CHUNK_TOKENS // (end - start))
        firsts = []
        for a in range(0, rows, step):
            b = min(rows, a + step)
            hidden = stack.text.embed_tokens(ids[a:b, start:])
            cos, sin = stack.rotary(hidden, self.adapter.rotary_ids(positions[a:b]))
            attend = partial(turn_attend, bias=bias[a:b], start=start)
            hidden = stack.layers(hidden, cos, sin, [k[a:b] for k in buffers.keys], [v[a:b] for v in buffers.values],
                                  attend, None if cross is None else (cross[0][a:b], cross[1][a:b]))
            firsts.append(stack.last_logits(hidden).argmax(dim=-1))
        for index, layer in enumerate(lease.cache.layers):
            if index not in stack.cross_layers:  # the image KV of cross-attention layers stays as it is
                layer.set_length(end)
        return torch.cat(firsts)

    # ---- decode and replies ---------------------------------------------------------------------

    def _complete(self, lease: Lease, inputs: dict[str, torch.Tensor], sequences: torch.Tensor, budgets: list[int],
                  force_length: bool, began: float, prefilled: float) -> Run:
        """Decode the rest after prefill produced `sequences` (prompt + first token)."""
        start = sequences.shape[1] - 1
        if max(budgets) > 1:
            with record_function("docvlm::decode"):
                rest = self.decoder.decode(lease, inputs, sequences[:, -1], budgets, force_length)
            sequences = torch.cat([sequences, rest], dim=1)
        sync(self.device)
        ended = time.perf_counter()
        # the state continues from this lease (a grown one replaces the one passed in)
        return make_run(sequences, start, budgets, force_length, self.eos_ids, prefilled - began, ended - prefilled,
                        lease)

    def _result(self, run: Run, inputs: dict[str, torch.Tensor], input_mask: torch.Tensor, prompt_tokens: list[int],
                keep_state: bool) -> BatchResult:
        state = None
        if keep_state:
            extras = self.adapter.state_extras(inputs, run.sequences.shape[1])
            state = conversation_state(run, input_mask, self.turn_end_id, extras)
        return batch_result(run, self.tokenizer, prompt_tokens, state)
