"""Fused elementwise kernels (Triton) for the static engine's half-precision CUDA passes.

Why: transformers' RMSNorm (Qwen3, Qwen3-VL text, Mllama text) is eight kernels (to fp32, pow, mean,
add, rsqrt, mul, to half, mul by the weight), each a pass over the activations in fp32. A decoder
layer of Qwen3 runs four of them (input, post-attention, per-head q and k): in a packed prefill they
took ~20 ms a document on H100 (as much as the attention), in a decode step ~1,100 tiny kernels.
The gated MLP's `act(gate) * up` is two more passes over the widest activations, and the Qwen-VL vision
towers' rotary embedding ~10 fp32 passes over q and k in every layer. Here: one read, one
write each, the same arithmetic (RMSNorm: normalise in fp32, round to the model's dtype, multiply by
the weight; SiLU in fp32, rounded, times `up`), as transformers does it.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Optional

import torch

try:
    import triton
    import triton.language as tl
except ImportError:
    triton = None

ELEMENTS_PER_PROGRAM = 4096  # short rows (per-head norms of 128) share a program


def runs_on(dtype: torch.dtype, device: torch.device) -> bool:
    """CUDA half precision (or the Triton interpreter, for tests)."""
    if triton is None or dtype not in (torch.float16, torch.bfloat16):
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def silu_mul(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """SiLU(gate) * up; each may be a view whose rows are strided (the halves of a merged gate/up product)."""
    width = gate.shape[-1]
    gate_rows, up_rows = gate.reshape(-1, width), up.reshape(-1, width)  # views where the last dim is contiguous
    assert gate_rows.stride(-1) == 1 and up_rows.stride(-1) == 1, "gate and up rows must be contiguous"
    out = torch.empty(gate.shape, dtype=gate.dtype, device=gate.device)
    grid = (gate_rows.shape[0], triton.cdiv(width, ELEMENTS_PER_PROGRAM))
    _silu_mul_kernel[grid](gate_rows, up_rows, out, width, gate_rows.stride(0), up_rows.stride(0),
                           BLOCK=ELEMENTS_PER_PROGRAM)
    return out


def rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return _rms_norm(hidden, None, weight, eps)[1]


def add_rms_norm(hidden: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`hidden + delta` (rounded to the dtype, as the residual add does) and its RMSNorm in one kernel: a
    decoder layer's residual add and the norm after it, where transformers runs two. -> (sum, normed)."""
    return _rms_norm(hidden, delta, weight, eps)


def _rms_norm(hidden: torch.Tensor, delta: Optional[torch.Tensor], weight: torch.Tensor,
              eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden + delta, its RMSNorm); without `delta`, (hidden, its RMSNorm), the sum neither made nor stored."""
    width = hidden.shape[-1]
    flat = hidden.reshape(-1, width)  # a view when contiguous (every caller's case), else a copy
    flat_delta = flat if delta is None else delta.reshape(-1, width)  # (unread without a delta)
    total = flat if delta is None else torch.empty_like(flat)
    out = torch.empty_like(flat, dtype=torch.result_type(weight, hidden))
    block = triton.next_power_of_2(width)
    rows_per_program = max(1, ELEMENTS_PER_PROGRAM // block)
    grid = (triton.cdiv(flat.shape[0], rows_per_program),)
    _rms_norm_kernel[grid](flat, flat_delta, weight, total, out, flat.shape[0], width, flat.stride(0),
                           flat_delta.stride(0), eps, ADD=delta is not None, ROWS=rows_per_program, BLOCK=block)
    return total.view(hidden.shape), out.view(hidden.shape)


def is_rms_norm(module: torch.nn.Module) -> bool:
    """transformers' RMSNorm (weight * normalised, the kernels' arithmetic)."""
    return type(module).__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon")


def vision_rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                  sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """transformers' `apply_rotary_pos_emb_vision` (the Qwen-VL vision towers): q, k (tokens, heads, dim),
    cos, sin (tokens, dim); `x * cos + rotate_half(x) * sin` in fp32, rounded once to x's dtype. One read
    and one write of q and k, where transformers makes ~10 fp32 passes over them in every layer."""
    return _rotate_half(q, cos, sin), _rotate_half(k, cos, sin)


def _rotate_half(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    tokens, heads, dim = x.shape
    assert dim % 2 == 0, "rotary over an odd head dim"
    x = x if x.stride(-1) == 1 else x.contiguous()
    cos, sin = (t if t.stride(-1) == 1 else t.contiguous() for t in (cos, sin))
    out = torch.empty((tokens, heads, dim), dtype=x.dtype, device=x.device)
    _rotary_kernel[(tokens,)](x, cos, sin, out, heads, x.stride(0), x.stride(1), cos.stride(0), sin.stride(0),
                              HALF=dim // 2, HEADS=triton.next_power_of_2(heads),
                              BLOCK=triton.next_power_of_2(dim // 2))
    return out


def text_rotary(query: torch.Tensor, key: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                q_norm: Optional[torch.nn.Module] = None,
                k_norm: Optional[torch.nn.Module] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A decoder layer's query and key from its projections' views (rows, tokens, heads, dim) to the
    attention's (rows, heads, tokens, dim) (stored tokens-major, as transformers' rotary leaves them): each
    head RMS-normalised first where the family has per-head norms (Qwen3's q_norm / k_norm), then
    transformers' text rotary `x * cos + rotate_half(x) * sin` (cos, sin: (rows, tokens, dim)) with each
    product and the sum rounded to the dtype as its elementwise ops round them. One kernel each for query
    and key, where transformers' norms and rotary are ~12 small kernels a layer (a decode step's largest
    share of them)."""
    return _norm_rotate(query, cos, sin, q_norm), _norm_rotate(key, cos, sin, k_norm)


def _norm_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, norm: Optional[torch.nn.Module]) -> torch.Tensor:
    rows, tokens, heads, dim = x.shape
    assert dim % 2 == 0, "rotary over an odd head dim"
    x = x if x.stride(-1) == 1 and x.stride(2) == dim else x.contiguous()  # heads packed; rows, tokens strided
    cos, sin = (t.expand(rows, tokens, dim) for t in (cos, sin))
    assert cos.stride(-1) == 1 and sin.stride() == cos.stride(), "cos and sin of one layout, the dim contiguous"
    out = torch.empty((rows, tokens, heads, dim), dtype=x.dtype, device=x.device)
    weight = norm.weight if norm is not None else x  # (unread without a norm)
    eps = norm.variance_epsilon if norm is not None else 0.0
    _norm_rotate_kernel[(rows * tokens,)](x, weight, cos, sin, out, tokens, heads, x.stride(0), x.stride(1),
                                          cos.stride(0), cos.stride(1), eps,
                                          NORM=norm is not None, HALF=dim // 2, HEADS=triton.next_power_of_2(heads),
                                          BLOCK=triton.next_power_of_2(dim // 2), enable_fp_fusion=False)
    return out.transpose(1, 2)


@contextmanager
def fused_vision_rotary(model: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Meanwhile, the vision towers' `apply_rotary_pos_emb_vision` under `model` (a function of their
    transformers module, looked up at each call) is `vision_rotary`; restored after."""
    modules = {sys.modules[type(m).__module__] for m in model.modules()} if enabled else set()
    patched = [module for module in modules if hasattr(module, "apply_rotary_pos_emb_vision")]
    with functions_swapped(patched, "apply_rotary_pos_emb_vision", vision_rotary):
        yield


@contextmanager
def functions_swapped(modules: list[Any], name: str, replacement: Any) -> Iterator[None]:
    """Meanwhile, the function `name` of each Python module in `modules` (transformers' modeling code looks
    such functions up at each call) is `replacement`; each module's own is restored after."""
    saved = [(module, getattr(module, name)) for module in modules]
    for module, _ in saved:
        setattr(module, name, replacement)
    try:
        yield
    finally:
        for module, original in saved:
            setattr(module, name, original)


@contextmanager
def fused_kernels(model: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Meanwhile, transformers' RMSNorms and SiLU-gated MLPs under `model` run the fused kernels (restored
    after: other engines sharing the model, the seed baseline among them, keep transformers' own)."""
    patched = []
    for module in model.modules() if enabled else []:
        forward = _fused_forward(module)
        if forward is not None:
            module.forward = forward
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward  # back to the class's own


def is_silu_gated_mlp(module: torch.nn.Module) -> bool:
    """transformers' SiLU-gated MLP (down(SiLU(gate(x)) * up(x)), `silu_mul`'s arithmetic in the middle)."""
    gated = all(hasattr(module, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn"))
    return type(module).__name__.endswith("MLP") and gated and \
        type(module.act_fn).__name__ in ("SiLU", "SiLUActivation")


def _fused_forward(module: torch.nn.Module):
    if is_rms_norm(module):
        return lambda hidden: rms_norm(hidden, module.weight, module.variance_epsilon)
    if is_silu_gated_mlp(module):
        return lambda x: module.down_proj(silu_mul(module.gate_proj(x), module.up_proj(x)))
    return None


if triton is not None:

    @triton.jit
    def _rms_norm_kernel(x, delta, weight, total, out, rows, width, row_stride, delta_stride, eps,
                         ADD: tl.constexpr, ROWS: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        column = tl.arange(0, BLOCK)
        inside = (row[:, None] < rows) & (column[None, :] < width)
        value = tl.load(x + row[:, None] * row_stride + column[None, :], mask=inside, other=0.0).to(tl.float32)
        if ADD:  # the residual add first, rounded as transformers' add, and stored
            b = tl.load(delta + row[:, None] * delta_stride + column[None, :], mask=inside, other=0.0).to(tl.float32)
            summed = (value + b).to(total.dtype.element_ty)
            tl.store(total + row[:, None] * width + column[None, :], summed, mask=inside)
            value = summed.to(tl.float32)
        variance = tl.sum(value * value, axis=1) / width
        normal = (value * (1.0 / tl.sqrt(variance + eps))[:, None]).to(out.dtype.element_ty)
        scale = tl.load(weight + column, mask=column < width, other=0.0).to(tl.float32)
        result = scale[None, :] * normal.to(tl.float32)
        tl.store(out + row[:, None] * width + column[None, :], result.to(out.dtype.element_ty), mask=inside)

    @triton.jit
    def _rotary_kernel(x, cos, sin, out, heads, x_token_stride, x_head_stride, cos_stride, sin_stride,
                       HALF: tl.constexpr, HEADS: tl.constexpr, BLOCK: tl.constexpr):
        token = tl.program_id(0)
        head = tl.arange(0, HEADS)[:, None]
        column = tl.arange(0, BLOCK)[None, :]
        inside = (head < heads) & (column < HALF)
        source = x + token * x_token_stride + head * x_head_stride + column
        first = tl.load(source, mask=inside, other=0.0).to(tl.float32)
        second = tl.load(source + HALF, mask=inside, other=0.0).to(tl.float32)
        half = column < HALF
        cos1 = tl.load(cos + token * cos_stride + column, mask=half, other=0.0).to(tl.float32)
        cos2 = tl.load(cos + token * cos_stride + HALF + column, mask=half, other=0.0).to(tl.float32)
        sin1 = tl.load(sin + token * sin_stride + column, mask=half, other=0.0).to(tl.float32)
        sin2 = tl.load(sin + token * sin_stride + HALF + column, mask=half, other=0.0).to(tl.float32)
        # rotate_half(x) = (-second, first)
        target = out + (token * heads + head) * (2 * HALF) + column
        tl.store(target, (first * cos1 - second * sin1).to(out.dtype.element_ty), mask=inside)
        tl.store(target + HALF, (second * cos2 + first * sin2).to(out.dtype.element_ty), mask=inside)

    @triton.jit
    def _silu_mul_kernel(gate, up, out, width, gate_stride, up_stride, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)  # rows x a merged product's stride can pass 2^31 in a long prefill
        column = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = column < width
        g = tl.load(gate + row * gate_stride + column, mask=inside, other=0.0).to(tl.float32)
        activated = (g / (1.0 + tl.exp(-g))).to(out.dtype.element_ty)  # SiLU, rounded as transformers' act_fn
        product = activated.to(tl.float32) * tl.load(up + row * up_stride + column, mask=inside, other=0.0).to(tl.float32)
        tl.store(out + row * width + column, product.to(out.dtype.element_ty), mask=inside)

    @triton.jit
    def _norm_rotate_kernel(x, weight, cos, sin, out, tokens, heads, x_row_stride, x_token_stride, cos_row_stride,
                            cos_token_stride, eps,
                            NORM: tl.constexpr, HALF: tl.constexpr, HEADS: tl.constexpr, BLOCK: tl.constexpr):
        index = tl.program_id(0)  # row * tokens + token: every head of one token
        row, token = index // tokens, index % tokens
        head = tl.arange(0, HEADS)[:, None]
        column = tl.arange(0, BLOCK)[None, :]
        inside = (head < heads) & (column < HALF)
        source = x + row * x_row_stride + token * x_token_stride + head * (2 * HALF) + column
        first = tl.load(source, mask=inside, other=0.0).to(tl.float32)
        second = tl.load(source + HALF, mask=inside, other=0.0).to(tl.float32)
        dtype = out.dtype.element_ty
        if NORM:  # transformers' RMSNorm: normalise in fp32, round, times the weight, round
            variance = (tl.sum(first * first, axis=1) + tl.sum(second * second, axis=1)) / (2 * HALF)
            inverse = (1.0 / tl.sqrt(variance + eps))[:, None]
            half = column < HALF
            w1 = tl.load(weight + column, mask=half, other=0.0).to(tl.float32)
            w2 = tl.load(weight + HALF + column, mask=half, other=0.0).to(tl.float32)
            first = (w1 * (first * inverse).to(dtype).to(tl.float32)).to(dtype).to(tl.float32)
            second = (w2 * (second * inverse).to(dtype).to(tl.float32)).to(dtype).to(tl.float32)
        angles = row * cos_row_stride + token * cos_token_stride + column
        half = column < HALF
        cos1 = tl.load(cos + angles, mask=half, other=0.0).to(tl.float32)
        cos2 = tl.load(cos + angles + HALF, mask=half, other=0.0).to(tl.float32)
        sin1 = tl.load(sin + angles, mask=half, other=0.0).to(tl.float32)
        sin2 = tl.load(sin + angles + HALF, mask=half, other=0.0).to(tl.float32)
        # x * cos + rotate_half(x) * sin, rotate_half(x) = (-second, first); each product rounded, then the sum
        # (launched without fp fusion: a product must not become an FMA's exact term on the GPU)
        out1 = (first * cos1).to(dtype).to(tl.float32) + (-second * sin1).to(dtype).to(tl.float32)
        out2 = (second * cos2).to(dtype).to(tl.float32) + (first * sin2).to(dtype).to(tl.float32)
        target = out + (index * heads + head) * (2 * HALF) + column
        tl.store(target, out1.to(dtype), mask=inside)
        tl.store(target + HALF, out2.to(dtype), mask=inside)
