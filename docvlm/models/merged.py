"""A decoder layer's projections that read the same input as one matrix product each: q/k/v, and the
gated MLP's gate/up.

Why: a decode step multiplies a few dozen rows by each weight matrix, and at those sizes a product's
time is much launch and ramp besides the weight read (k and v are a quarter of q's size): merged, a
self-attention layer runs 4 products where it ran 7. The modules' weights become views into the merged
matrices, so there is no second copy and transformers' own forward (the first-turn prefill) reads the
same numbers. Used where the fused kernels run (CUDA half precision); elsewhere the modules run as they are.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from docvlm.models import fused


@dataclass
class MergedLayer:
    qkv: torch.Tensor  # (q + k + v widths, hidden): the three projections' weights, stacked
    qkv_bias: Optional[torch.Tensor]
    qkv_widths: list[int]
    gate_up: Optional[torch.Tensor]  # (2 x intermediate, hidden), gate first; None: the MLP runs as it is


def merge_layer(layer: torch.nn.Module) -> Optional[MergedLayer]:
    """Merge a self-attention decoder layer's projections (re-pointing its modules' weights); None where
    they are not plain linear layers of one kind (then the layer keeps its modules)."""
    attn, mlp = layer.self_attn, layer.mlp
    projections = [getattr(attn, name, None) for name in ("q_proj", "k_proj", "v_proj")]
    qkv = _merge(projections)
    if qkv is None:
        return None
    gated = [getattr(mlp, name, None) for name in ("gate_proj", "up_proj")]
    unbiased = all(getattr(module, "bias", 0) is None for module in gated)  # what `mlp_output` computes
    gate_up = _merge(gated) if fused.is_silu_gated_mlp(mlp) and unbiased else None
    return MergedLayer(qkv[0], qkv[1], [p.out_features for p in projections], gate_up and gate_up[0])


def query_key_value(attn: torch.nn.Module, x: torch.Tensor,
                    merged: Optional[MergedLayer]) -> Sequence[torch.Tensor]:
    """The layer's query, key and value projections of `x` (views of one product where merged)."""
    if merged is None:
        return attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)
    return F.linear(x, merged.qkv, merged.qkv_bias).split(merged.qkv_widths, dim=-1)


def mlp_output(mlp: torch.nn.Module, x: torch.Tensor, merged: Optional[MergedLayer]) -> torch.Tensor:
    """The layer's MLP of `x`: gate and up as one product (SiLU-gated, fused) where merged."""
    if merged is None or merged.gate_up is None:
        return mlp(x)
    gate, up = F.linear(x, merged.gate_up).chunk(2, dim=-1)
    return mlp.down_proj(fused.silu_mul(gate, up))


def _merge(linears: list) -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
    if not all(type(m) is torch.nn.Linear for m in linears):
        return None
    done = _MERGED.get(linears[0])
    if done is not None and _views_of(linears, done[0]):
        return done  # another engine over the same model merged them: share, never a second copy
    weights = [m.weight for m in linears]
    if len({(w.dtype, w.device, w.shape[1]) for w in weights}) != 1 or len({m.bias is None for m in linears}) != 1:
        return None
    weight = torch.cat([w.detach() for w in weights])
    bias = None if linears[0].bias is None else torch.cat([m.bias.detach() for m in linears])
    start = 0
    for module in linears:  # each module's weight now a view of the merged one: the old tensors are freed
        end = start + module.out_features
        module.weight = torch.nn.Parameter(weight[start:end], requires_grad=module.weight.requires_grad)
        if bias is not None:
            module.bias = torch.nn.Parameter(bias[start:end], requires_grad=module.bias.requires_grad)
        start = end
    _MERGED[linears[0]] = weight, bias
    return weight, bias


def _views_of(linears: list, weight: torch.Tensor) -> bool:
    """Whether the modules' weights are still consecutive views of `weight`."""
    start = 0
    for module in linears:
        if module.weight.data_ptr() != weight[start].data_ptr() or module.weight.shape[0] != module.out_features:
            return False
        start += module.out_features
    return start == weight.shape[0]


# the merged matrices by their first module: engines built over the same model share them
_MERGED: "weakref.WeakKeyDictionary[torch.nn.Module, tuple[torch.Tensor, Optional[torch.Tensor]]]" = \
    weakref.WeakKeyDictionary()
