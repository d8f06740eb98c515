"""The fused RMSNorm kernel against transformers' own RMSNorm modules; run in a process of its own by
the tests (TRITON_INTERPRET=1 must be set before triton compiles) and by the CUDA tests directly."""

import sys

import torch
from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm

from docvlm.models.fused_norm import fused_rms_norms, rms_norm, runs_on


def check(device: str, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    for shape in ((5, 7, 64), (3, 4, 9, 16), (2, 200)):  # hidden rows; per-head norms; a width not a power of 2
        norm = Qwen3RMSNorm(shape[-1], eps=1e-6)
        norm.weight.data = torch.randn(shape[-1], generator=generator)
        norm = norm.to(device=device, dtype=dtype)
        hidden = (torch.randn(*shape, generator=generator) * 3).to(device=device, dtype=dtype)
        assert runs_on(dtype, hidden.device)
        expected = norm(hidden)
        got = rms_norm(hidden, norm.weight, norm.variance_epsilon)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        # the same arithmetic; only the sum's order differs: at most one rounding step apart
        ulp = torch.finfo(dtype).eps * expected.float().abs().clamp(min=1e-2)
        assert ((got.float() - expected.float()).abs() <= ulp * 1.01).all(), (shape, dtype)
        with fused_rms_norms(norm, enabled=True):
            assert torch.equal(norm(hidden), got)
        assert torch.equal(norm(hidden), expected)  # transformers' own again
    print("ok")


if __name__ == "__main__":
    check(sys.argv[1], getattr(torch, sys.argv[2]))
