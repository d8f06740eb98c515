"""The fused kernels against transformers' own RMSNorm and gated-MLP modules; run in a process of its own
by the tests (TRITON_INTERPRET=1 must be set before triton compiles) and by the CUDA tests directly."""

import sys

import torch
from transformers import Qwen3Config
from transformers.models.qwen3.modeling_qwen3 import Qwen3MLP, Qwen3RMSNorm

from docvlm.models.fused import fused_kernels, rms_norm, runs_on, silu_mul


def _within_one_rounding(got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: tuple) -> None:
    assert got.shape == expected.shape and got.dtype == expected.dtype, what
    ulp = torch.finfo(dtype).eps * expected.float().abs().clamp(min=1e-2)
    assert ((got.float() - expected.float()).abs() <= ulp * 1.01).all(), what


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
        _within_one_rounding(got, expected, dtype, ("rms_norm", shape))  # only the sum's order differs
        with fused_kernels(norm, enabled=True):
            assert torch.equal(norm(hidden), got)
        assert torch.equal(norm(hidden), expected)  # transformers' own again
    gate, up = ((torch.randn(3, 5000, generator=generator) * 4).to(device=device, dtype=dtype) for _ in range(2))
    expected = torch.nn.functional.silu(gate) * up
    _within_one_rounding(silu_mul(gate, up), expected, dtype, ("silu_mul",))
    mlp = Qwen3MLP(Qwen3Config(hidden_size=32, intermediate_size=96, hidden_act="silu")).to(device=device, dtype=dtype)
    x = torch.randn(4, 3, 32, generator=generator).to(device=device, dtype=dtype)
    with fused_kernels(mlp, enabled=True):
        fused = mlp(x)
    assert "forward" not in mlp.__dict__
    torch.testing.assert_close(fused, mlp(x), atol=torch.finfo(dtype).eps * 8, rtol=torch.finfo(dtype).eps * 8)
    check_vision_rotary(device, dtype, generator)
    print("ok")


def check_vision_rotary(device: str, dtype: torch.dtype, generator: torch.Generator) -> None:
    from transformers.models.qwen3_vl import modeling_qwen3_vl

    from docvlm.models.fused import vision_rotary

    for tokens, heads, dim in ((37, 16, 72), (9, 2, 16), (5, 3, 80)):  # Qwen3-VL's 72 and Qwen2.5-VL's 80
        qkv = (torch.randn(tokens, 3, heads, dim, generator=generator) * 2).to(device=device, dtype=dtype)
        q, k, _ = qkv.unbind(1)  # strided views, as the vision attention makes them
        angles = torch.randn(tokens, dim // 2, generator=generator) * 3
        emb = torch.cat([angles, angles], dim=-1).to(device)
        expected = modeling_qwen3_vl.apply_rotary_pos_emb_vision(q, k, emb.cos(), emb.sin())
        got = vision_rotary(q, k, emb.cos(), emb.sin())
        for g, e in zip(got, expected):
            _within_one_rounding(g, e, dtype, ("vision_rotary", tokens, heads, dim))


if __name__ == "__main__":
    check(sys.argv[1], getattr(torch, sys.argv[2]))
