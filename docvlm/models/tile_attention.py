"""Llama-3.2-Vision's vision attention without its (L x L) mask: the same attention in two unmasked parts.

transformers gives every image one additive mask over all its tiles (4 x 1,608 tokens: ~83 MB in bf16)
that masks only padding->padding pairs (`_prepare_aspect_ratio_attention_mask`): a real token sees
every token, padding included; a padding token sees the real tokens. An SDPA call with such a mask
cannot use flash attention and reads the mask again for every head of every layer. The same
attention, unmasked: the real queries over all keys, the padding queries over the real keys (on CUDA
half precision, sm80+, the fastest on this GPU of two varlen flash calls and two SDPA calls an image,
at head dim 80 or zero-padded to a wider one, timed once; SDPA an image elsewhere).
`tile_split_attention(...)` switches the vision tower to it for one forward (the Mllama adapter does, in
`_vision_states`).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any, ContextManager, Optional

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from docvlm.models.fastest import fastest
from docvlm.models.packing import attention_implementation, flash_varlen, padded_ways, runs_flash_varlen, zero_padded

TILE_SPLIT = "docvlm_tile_split"  # the attention implementation name the vision tower runs under


@dataclass(frozen=True)
class TileSplit:
    """Where an image batch's real and padding tokens are, as flat indices (image x length + position)."""

    length: int  # tokens an image: tiles x tile tokens (padded)
    real: torch.Tensor  # (real tokens,) int64, image by image
    pad: torch.Tensor  # (padding tokens,) int64, image by image
    real_starts: torch.Tensor  # (images + 1,) int32 cumulative counts: varlen bounds
    pad_starts: torch.Tensor
    image_starts: torch.Tensor  # (images + 1,) int32: every image's whole length
    real_bounds: list[int]  # the same on the host, for the per-image path and the longest
    pad_bounds: list[int]


def tile_split(tiles_real: torch.Tensor, tile_tokens: int, real_per_tile: int, device: torch.device) -> TileSplit:
    """tiles_real (images, tiles) 0/1: which tiles hold the image (the processor's aspect ratio mask);
    each tile is `tile_tokens` tokens, of which the first `real_per_tile` are real."""
    images, tiles = tiles_real.shape
    in_tile = torch.arange(tile_tokens) < real_per_tile
    real_token = (tiles_real.cpu().bool()[:, :, None] & in_tile).reshape(images, tiles * tile_tokens)
    flat = torch.arange(images * tiles * tile_tokens).reshape(images, -1)
    real_counts = real_token.sum(1).tolist()
    pad_counts = [tiles * tile_tokens - count for count in real_counts]

    def starts(counts: list[int]) -> list[int]:
        return [0] + torch.tensor(counts).cumsum(0).tolist()

    def on_device(values: Any, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(values, dtype=dtype).to(device, non_blocking=True)

    real_bounds, pad_bounds = starts(real_counts), starts(pad_counts)
    return TileSplit(
        length=tiles * tile_tokens,
        real=on_device(flat[real_token], torch.int64),
        pad=on_device(flat[~real_token], torch.int64),
        real_starts=on_device(real_bounds, torch.int32),
        pad_starts=on_device(pad_bounds, torch.int32),
        image_starts=on_device([i * tiles * tile_tokens for i in range(images + 1)], torch.int32),
        real_bounds=real_bounds,
        pad_bounds=pad_bounds,
    )


_SPLIT: ContextVar[Optional[TileSplit]] = ContextVar("docvlm_tile_split", default=None)


def _longest(bounds: list[int]) -> int:
    return max(b - a for a, b in zip(bounds, bounds[1:]))


def _sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: Optional[float]) -> torch.Tensor:
    """(tokens, heads, dim) each -> (tokens, heads, dim)."""
    out = F.scaled_dot_product_attention(*(t.transpose(0, 1)[None] for t in (query, key, value)), scale=scale)
    return out[0].transpose(0, 1)


def split_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                    attention_mask: Optional[torch.Tensor], scaling: Optional[float] = None, dropout: float = 0.0,
                    **kwargs: Any) -> tuple[torch.Tensor, None]:
    """(images, heads, length, dim) each -> (images, length, heads, dim), as transformers' SDPA path returns.
    Where varlen flash attention runs, the fastest of it and SDPA an image (cuDNN where it takes them; also
    at zero-padded head dims) on this GPU, timed once (fastest.py); elsewhere SDPA an image."""
    split = _SPLIT.get()
    images, heads, length, dim = query.shape
    assert split is not None and split.length == length and len(split.real_bounds) == images + 1, \
        "tile split attention outside its vision forward"
    q, k, v = (t.transpose(1, 2).reshape(images * length, heads, dim) for t in (query, key, value))
    if runs_flash_varlen(q):
        ways = {"varlen flash": lambda: _varlen_parts(q, k, v, split, scaling),
                "SDPA an image": lambda: _parts_an_image(q, k, v, split, scaling)}
        ways.update(padded_ways(partial(_padded_parts_an_image, q, k, v, split), dim, scaling))
        out = fastest("Llama vision attention", (heads, dim, length, q.dtype, q.device), ways, q.device)
    else:
        out = _parts_an_image(q, k, v, split, scaling)
    return out.reshape(images, length, heads, dim), None  # a padded way returns a view of its columns


def _varlen_parts(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, split: TileSplit,
                  scaling: Optional[float]) -> torch.Tensor:
    """Both parts of every image in two varlen flash calls; (tokens, heads, dim) each."""
    out = torch.empty_like(q)
    out[split.real] = flash_varlen(q[split.real], k, v, split.real_starts, split.image_starts,
                                   _longest(split.real_bounds), split.length, causal=False, scale=scaling)
    if split.pad.numel():
        out[split.pad] = flash_varlen(q[split.pad], k[split.real], v[split.real], split.pad_starts, split.real_starts,
                                      _longest(split.pad_bounds), _longest(split.real_bounds), causal=False,
                                      scale=scaling)
    return out


def _parts_an_image(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, split: TileSplit,
                    scaling: Optional[float]) -> torch.Tensor:
    """Both parts as two dense SDPA calls an image; (tokens, heads, dim) each."""
    out = torch.empty_like(q)
    real_k, real_v = k[split.real], v[split.real]
    for image in range(len(split.real_bounds) - 1):
        real = slice(split.real_bounds[image], split.real_bounds[image + 1])
        pad = split.pad[split.pad_bounds[image] : split.pad_bounds[image + 1]]
        whole = slice(image * split.length, (image + 1) * split.length)
        out[split.real[real]] = _sdpa(q[split.real[real]], k[whole], v[whole], scaling)
        if pad.numel():
            out[pad] = _sdpa(q[pad], real_k[real], real_v[real], scaling)
    return out


def _padded_parts_an_image(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, split: TileSplit, scale: float,
                           width: int) -> torch.Tensor:
    """`_parts_an_image` at head dim `width` (zero columns; kernels are tuned for some head dims only)."""
    return _parts_an_image(*zero_padded((q, k, v), width), split, scale)[..., : q.shape[-1]]


AttentionInterface.register(TILE_SPLIT, split_attention)


def tile_split_attention(config: Any, split: TileSplit) -> ContextManager[None]:
    """The vision tower (whose config this is) runs `split_attention` over `split`'s images meanwhile."""
    return attention_implementation(config, TILE_SPLIT, _SPLIT, split)
