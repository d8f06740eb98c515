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


def _layout(x: torch.Tensor) -> list[int]:
    """The strides that matter (of dims longer than 1)."""
    return [stride for size, stride in zip(x.shape, x.stride()) if size > 1]


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
    check_text_rotary(device, dtype, generator)
    check_add_rms_norm(device, dtype, generator)
    check_decoder_layer(device, dtype, generator)
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


def check_text_rotary(device: str, dtype: torch.dtype, generator: torch.Generator) -> None:
    """Every family's text rotary reproduced bit for bit (with Qwen3's per-head norms: within a rounding,
    the norm's sum order differs); a rotary of other numerics is found out by the engine's sample check."""
    from transformers.models.mllama import modeling_mllama
    from transformers.models.qwen3 import modeling_qwen3
    from transformers.models.qwen3_vl import modeling_qwen3_vl

    from docvlm.models.fused import text_rotary
    from docvlm.models.text_rotary import apply_rotary, fused_prefill_rotary, fused_reproduces

    families = (modeling_qwen3_vl.apply_rotary_pos_emb, modeling_qwen3.apply_rotary_pos_emb,
                modeling_mllama.apply_rotary_pos_emb, apply_rotary)
    for rows, tokens, heads, kv_heads, dim in ((3, 1, 8, 2, 128), (2, 37, 6, 3, 64), (1, 5, 3, 1, 80)):
        query = (torch.randn(rows, tokens, heads, dim, generator=generator) * 3).to(device=device, dtype=dtype)
        key = (torch.randn(rows, tokens, kv_heads, dim, generator=generator) * 3).to(device=device, dtype=dtype)
        angles = torch.randn(rows, tokens, dim // 2, generator=generator) * 5
        emb = torch.cat([angles, angles], dim=-1)
        cos, sin = emb.cos().to(device=device, dtype=dtype), emb.sin().to(device=device, dtype=dtype)
        got = text_rotary(query, key, cos, sin)
        for family in families:
            expected = family(query.transpose(1, 2), key.transpose(1, 2), cos, sin)
            assert all(torch.equal(g, e) and _layout(g) == _layout(e) for g, e in zip(got, expected)), (family.__module__, dim)
            assert fused_reproduces(family, dim, dtype, query.device), family.__module__
        norms = []
        for _ in range(2):
            norm = Qwen3RMSNorm(dim, eps=1e-6)
            norm.weight.data = torch.randn(dim, generator=generator)
            norms.append(norm.to(device=device, dtype=dtype))
        expected = apply_rotary(norms[0](query).transpose(1, 2), norms[1](key).transpose(1, 2), cos, sin)
        got = text_rotary(query, key, cos, sin, *norms)
        for g, e in zip(got, expected):
            torch.testing.assert_close(g, e, atol=torch.finfo(dtype).eps * 8, rtol=torch.finfo(dtype).eps * 4)

    # transformers' attention under the prefill swap: the same numbers and layout, the family's function after
    original = modeling_qwen3.apply_rotary_pos_emb
    query, key = (x.transpose(1, 2) for x in (query, key))  # (batch, heads, tokens, dim), as its attention has them
    expected = original(query, key, cos, sin)
    with fused_prefill_rotary(original, enabled=True):
        swapped = modeling_qwen3.apply_rotary_pos_emb
        assert swapped is not original
        got = swapped(query, key, cos, sin)
        per_axis = swapped(query, key, cos[None].expand(3, -1, -1, -1), sin[None].expand(3, -1, -1, -1))  # not 3-D
    assert modeling_qwen3.apply_rotary_pos_emb is original
    assert all(torch.equal(g, e) and _layout(g) == _layout(e) for g, e in zip(got, expected))
    assert all(torch.equal(g, e) for g, e in zip(per_axis, original(query, key, cos[None].expand(3, -1, -1, -1),
                                                                    sin[None].expand(3, -1, -1, -1))))
    with fused_prefill_rotary(original, enabled=False):
        assert modeling_qwen3.apply_rotary_pos_emb is original

    def rotary_in_fp32(q, k, cos, sin):  # another family's numerics: not the fused kernel's
        return tuple(apply_rotary(x.float(), x.float(), cos.float(), sin.float())[0].to(x.dtype) for x in (q, k))
    assert not fused_reproduces(rotary_in_fp32, 128, dtype, torch.device(device))


def check_add_rms_norm(device: str, dtype: torch.dtype, generator: torch.Generator) -> None:
    """The residual add bit for bit as transformers' add, its norm within a rounding (the sum's order)."""
    from docvlm.models.fused import add_rms_norm

    for shape in ((5, 1, 64), (2, 9, 200)):
        norm = Qwen3RMSNorm(shape[-1], eps=1e-6)
        norm.weight.data = torch.randn(shape[-1], generator=generator)
        norm = norm.to(device=device, dtype=dtype)
        hidden, delta = ((torch.randn(*shape, generator=generator) * 3).to(device=device, dtype=dtype) for _ in range(2))
        total, normed = add_rms_norm(hidden, delta, norm.weight, norm.variance_epsilon)
        assert torch.equal(total, hidden + delta), shape
        _within_one_rounding(normed, norm(hidden + delta), dtype, ("add_rms_norm", shape))


def check_decoder_layer(device: str, dtype: torch.dtype, generator: torch.Generator) -> None:
    """The static engine's layer (fused norms, rotary and residual adds, Triton turn attention over the KV
    buffers) against transformers' Qwen3 decoder layer on the same causal tokens, the previous layer's MLP
    output still pending; and the KV it leaves is transformers' rotated keys and values."""
    from functools import partial

    from transformers.models.qwen3 import modeling_qwen3

    from docvlm.models.merged import merge_layer
    from docvlm.models.text_layers import self_layer, turn_attend
    from docvlm.models.text_rotary import fused_reproduces, query_key_positions

    rows, tokens, dim, columns = 2, 7, 16, 64
    config = Qwen3Config(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
                         head_dim=dim, num_hidden_layers=1, attn_implementation="eager")
    layer = modeling_qwen3.Qwen3DecoderLayer(config, 0)
    for parameter in layer.parameters():
        parameter.data = torch.randn(parameter.shape, generator=generator) * (0.3 if parameter.dim() > 1 else 1.0)
    layer = layer.to(device=device, dtype=dtype)
    hidden, pending = ((torch.randn(rows, tokens, 64, generator=generator) * 2).to(device=device, dtype=dtype)
                       for _ in range(2))
    angles = torch.arange(tokens)[:, None] * torch.rand(dim // 2, generator=generator)
    emb = torch.cat([angles, angles], dim=-1).expand(rows, tokens, dim)
    cos, sin = emb.cos().to(device=device, dtype=dtype), emb.sin().to(device=device, dtype=dtype)
    causal = torch.full((tokens, tokens), torch.finfo(dtype).min).triu(1).to(device=device, dtype=dtype)
    with torch.no_grad():
        expected = layer(hidden + pending, attention_mask=causal[None, None], position_embeddings=(cos, sin))
        expected = expected[0] if isinstance(expected, tuple) else expected
        keys, values = (torch.zeros(rows, 2, columns, dim, device=device, dtype=dtype) for _ in range(2))
        attend = partial(turn_attend, bias=torch.zeros(rows, columns, device=device, dtype=dtype), start=0)
        positions = query_key_positions(modeling_qwen3.apply_rotary_pos_emb, use_fused=True)
        with fused_kernels(layer, enabled=True):
            after_attention, mlp = self_layer(layer, hidden, pending, cos, sin, keys, values, attend, positions)
            merged = merge_layer(layer)  # from here on the modules' weights are views of the merged ones
            assert merged is not None and merged.gate_up is not None
            again = self_layer(layer, hidden, pending, cos, sin, keys, values, attend, positions, merged)
        unchanged = layer(hidden + pending, attention_mask=causal[None, None], position_embeddings=(cos, sin))
    assert fused_reproduces(modeling_qwen3.apply_rotary_pos_emb, dim, dtype, hidden.device)
    # Other kernels (attention, products) sum in other orders: an output that is a difference of terms as
    # large as the layer's largest outputs (~60 here) carries their roundings. Measured, in units of eps x
    # that scale: 0.70 and 1.15 (interpreter, fp16, two seeds), 0.87 (H100, bf16); a wrong position, mask
    # or weight is off by many units.
    eps = torch.finfo(dtype).eps
    scale = expected.float().abs().max().item()
    torch.testing.assert_close(after_attention + mlp, expected, atol=2 * eps * scale, rtol=0)
    torch.testing.assert_close(again[0] + again[1], expected, atol=2 * eps * scale, rtol=0)
    assert torch.equal(unchanged[0] if isinstance(unchanged, tuple) else unchanged, expected)
    key = layer.self_attn.k_norm(layer.self_attn.k_proj(layer.input_layernorm(hidden + pending)).view(rows, tokens, 2, dim))
    _, rotated = modeling_qwen3.apply_rotary_pos_emb(key.transpose(1, 2), key.transpose(1, 2), cos, sin)
    torch.testing.assert_close(keys[:, :, :tokens], rotated, atol=20 * eps, rtol=20 * eps)


if __name__ == "__main__":
    check(sys.argv[1], getattr(torch, sys.argv[2]))
