"""The Triton attention kernels (decode, follow-up turn) == the matmul reference, on CPU through Triton's interpreter
(fp16: the interpreter truncates fp32 -> bf16 where GPUs round; the CUDA tests cover bf16)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from docvlm.models.attention import BLOCK_COLUMNS, MAX_SPLITS, splits_for

pytest.importorskip("triton")
HERE = Path(__file__).parent


def test_kernels_match_matmul_attention_under_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(HERE.parent), str(HERE)]))
    done = subprocess.run([sys.executable, str(HERE / "attention_check.py"), "cpu", "float16"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_splits_fill_the_gpu_without_empty_splits():
    assert splits_for(64, 8, 4096) == 1  # 512 programs already fill two waves
    assert splits_for(4, 8, 4096) == 9
    assert splits_for(1, 1, 100_000) == MAX_SPLITS
    assert splits_for(1, 1, BLOCK_COLUMNS) == 1  # never more splits than column blocks


def test_half_precision_only():
    from docvlm.models.attention import available

    assert not available(torch.zeros(1, 4, 1, 16))  # fp32 uses the matmuls
    assert not available(torch.zeros(1, 4, 1, 16, dtype=torch.float16))  # so does a CPU (no interpreter)
    assert not available(torch.zeros(1, 4, 1, 24, dtype=torch.float16))  # and a head dim tl.dot cannot take
