"""processing.batch_size=null: how many documents one batch can hold on this device.

A batch's memory is the model (already loaded: it is not in `free`), the KV buffers of its
conversations and the prefill's transient activations, from the model's own sizes:
- KV, per document: every column a conversation can reach (prompt bound + its first turn's budget +
  the tokens its later turns add, as its stage plans them: the extraction turn after detection, a
  statement's rows turn after its header turn) x the KV bytes of one token, plus the image KV of
  cross-attention layers (Mllama). Follow-up turns run in the engine's own layer loop over the
  buffers: no repeated KV (transformers' `generate` copied one layer's KV per query head: 64 rows
  ran out of memory on an H100, 48 did not), only the activations of `TURN_CHUNK_TOKENS` tokens;
- prefill activations, ONCE: the static engine prefills one document (or one pack of up to
  `PACK_TOKENS` tokens) at a time: prompt tokens x (4 hidden + 3 intermediate) values of the
  language model, vision-tower tokens x the same for the vision tower (the widest tensors alive at
  once in a layer), twice for headroom; a pack counts both per document (its vision tower sees
  every document's images at once: InternVL and Qwen-VL alike). Without packing, the vision tower
  sees as many documents as `VISION_BATCH_TOKENS` holds where the adapter `batches_vision` (Mllama),
  and those documents' text is prefilled in one forward (one prompt length: no padding).
The plain engine prefills the whole batch at once: its activations count per document.
The prompt bound takes `max_tiles` (every tile filled): real pages use fewer, so this errs small, and
an out-of-memory batch still splits in two (pipeline/batching.py) and loses nothing.
"""

from __future__ import annotations

from typing import Any

import torch

from docvlm.models import attention, static_engine, text_layers
from docvlm.models.kv_buffers import COLUMN_STEP, FOLLOW_UP_COLUMNS, ROW_BUCKETS, round_up

CPU_BATCH = 4
MAX_AUTO_BATCH = 128
USABLE_FRACTION = 0.9  # of the free memory: allocator fragmentation, cuBLAS workspaces, CUDA graphs
FALLBACK_DOCUMENT_BYTES = 1.5 * 2**30  # an engine without size information (the plain HF engine)


def auto_batch_size(device: torch.device, model: Any = None, first_tokens: int = 96, max_tiles: int = 12,
                    later_tokens: int = FOLLOW_UP_COLUMNS) -> int:
    """Rows for conversations whose first turn generates `first_tokens` and later turns add `later_tokens`."""
    if device.type != "cuda":
        return CPU_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    if hasattr(model, "kv_bytes_per_token"):
        transient = 2 * prefill_bytes(model, max_tiles) + turn_bytes(model)
        rows = int((free * USABLE_FRACTION - transient) / kv_bytes(model, first_tokens, max_tiles, later_tokens))
    else:
        rows = int(free * USABLE_FRACTION / FALLBACK_DOCUMENT_BYTES)
    fitting = [bucket for bucket in ROW_BUCKETS if bucket <= min(rows, MAX_AUTO_BATCH)]
    return fitting[-1] if fitting else 1


def kv_bytes(engine: Any, first_tokens: int, max_tiles: int, later_tokens: int = FOLLOW_UP_COLUMNS) -> float:
    """KV buffer bytes of one document's conversation (see the module docstring; the engine's rounding)."""
    columns = round_up(engine.adapter.prompt_tokens(max_tiles) + first_tokens + later_tokens, COLUMN_STEP)
    return columns * engine.kv_bytes_per_token() + engine.cross_kv_bytes()


def turn_bytes(engine: Any) -> float:
    """Activations of a follow-up turn run by the engine's own layer loop, one chunk of rows at a time, and
    one block of cross-attention scores where the model has cross-attention layers and the Triton kernels
    do not run (they keep no score matrix: text_layers.cross_attention)."""
    text = engine.model.config.get_text_config(decoder=True)
    layers = static_engine.TURN_CHUNK_TOKENS * (4 * text.hidden_size + 3 * text.intermediate_size) * engine.dtype.itemsize
    scores = engine.cross_kv_bytes() and not attention.runs(engine.dtype, engine.device, engine.stack.head_dim)
    return layers + (text_layers.CROSS_SCORES * 8 if scores else 0)


def prefill_bytes(engine: Any, max_tiles: int) -> float:
    """Transient activations of one prefill: one document, or a pack of them (as many tokens, tiles in proportion)."""
    text, vision = engine.model.config.get_text_config(decoder=True), engine.model.config.vision_config
    itemsize = engine.dtype.itemsize
    prompt, seen = engine.adapter.prompt_tokens(max_tiles), engine.adapter.vision_tokens(max_tiles)
    if getattr(engine, "packs_prefill", False):
        documents = max(1.0, static_engine.PACK_TOKENS / prompt)
    else:  # a vision group's documents go through the vision tower, then the language model, together
        documents = max(1, static_engine.VISION_BATCH_TOKENS // seen) if engine.adapter.batches_vision else 1
    text_activations = prompt * (4 * text.hidden_size + 3 * text.intermediate_size)
    vision_activations = seen * (4 * vision.hidden_size + 3 * vision.intermediate_size)
    return documents * (text_activations + vision_activations) * itemsize

