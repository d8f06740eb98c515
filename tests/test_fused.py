"""The fused kernels (RMSNorm, SiLU-gated MLP): same values as transformers' modules (CPU through Triton's
interpreter), swapped in only while the static engine runs and only for CUDA half precision."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import Qwen3Config
from transformers.models.qwen3.modeling_qwen3 import Qwen3MLP, Qwen3RMSNorm

from docvlm.models.fused import fused_kernels, runs_on

HERE = Path(__file__).parent


def test_kernels_match_transformers_modules_under_the_interpreter():
    """fp16: the interpreter truncates fp32 -> bf16 where GPUs round (the CUDA tests check bf16)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    done = subprocess.run([sys.executable, str(HERE / "fused_check.py"), "cpu", "float16"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_a_decode_layer_runs_thirteen_kernels():
    """A Qwen3 decoder layer's decode step on the fused path: residual add + norm (1), q/k/v (3; merged 1),
    per-head norm + rotary (2), KV writes (2), attention (2), o_proj (1), add + norm (1), MLP (4; merged 3);
    transformers' norms, rotary and adds made it 28 (counted the same way on the code before the fusions)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    done = subprocess.run([sys.executable, str(HERE / "kernel_count.py")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "separate 16 merged 13", done.stdout + done.stderr


def test_merged_projections_are_the_modules_weights():
    """merge_layer: q/k/v (with their biases) and gate/up as one matrix each, the modules' weights views of
    it (no second copy), the same products; a MLP that is not SiLU-gated keeps its own."""
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2DecoderLayer

    from docvlm.models.merged import merge_layer, mlp_output, query_key_value

    for act, gated in (("silu", True), ("gelu", False)):
        config = Qwen2Config(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=2,
                             hidden_act=act)
        layer = Qwen2DecoderLayer(config, 0)
        attn, mlp = layer.self_attn, layer.mlp
        x = torch.randn(3, 5, 32)
        with torch.no_grad():
            before = [attn.q_proj(x), attn.k_proj(x), attn.v_proj(x), mlp.gate_proj(x), mlp.up_proj(x), mlp(x)]
            merged = merge_layer(layer)
            gate_up = torch.nn.functional.linear(x, merged.gate_up).chunk(2, dim=-1) if gated else \
                (mlp.gate_proj(x), mlp.up_proj(x))
            after = [*query_key_value(attn, x, merged), *gate_up, mlp_output(mlp, x, None)]  # (fused: CUDA, interpreter)
        assert merged.qkv.shape == (32 + 16 + 16, 32) and merged.qkv_widths == [32, 16, 16]
        assert attn.q_proj.bias is not None and merged.qkv_bias.shape == (64,)
        for module, offset in ((attn.q_proj, 0), (attn.k_proj, 32), (attn.v_proj, 48)):
            assert module.weight.data_ptr() == merged.qkv[offset].data_ptr()
            assert module.bias.data_ptr() == merged.qkv_bias[offset:].data_ptr()
        assert (merged.gate_up is not None) == gated
        if gated:
            assert mlp.gate_proj.weight.data_ptr() == merged.gate_up.data_ptr()
            assert mlp.up_proj.weight.data_ptr() == merged.gate_up[48].data_ptr()
        for a, b in zip(before, after):
            torch.testing.assert_close(a, b)
        with torch.no_grad():
            assert torch.equal(attn.q_proj(x), before[0])  # the module's own forward reads the same numbers
        again = merge_layer(layer)  # a second engine over the same model: the same matrices, no copy
        assert again.qkv is merged.qkv and again.qkv_bias is merged.qkv_bias and again.gate_up is merged.gate_up
    biased = Qwen2DecoderLayer(Qwen2Config(hidden_size=32, intermediate_size=48, num_attention_heads=4,
                                           num_key_value_heads=2), 0)
    biased.mlp.gate_proj, biased.mlp.up_proj = torch.nn.Linear(32, 48), torch.nn.Linear(32, 48)
    gate = biased.mlp.gate_proj.weight
    assert merge_layer(biased).gate_up is None and biased.mlp.gate_proj.weight is gate  # biases: as it was


def test_the_fused_path_gives_generate_tokens(tiny_models):
    """The static engine in half precision (what a GPU runs: fused norms, rotary and residual adds, merged
    projections, Triton attention; here through the interpreter) gives transformers' generate's tokens
    through two turns. Qwen3-VL: per-head norms, 3-D positions; ~20 s (every family passed on 2026-12-05)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    done = subprocess.run([sys.executable, str(HERE / "fused_engine_check.py"), "qwen3_vl"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and done.stdout.strip() == "qwen3_vl same", done.stdout + done.stderr[-3000:]


def test_swap_is_scoped_and_only_for_half_precision_cuda():
    config = Qwen3Config(hidden_size=8, intermediate_size=16)
    model = torch.nn.Sequential(Qwen3RMSNorm(8), torch.nn.Linear(8, 8), Qwen3MLP(config), Qwen3RMSNorm(8),
                                Qwen3MLP(Qwen3Config(hidden_size=8, intermediate_size=16, hidden_act="gelu")))
    with fused_kernels(model, enabled=True):
        assert all("forward" in model[i].__dict__ for i in (0, 2, 3))
        assert "forward" not in model[1].__dict__ and "forward" not in model[4].__dict__  # not SiLU-gated
    assert not any("forward" in module.__dict__ for module in model.modules())
    with fused_kernels(model, enabled=False):
        assert not any("forward" in module.__dict__ for module in model)
    assert not runs_on(torch.float32, torch.device("cuda"))
    assert not runs_on(torch.bfloat16, torch.device("cpu"))  # no interpreter in this process


def test_vision_rotary_swap_is_scoped_to_enabled_runs(tiny_models):
    """The Qwen-VL vision towers' rotary function is the fused one only inside an enabled context."""
    from transformers.models.qwen3_vl import modeling_qwen3_vl

    from docvlm.models import ModelSpec, load_model
    from docvlm.models.fused import fused_vision_rotary, vision_rotary

    engine = load_model(ModelSpec(family="qwen3_vl", path=str(tiny_models["qwen3_vl"]), max_tiles=4),
                        torch.device("cpu"))
    original = modeling_qwen3_vl.apply_rotary_pos_emb_vision
    with fused_vision_rotary(engine.model, enabled=True):
        assert modeling_qwen3_vl.apply_rotary_pos_emb_vision is vision_rotary
    assert modeling_qwen3_vl.apply_rotary_pos_emb_vision is original
    with fused_vision_rotary(engine.model, enabled=False):
        assert modeling_qwen3_vl.apply_rotary_pos_emb_vision is original


def test_a_fused_rotary_that_cannot_run_leaves_the_familys_own(monkeypatch, caplog):
    """The engine's one check of the fused text rotary: a kernel that raises on this GPU or Triton (a
    launch option it does not know, shared memory) means the family's rotary runs, not a failed build."""
    import logging

    from transformers.models.qwen3 import modeling_qwen3

    from docvlm.models import fused
    from docvlm.models.text_rotary import fused_reproduces

    def unrunnable(*args, **kwargs):
        raise RuntimeError("out of resource: shared memory")

    monkeypatch.setenv("TRITON_INTERPRET", "1")  # where the kernels would run
    monkeypatch.setattr(fused, "text_rotary", unrunnable)
    with caplog.at_level(logging.WARNING):
        assert not fused_reproduces(modeling_qwen3.apply_rotary_pos_emb, 128, torch.float16, torch.device("cpu"))
    assert "does not run here (out of resource: shared memory)" in caplog.text
