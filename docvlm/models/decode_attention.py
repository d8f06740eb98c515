"""Decode attention as one Triton kernel (flash-decoding): one query token a row, grouped-query KV.

Why: the static engine's decode step spent ~30% of its time in attention as two batched matmuls
(`_grouped_attention`): they stream K, V and an fp32 score matrix over EVERY column up to the
bucket's end, and the softmax between them is five elementwise kernels. Here each program takes one
(row, KV head, column split): it loads the query heads that share the KV head, walks its columns in
blocks, SKIPS every block the bias masks whole (left padding of shorter prompts, the bucket's unused
tail, pads between turns) and keeps an online softmax; a second kernel merges the splits.
Same inputs and result as `_grouped_attention` (fp32 softmax, bf16 / fp16 in and out).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs without triton: the matmul path serves
    triton = None

BLOCK_COLUMNS = 64
TARGET_PROGRAMS = 2 * 132  # two waves of an H100's SMs: enough splits to keep every SM busy
MAX_SPLITS = 16


def available(query: torch.Tensor) -> bool:
    """The kernel runs on CUDA half-precision tensors (or anywhere under TRITON_INTERPRET=1, for tests)."""
    import os

    dim = query.shape[-1]
    if triton is None or query.dtype not in (torch.float16, torch.bfloat16) or dim < 16 or dim & (dim - 1):
        return False  # tl.dot wants a power-of-two head dim of at least 16
    return query.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"


def splits_for(rows: int, kv_heads: int, columns: int) -> int:
    """Column splits per (row, KV head): more when few rows would leave SMs idle."""
    wanted = -(-TARGET_PROGRAMS // (rows * kv_heads))
    return max(1, min(MAX_SPLITS, wanted, -(-columns // BLOCK_COLUMNS)))


def decode_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                     scale: float, columns: int, splits: Optional[int] = None) -> torch.Tensor:
    """query (rows, heads, 1, dim); keys/values (rows, kv heads, >= columns, dim) (strided views allowed,
    dim contiguous); bias (rows, >= columns): 0 attended, a large negative masked. -> (rows, 1, heads * dim)."""
    rows, heads, _, dim = query.shape
    kv_heads = keys.shape[1]
    group = heads // kv_heads
    splits = splits or splits_for(rows, kv_heads, columns)
    span = -(-columns // (splits * BLOCK_COLUMNS)) * BLOCK_COLUMNS  # columns a split walks
    partial = torch.empty((rows, heads, splits, dim), dtype=torch.float32, device=query.device)
    maxima = torch.empty((rows, heads, splits), dtype=torch.float32, device=query.device)
    sums = torch.empty((rows, heads, splits), dtype=torch.float32, device=query.device)
    query = query.reshape(rows, heads, dim)
    masked_below = torch.finfo(bias.dtype).min / 2  # a block whose bias is all below this is skipped
    _split_kernel[(rows, kv_heads, splits)](
        query, keys, values, bias, partial, maxima, sums,
        query.stride(0), query.stride(1),
        keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2),
        bias.stride(0),
        columns, span, scale * math.log2(math.e), masked_below,
        GROUP=group, GROUP_PAD=max(16, triton.next_power_of_2(group)), DIM=dim, BLOCK=BLOCK_COLUMNS,
    )
    out = torch.empty((rows, heads, dim), dtype=query.dtype, device=query.device)
    _merge_kernel[(rows, heads)](partial, maxima, sums, out, SPLITS=splits, SPLITS_PAD=max(2, triton.next_power_of_2(splits)),
                                 DIM=dim)
    return out.reshape(rows, 1, heads * dim)


if triton is not None:

    @triton.jit
    def _split_kernel(query, keys, values, bias, partial, maxima, sums,
                      q_row, q_head, k_row, k_head, k_col, v_row, v_head, v_col, bias_row,
                      columns, span, scale_log2, masked_below,
                      GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, DIM: tl.constexpr, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        kv_head = tl.program_id(1)
        split = tl.program_id(2)
        splits = tl.num_programs(2)
        heads = tl.arange(0, GROUP_PAD)
        dims = tl.arange(0, DIM)
        head_ok = heads < GROUP
        q = tl.load(query + row * q_row + (kv_head * GROUP + heads)[:, None] * q_head + dims[None, :],
                    mask=head_ok[:, None], other=0.0)
        best = tl.full((GROUP_PAD,), float("-inf"), tl.float32)
        total = tl.zeros((GROUP_PAD,), tl.float32)
        acc = tl.zeros((GROUP_PAD, DIM), tl.float32)
        begin = split * span
        end = tl.minimum(begin + span, columns)
        for start in range(begin, end, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            col_ok = cols < end
            b = tl.load(bias + row * bias_row + cols, mask=col_ok, other=float("-inf")).to(tl.float32)
            if tl.max(b, axis=0) > masked_below:  # at least one column here is attended
                k = tl.load(keys + row * k_row + kv_head * k_head + cols[:, None] * k_col + dims[None, :],
                            mask=col_ok[:, None], other=0.0)
                s = tl.dot(q, tl.trans(k)).to(tl.float32) * scale_log2 + b[None, :] * 1.4426950408889634
                s = tl.where(b[None, :] > masked_below, s, float("-inf"))
                new_best = tl.maximum(best, tl.max(s, axis=1))
                p = tl.exp2(s - new_best[:, None])
                alpha = tl.exp2(best - new_best)
                total = total * alpha + tl.sum(p, axis=1)
                v = tl.load(values + row * v_row + kv_head * v_head + cols[:, None] * v_col + dims[None, :],
                            mask=col_ok[:, None], other=0.0)
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v).to(tl.float32)
                best = new_best
        out_heads = kv_head * GROUP + heads
        slot = (row * tl.num_programs(1) * GROUP + out_heads) * splits + split
        tl.store(partial + slot[:, None] * DIM + dims[None, :], acc, mask=head_ok[:, None])
        tl.store(maxima + slot, best, mask=head_ok)
        tl.store(sums + slot, total, mask=head_ok)

    @triton.jit
    def _merge_kernel(partial, maxima, sums, out, SPLITS: tl.constexpr, SPLITS_PAD: tl.constexpr, DIM: tl.constexpr):
        row_head = tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)
        index = tl.arange(0, SPLITS_PAD)
        ok = index < SPLITS
        best = tl.load(maxima + row_head * SPLITS + index, mask=ok, other=float("-inf"))
        top = tl.max(best, axis=0)
        weight = tl.where(ok & (best > float("-inf")), tl.exp2(best - top), 0.0)
        total = tl.sum(tl.load(sums + row_head * SPLITS + index, mask=ok, other=0.0) * weight, axis=0)
        dims = tl.arange(0, DIM)
        acc = tl.load(partial + (row_head * SPLITS + index)[:, None] * DIM + dims[None, :], mask=ok[:, None], other=0.0)
        result = tl.sum(acc * weight[:, None], axis=0) / total
        tl.store(out + row_head * DIM + dims, result.to(out.dtype.element_ty))
