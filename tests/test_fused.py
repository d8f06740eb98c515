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


def test_a_decode_layer_runs_sixteen_kernels():
    """A Qwen3 decoder layer's decode step on the fused path: residual add + norm (1), q/k/v (3), per-head
    norm + rotary (2), KV writes (2), attention (2), o_proj (1), add + norm (1), MLP (4); transformers' norms,
    rotary and adds made it 28 (counted the same way on the code before the fusions)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    done = subprocess.run([sys.executable, str(HERE / "kernel_count.py")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "16", done.stdout + done.stderr


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
