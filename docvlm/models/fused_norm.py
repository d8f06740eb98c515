"""RMSNorm as one Triton kernel for the static engine's half-precision CUDA passes.

Why: transformers' RMSNorm (Qwen3, Qwen3-VL text, Mllama text) is eight kernels (to fp32, pow, mean,
add, rsqrt, mul, to half, mul by the weight), each a pass over the activations in fp32. A decoder
layer of Qwen3 runs four of them (input, post-attention, per-head q and k): in a packed prefill they
took ~20 ms a document on H100 (as much as the attention), in a decode step ~1,100 tiny kernels.
Here: one read, one write, the same arithmetic (normalise in fp32, round to the model's dtype, then
multiply by the weight as transformers does).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

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


def rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    width = hidden.shape[-1]
    flat = hidden.reshape(-1, width)  # a view when contiguous (every caller's case), else a copy
    out = torch.empty_like(flat, dtype=torch.result_type(weight, hidden))
    block = triton.next_power_of_2(width)
    rows_per_program = max(1, ELEMENTS_PER_PROGRAM // block)
    grid = (triton.cdiv(flat.shape[0], rows_per_program),)
    _rms_norm_kernel[grid](flat, weight, out, flat.shape[0], width, flat.stride(0), eps,
                           ROWS=rows_per_program, BLOCK=block)
    return out.view(hidden.shape)


@contextmanager
def fused_rms_norms(model: torch.nn.Module, enabled: bool) -> Iterator[None]:
    """Meanwhile, every transformers RMSNorm under `model` runs the fused kernel (restored after:
    other engines sharing the model, the seed baseline among them, keep transformers' own)."""
    norms = [module for module in model.modules()
             if type(module).__name__.endswith("RMSNorm") and hasattr(module, "variance_epsilon")] if enabled else []
    for module in norms:
        module.forward = _bound(module)
    try:
        yield
    finally:
        for module in norms:
            del module.forward  # back to the class's own


def _bound(module: torch.nn.Module):
    def forward(hidden: torch.Tensor) -> torch.Tensor:
        return rms_norm(hidden, module.weight, module.variance_epsilon)
    return forward


if triton is not None:

    @triton.jit
    def _rms_norm_kernel(x, weight, out, rows, width, row_stride, eps, ROWS: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
        column = tl.arange(0, BLOCK)
        inside = (row[:, None] < rows) & (column[None, :] < width)
        value = tl.load(x + row[:, None] * row_stride + column[None, :], mask=inside, other=0.0).to(tl.float32)
        variance = tl.sum(value * value, axis=1) / width
        normal = (value * (1.0 / tl.sqrt(variance + eps))[:, None]).to(out.dtype.element_ty)
        scale = tl.load(weight + column, mask=column < width, other=0.0).to(tl.float32)
        result = scale[None, :] * normal.to(tl.float32)
        tl.store(out + row[:, None] * width + column[None, :], result.to(out.dtype.element_ty), mask=inside)
