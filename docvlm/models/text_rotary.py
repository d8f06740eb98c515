"""Rotary positions of the language model's query and key: the family's own function, or one fused kernel.

The fused kernel (`fused.text_rotary`: per-head RMSNorm where the family has it, then the rotation, one
kernel for query and one for key) replaces ~12 small kernels a decoder layer. It is used only where it
gives the family's numbers bit for bit: checked once on a sample against the family's own
`apply_rotary_pos_emb` (`fused_reproduces`); a family of other numerics keeps its own. The static engine's
layer loop takes it through `query_key_positions`; transformers' own attention (the first-turn prefill)
through `fused_prefill_rotary`, which swaps the family module's function while the engine runs.
"""

from __future__ import annotations

import inspect
import logging
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from docvlm.models import fused

log = logging.getLogger(__name__)


def family_rotary(text: torch.nn.Module, cross_layers: set[int]) -> Callable:
    """The family's own `apply_rotary_pos_emb` (same numerics as its attention); where its module has
    only a multimodal one (Qwen2.5-VL in some releases), the plain rotation it reduces to for text."""
    attn = next(layer.self_attn for i, layer in enumerate(text.layers) if i not in cross_layers)
    return getattr(inspect.getmodule(type(attn)), "apply_rotary_pos_emb", None) or apply_rotary


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rotary(query: torch.Tensor, key: torch.Tensor, cos: torch.Tensor,
                 sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary embedding of (rows, heads, tokens, dim) queries and keys; cos, sin: (rows, tokens, dim)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return query * cos + _rotate_half(query) * sin, key * cos + _rotate_half(key) * sin


def fused_reproduces(apply_rotary: Callable, head_dim: int, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the fused kernel runs here and gives `apply_rotary`'s numbers bit for bit on a sample."""
    if not fused.runs_on(dtype, device):
        return False
    generator = torch.Generator().manual_seed(0)
    query, key = ((torch.randn(2, 3, heads, head_dim, generator=generator) * 4).to(device, dtype) for heads in (4, 2))
    cos, sin = ((torch.rand(2, 3, head_dim, generator=generator) * 2 - 1).to(device, dtype) for _ in range(2))
    expected = apply_rotary(query.transpose(1, 2), key.transpose(1, 2), cos, sin)
    try:
        got = fused.text_rotary(query, key, cos, sin)
    except Exception as error:  # noqa: BLE001  (a kernel this GPU or Triton cannot run: the family's own runs)
        log.warning("the fused text rotary does not run here (%s): %s runs", str(error).splitlines()[0][:200],
                    _named(apply_rotary))
        return False
    if all(torch.equal(a, b) for a, b in zip(expected, got)):
        return True
    log.warning("the fused text rotary differs from %s: its own runs", _named(apply_rotary))
    return False


def _named(function: Callable) -> str:
    """module.name of a family's function (transformers 5.2x wraps some in a module object with no __name__)."""
    name = getattr(function, "__name__", None) or getattr(function, "kernel_layer_name", None) or type(function).__name__
    return f"{getattr(function, '__module__', '?')}.{name}"


def query_key_positions(apply_rotary: Callable, use_fused: bool) -> Callable:
    """(attention module, query, key (rows, tokens, heads, dim), cos, sin) -> query and key (rows, heads,
    tokens, dim), normalised per head where the family does it (Qwen3) and rotated: the fused kernel, or
    transformers' modules and the family's function."""
    def plain(attn: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, cos: torch.Tensor,
              sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if hasattr(attn, "q_norm"):  # Qwen3 normalises each head before rotary
            query, key = attn.q_norm(query), attn.k_norm(key)
        return apply_rotary(query.transpose(1, 2), key.transpose(1, 2), cos, sin)

    def fast(attn: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, cos: torch.Tensor,
             sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return fused.text_rotary(query, key, cos, sin, getattr(attn, "q_norm", None), getattr(attn, "k_norm", None))

    return fast if use_fused else plain


@contextmanager
def fused_prefill_rotary(apply_rotary: Callable, enabled: bool) -> Iterator[None]:
    """Meanwhile, the family module's `apply_rotary_pos_emb` (looked up by transformers' attention at each
    call) runs the fused kernel on the shapes it takes, (batch, heads, tokens, dim) query and key with
    (batch, tokens, dim) cos and sin, and the family's own function on any other; restored after."""
    module = inspect.getmodule(apply_rotary)
    if not enabled or getattr(module, "apply_rotary_pos_emb", None) is not apply_rotary:
        yield
        return

    def rotary(query: torch.Tensor, key: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               unsqueeze_dim: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        if unsqueeze_dim != 1 or cos.dim() != 3 or query.dim() != 4:
            return apply_rotary(query, key, cos, sin, unsqueeze_dim)
        return fused.text_rotary(query.transpose(1, 2), key.transpose(1, 2), cos, sin)

    with fused.functions_swapped([module], "apply_rotary_pos_emb", rotary):
        yield
