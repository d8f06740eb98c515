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


def test_a_turn_offers_sdpa_only_while_its_mask_stays_small(monkeypatch):
    """The SDPA way builds a (rows, tokens, columns) mask for a causal turn: offered up to
    SDPA_MASK_BYTES, never for a turn whose mask would be larger (a long statement turn); an image
    turn's mask is one row a conversation. Each set of ways is chosen for separately (fastest's key)."""
    from docvlm.models import attention
    from docvlm.models.attention import SDPA_WAY, TURN_LAUNCHES, turn_ways

    query = torch.zeros(4, 8, 10, 16, dtype=torch.float16)
    keys = values = torch.zeros(4, 2, 64, 16, dtype=torch.float16)
    bias = torch.zeros(4, 64, dtype=torch.float16)
    sdpa = SDPA_WAY
    assert list(turn_ways(query, keys, values, bias, 30, 0.25, causal=True)) == [str(each) for each in TURN_LAUNCHES] + [sdpa]
    monkeypatch.setattr(attention, "SDPA_MASK_BYTES", 4 * 10 * 40 * 2 - 1)  # the causal mask: 4 x 10 x 40 x 2 bytes
    assert sdpa not in turn_ways(query, keys, values, bias, 30, 0.25, causal=True)
    assert sdpa in turn_ways(query, keys, values, bias, 64, 0.25, causal=False)  # 4 x 64 x 2 bytes
    reference = attention.grouped_attention(query.float(), keys.float(), values.float(), bias[:, None, None].float(), 0.25)
    out = turn_ways(query + 1, keys + 1, values + 2, bias, 64, 0.25, causal=False)[sdpa]()
    assert out.shape == (4, 10, 8 * 16) and torch.allclose(out.float(), reference + 2)
