"""The fused RMSNorm: same values as transformers' RMSNorm (CPU through Triton's interpreter), swapped in
only while the static engine runs and only for CUDA half precision."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm

from docvlm.models.fused_norm import fused_rms_norms, runs_on

HERE = Path(__file__).parent


def test_kernel_matches_transformers_rmsnorm_under_the_interpreter():
    """fp16: the interpreter truncates fp32 -> bf16 where GPUs round (the CUDA tests check bf16)."""
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    done = subprocess.run([sys.executable, str(HERE / "fused_norm_check.py"), "cpu", "float16"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_swap_is_scoped_and_only_for_half_precision_cuda():
    model = torch.nn.Sequential(Qwen3RMSNorm(8), torch.nn.Linear(8, 8), Qwen3RMSNorm(8))
    with fused_rms_norms(model, enabled=True):
        assert all("forward" in model[i].__dict__ for i in (0, 2)) and "forward" not in model[1].__dict__
    assert not any("forward" in module.__dict__ for module in model)
    with fused_rms_norms(model, enabled=False):
        assert not any("forward" in module.__dict__ for module in model)
    assert not runs_on(torch.float32, torch.device("cuda"))
    assert not runs_on(torch.bfloat16, torch.device("cpu"))  # no interpreter in this process
