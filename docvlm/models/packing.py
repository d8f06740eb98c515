"""Several documents' first turns as ONE sequence through transformers' forward (the static engine).

Why: the GEMMs of one document (~2.4k tokens) do not fill an H100; up to `PACK_TOKENS` tokens of
several documents do. The documents must not see each other, and each one's KV must land in its own
row of the engine's buffers:
- `packed_attention`, registered with transformers as an attention implementation, attends causally
  WITHIN each document (varlen flash attention on CUDA half precision; elsewhere transformers' own
  SDPA path one document at a time, the numerics of an unpacked prefill);
- `PackedWriteLayer` is the cache layer: it copies each document's KV to its row, right-aligned,
  and hands attention the packed KV itself;
- `packed_text_attention(config, ...)` switches the language model to it for one forward;
- `packed_vision_attention(config)` switches a Qwen-VL vision tower to `varlen_vision_attention`: all of
  a pack's images (or their windows: Qwen2.5-VL) in one varlen flash call a layer; transformers' SDPA
  way is a call an image or window. A family's adapter opts in (`packed_vision`): Qwen2.5-VL (~170
  windows an image); Qwen3-VL takes `fastest_vision_attention` (its full attention at head dim 72: on an
  H100 cuDNN's call an image beat one flash call, bench_attention.py; padded head dims timed too).
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any, Callable, ContextManager, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.cache_utils import DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface

from docvlm.models.fastest import fastest

PACKED_ATTENTION = "docvlm_packed"  # the attention implementation name a packed prefill runs under
# "flash" in the name: Qwen-VL's vision attention then passes its images' (windows') bounds to it
VISION_VARLEN = "docvlm_flash_varlen_vision"
VISION_FASTEST = "docvlm_flash_fastest_vision"
PADDED_HEAD_DIMS = (80, 96, 128)  # `fastest_vision_attention` also times SDPA at these head dims


class PackedWriteLayer(DynamicLayer):
    """A cache layer for a packed prefill: each document's KV goes to its buffer row, right-aligned to end at
    column `end`, and attention gets the packed KV itself (a document attends only to its own tokens).
    One slice copy a document: on an H100 an indexed scatter of every token took 70 ms a batch of 64
    first turns, the copies 3 ms (2026-11-28)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, rows: Sequence[int], lengths: Sequence[int],
                 end: int):
        super().__init__()
        self.key_buffer, self.value_buffer = keys, values  # (rows, kv heads, capacity, head dim)
        self.rows, self.lengths, self.end = list(rows), list(lengths), end  # the packed documents, in order
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self.keys, self.values = keys[:0, :, :0], values[:0, :, :0]  # nothing before this turn

    def lazy_initialization(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any):
        first = 0
        for row, length in zip(self.rows, self.lengths):
            columns = slice(self.end - length, self.end)
            self.key_buffer[row, :, columns].copy_(key_states[0, :, first : first + length])
            self.value_buffer[row, :, columns].copy_(value_states[0, :, first : first + length])
            first += length
        return key_states, value_states


def runs_flash_varlen(query: torch.Tensor) -> bool:
    """Whether torch's varlen flash attention takes this query: CUDA half precision on an Ampere or later
    GPU (flash attention needs sm80+: a V100 or T4 takes the per-document SDPA path instead)."""
    return (query.is_cuda and query.dtype in (torch.float16, torch.bfloat16)
            and torch.cuda.get_device_capability(query.device) >= (8, 0))


def flash_varlen(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, query_starts: torch.Tensor,
                 key_starts: torch.Tensor, longest_query: int, longest_key: int, causal: bool,
                 scale: Optional[float]) -> torch.Tensor:
    """torch's varlen flash attention over packed (tokens, heads, dim) sequences whose bounds are int32
    cumulative lengths on the device (see `runs_flash_varlen`)."""
    return torch.ops.aten._flash_attention_forward(query, key, value, query_starts, key_starts, longest_query,
                                                   longest_key, 0.0, causal, False, scale=scale)[0]


# (cumulative document lengths as int32 on the device, the longest document) of the running packed prefill
_PACK: ContextVar[Optional[tuple[torch.Tensor, int]]] = ContextVar("docvlm_pack", default=None)


def packed_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: Optional[torch.Tensor], scaling: Optional[float] = None, dropout: float = 0.0,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Causal attention within each document of a packed (1, heads, tokens, head dim) sequence."""
    pack = _PACK.get()
    assert pack is not None, "packed attention outside a packed prefill"
    starts, longest = pack
    return _within_sequences(module, query, key, value, starts, longest, causal=True, scaling=scaling), None


def varlen_vision_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: Optional[torch.Tensor], scaling: Optional[float] = None,
                            dropout: float = 0.0, cu_seq_lens_q: Optional[torch.Tensor] = None,
                            max_length_q: Optional[int] = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Full attention within each image of a (1, heads, patches, head dim) sequence, images bounded by
    `cu_seq_lens_q` (a Qwen-VL vision tower under `VISION_VARLEN`: images or windows)."""
    assert cu_seq_lens_q is not None, "varlen vision attention without its images' bounds"
    out = _within_sequences(module, query, key, value, cu_seq_lens_q.to(torch.int32), max_length_q, causal=False,
                            scaling=scaling)
    return out, None


def fastest_vision_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: Optional[torch.Tensor], scaling: Optional[float] = None,
                             dropout: float = 0.0, cu_seq_lens_q: Optional[torch.Tensor] = None,
                             max_length_q: Optional[int] = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Full attention within each image of a (1, heads, patches, head dim) sequence (a Qwen-VL vision tower
    under `VISION_FASTEST`): where varlen flash runs, the fastest on this GPU (fastest.py) of transformers'
    SDPA call an image, the same with the head dim zero-padded (`PADDED_HEAD_DIMS`: Qwen3-VL's 72 is no
    size attention kernels are tuned for; zero columns leave q.k and the kept output exact), and one
    varlen flash call; elsewhere transformers' way."""
    assert cu_seq_lens_q is not None, "vision attention without its images' bounds"
    starts = cu_seq_lens_q.to(torch.int32)  # (transformers' are int32 already: the same tensor every layer)
    ways = {"SDPA an image": lambda: _sdpa_each(module, query, key, value, starts, causal=False, scaling=scaling)}
    if not runs_flash_varlen(query):
        return ways["SDPA an image"](), None
    dim = query.shape[-1]
    ways.update(padded_ways(partial(_padded_each, module, query, key, value, starts), dim, scaling))
    bounds = host_bounds(starts)
    longest = int(max_length_q) if max_length_q is not None else max(b - a for a, b in zip(bounds, bounds[1:]))
    ways["varlen flash"] = lambda: _within_sequences(module, query, key, value, starts, longest, causal=False,
                                                     scaling=scaling)
    # the order of the ways depends on the images' size (at ~2,400 patches flash tied cuDNN, at ~8,600 it lost
    # by 1.45x on an H100): chosen again for each power-of-two bucket of the longest image
    chosen_for = (query.shape[1], dim, query.dtype, query.device, longest.bit_length())
    return fastest("Qwen-VL vision attention", chosen_for, ways, query.device), None


def _padded_each(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                 starts: torch.Tensor, scale: float, width: int) -> torch.Tensor:
    """`_sdpa_each` at head dim `width` -> (1, tokens, heads, head dim)."""
    wide = _sdpa_each(module, *zero_padded((query, key, value), width), starts, causal=False, scaling=scale)
    return wide[..., : query.shape[-1]]


def padded_ways(way: Callable[[float, int], torch.Tensor], dim: int,
                scaling: Optional[float]) -> dict[str, Callable[[], torch.Tensor]]:
    """`way(scale, width)` at each of `PADDED_HEAD_DIMS` wider than `dim`, named as `fastest` logs them;
    `scale` is the unpadded head dim's (what SDPA would take from the padded one is wrong)."""
    scale = dim**-0.5 if scaling is None else scaling
    return {f"SDPA an image, head dim padded to {width}": partial(way, scale, width)
            for width in PADDED_HEAD_DIMS if width > dim}


def zero_padded(tensors: Sequence[torch.Tensor], width: int) -> list[torch.Tensor]:
    """q, k, v with zero columns up to head dim `width`: q.k unchanged, the output's first columns the
    unpadded attention's (given the unpadded head dim's scale)."""
    return [F.pad(tensor, (0, width - tensor.shape[-1])) for tensor in tensors]


def _within_sequences(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      starts: torch.Tensor, longest: int, causal: bool, scaling: Optional[float]) -> torch.Tensor:
    """Attention within each of the sequences packed in (1, heads, tokens, head dim), bounded by `starts`
    (int32 cumulative lengths on the device) -> (1, tokens, heads, head dim). Varlen flash attention
    where it runs (grouped-query KV as it is, no mask, no padding); CPU, fp32 and older GPUs take
    transformers' own SDPA path a sequence at a time (an unpacked forward's numerics)."""
    if runs_flash_varlen(query):
        out = flash_varlen(query[0].transpose(0, 1), key[0].transpose(0, 1), value[0].transpose(0, 1), starts, starts,
                           longest, longest, causal=causal, scale=scaling)
        return out[None]
    return _sdpa_each(module, query, key, value, starts, causal, scaling)


def host_bounds(starts: torch.Tensor) -> list[int]:
    """`starts` read to the host once while the tensor lives unchanged: transformers hands every vision layer
    the same bounds tensor, and a read a layer held the GPU idle (27 syncs a Qwen3-VL pack, ~2 ms a
    document on an H100: the profile's host waits, 2026-12-05)."""
    global _last_bounds
    seen, version, bounds = _last_bounds
    # (inference tensors keep no version counter: nothing writes bounds in place during a forward)
    now = -1 if starts.is_inference() else starts._version
    if seen is None or seen() is not starts or version != now:
        bounds = starts.tolist()
        _last_bounds = (weakref.ref(starts), now, bounds)
    return bounds


_last_bounds: tuple[Optional[weakref.ref], int, list[int]] = (None, 0, [])


def _sdpa_each(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               starts: torch.Tensor, causal: bool, scaling: Optional[float]) -> torch.Tensor:
    """transformers' SDPA path a sequence at a time -> (1, tokens, heads, head dim)."""
    bounds = host_bounds(starts)
    outs = [sdpa_attention_forward(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], None,
                                   scaling=scaling, is_causal=causal)[0] for a, b in zip(bounds, bounds[1:])]
    return torch.cat(outs, dim=1)


def _no_mask(*args: Any, **kwargs: Any) -> None:
    return None  # packed attention keeps documents apart itself


AttentionInterface.register(PACKED_ATTENTION, packed_attention)
AttentionMaskInterface.register(PACKED_ATTENTION, _no_mask)
AttentionInterface.register(VISION_VARLEN, varlen_vision_attention)
AttentionInterface.register(VISION_FASTEST, fastest_vision_attention)


def packs(lengths: Sequence[int], limit: int) -> list[list[int]]:
    """Consecutive indices grouped while their lengths sum to at most `limit` (a longer one alone)."""
    groups: list[list[int]] = []
    total = 0
    for index, length in enumerate(lengths):
        if not groups or total + length > limit:
            groups.append([])
            total = 0
        groups[-1].append(index)
        total += length
    return groups


def runs_of_equal_length(singles: list[dict[str, torch.Tensor]]) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Consecutive documents of the same prompt length (unpacked prefills batch them: no padding)."""
    run: list[dict[str, torch.Tensor]] = []
    for single in singles:
        if run and single["input_ids"].shape[1] != run[0]["input_ids"].shape[1]:
            yield run
            run = []
        run.append(single)
    if run:
        yield run


def packed_text_attention(config: Any, starts: torch.Tensor, longest: int) -> ContextManager[None]:
    """The language model (whose config this is) runs `packed_attention` meanwhile: `starts` are the
    documents' cumulative lengths (int32, on the device), `longest` the longest document."""
    return attention_implementation(config, PACKED_ATTENTION, _PACK, (starts, longest))


def packed_vision_attention(config: Any, fastest_way: bool = False) -> ContextManager[None]:
    """The Qwen-VL vision tower (whose config this is) runs `varlen_vision_attention` meanwhile, or with
    `fastest_way` `fastest_vision_attention`."""
    return attention_implementation(config, VISION_FASTEST if fastest_way else VISION_VARLEN)


@contextmanager
def attention_implementation(config: Any, name: str, context: Optional[ContextVar] = None,
                             value: Any = None) -> Iterator[None]:
    """The modules of `config` run the attention registered as `name` meanwhile, which reads `value`
    from `context` (what transformers' call does not pass it)."""
    saved = config._attn_implementation
    config._attn_implementation = name
    token = context.set(value) if context is not None else None
    try:
        yield
    finally:
        config._attn_implementation = saved
        if context is not None:
            context.reset(token)
