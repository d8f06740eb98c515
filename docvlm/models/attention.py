"""Attention over the static engine's KV buffers: grouped-query KV read as it is, never repeated.

Three ways, one contract (query (rows, heads, tokens, dim), KV buffers (rows, kv heads, columns, dim)
as strided views, a key bias (rows, columns): 0 attended, a large negative masked):
- `grouped_attention`: two batched matmuls, as transformers' eager attention computes it; the
  reference, and the path of fp32 and CPUs;
- `decode_attention` (one token a row, CUDA half precision): a Triton flash-decoding kernel. The
  matmuls stream K, V and an fp32 score matrix over EVERY column up to the bucket's end, and the
  softmax between them is five elementwise kernels; here each program takes one (row, KV head,
  column split), loads the query heads that share the KV head, walks only each row's columns from
  its first attended one to the last written one (bounds read on the device, so one CUDA graph serves
  every length; or, unbounded, SKIPS every block the bias masks whole) and keeps an online softmax;
  a second kernel merges the splits;
- `turn_attention` (a follow-up turn's tokens, causal among themselves): the same walk with a block
  of query tokens a program (transformers' SDPA path repeated every layer's KV per query head);
  `image_attention` is that walk without the causal bound, for a turn's cross-attention to an image.
  On a GPU a turn runs the fastest here of a few launches of that kernel (query tokens a program,
  columns a step, warps, stages) and torch's SDPA given the bias as a mask, timed on the first call
  (fastest.py): which wins depends on the GPU and the head count.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from docvlm.models.fastest import fastest
from docvlm.models.fused import runs_on

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs without triton: the matmul path serves
    triton = None

BLOCK_COLUMNS = 64
# With its walk bounded per row, the decode kernel runs best without the per-block branch and with two
# pipeline stages (measured on an H100 at 8-96 rows, 2026-11-27: 0.204 vs 0.225 ms a layer at 56 rows).
BOUNDED_STAGES = 2
TARGET_PROGRAMS = 2 * 132  # two waves of an H100's SMs: enough splits to keep every SM busy
MAX_SPLITS = 16


@dataclass(frozen=True)
class TurnLaunch:
    """How the turn kernel is launched: query tokens a program takes (x the query heads of one KV head),
    KV columns a step, Triton's warps and pipeline stages (None: Triton's defaults).
    scripts/bench_attention.py --turn-sweep times the alternatives on a GPU."""
    tokens: int = 16
    columns: int = BLOCK_COLUMNS
    warps: Optional[int] = None
    stages: Optional[int] = None

    def options(self) -> dict[str, int]:
        return {key: value for key, value in (("num_warps", self.warps), ("num_stages", self.stages)) if value}


TURN_LAUNCH = TurnLaunch()  # the interpreter's (tests), and the first of the GPU's candidates
# Candidates on a GPU, each compiled and timed once a process (a few seconds, in warm-up): the best four
# of 37 launches on an H200 (64 rows x 630 tokens after 2,300 columns, 32 heads of 128, 8 KV heads;
# bench_attention.py --turn-sweep, 2026-12-06: 7.6-8.2 ms against the default's 9.4; 8 warps at 16
# tokens x 128 columns: 14.3) and the default.
TURN_LAUNCHES = (TURN_LAUNCH, TurnLaunch(16, 128, 4, 2), TurnLaunch(32, 128, 8, 2), TurnLaunch(32, 32, 4, 3),
                 TurnLaunch(32, 64, 4, 2))
SDPA_WAY = "SDPA with the bias as a mask"  # the name `turn_ways` gives torch's SDPA
SDPA_MASK_BYTES = 256 * 2**20  # the largest mask the SDPA way builds (64 rows x 630 tokens x 2,930 columns: 236 MB)


def grouped_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                      scale: float) -> torch.Tensor:
    """query (rows, heads, tokens, dim); keys/values (rows, kv heads, columns, dim); bias broadcastable to
    (rows, 1, tokens, columns). The query heads sharing a KV head ride as its query rows (no KV copy).
    -> (rows, tokens, heads * dim)."""
    rows, heads, tokens, dim = query.shape
    kv_heads = keys.shape[1]
    group = heads // kv_heads
    grouped = query.reshape(rows, kv_heads, group * tokens, dim)  # (head in group, token) -> one axis
    bias = bias.expand(rows, 1, tokens, -1)[:, :, None].expand(-1, -1, group, -1, -1).reshape(rows, 1, group * tokens, -1)
    scores = torch.matmul(grouped, keys.transpose(-1, -2)) * scale + bias
    weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights, values).reshape(rows, heads, tokens, dim)
    return out.transpose(1, 2).reshape(rows, tokens, heads * dim)


def masked_bias(dtype: torch.dtype) -> float:
    """Key bias at or below this is a masked column (masks use the dtype's most negative value)."""
    return torch.finfo(dtype).min / 2


def available(query: torch.Tensor) -> bool:
    """Whether the kernels take this query (see `runs`)."""
    return runs(query.dtype, query.device, query.shape[-1])


def runs(dtype: torch.dtype, device: torch.device, head_dim: int) -> bool:
    """The kernels run where the fused ones do (CUDA half precision, or the interpreter for tests), for
    a power-of-two head dim of at least 16 (what tl.dot takes)."""
    return runs_on(dtype, device) and head_dim >= 16 and not head_dim & (head_dim - 1)


def splits_for(rows: int, kv_heads: int, columns: int) -> int:
    """Column splits per (row, KV head): more when few rows would leave SMs idle."""
    wanted = -(-TARGET_PROGRAMS // (rows * kv_heads))
    return max(1, min(MAX_SPLITS, wanted, -(-columns // BLOCK_COLUMNS)))


def decode_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                     scale: float, columns: int, splits: Optional[int] = None, *,
                     bounds: Optional[tuple[torch.Tensor, torch.Tensor]] = None) -> torch.Tensor:
    """query (rows, heads, 1, dim); keys/values (rows, kv heads, >= columns, dim) (strided views allowed,
    dim contiguous); bias (rows, >= columns): 0 attended, a large negative masked. -> (rows, 1, heads * dim).
    `bounds` = (first (rows,), last (1,)), read on the device when the kernel runs (a CUDA graph captured
    over the whole buffer replays them): each row walks only columns [first[row], last] (not its left
    padding, not the buffer's unwritten tail), its splits sharing that range. Without them every
    column up to `columns` is walked and blocks the bias masks whole are passed over by a branch."""
    rows, heads, _, dim = query.shape
    kv_heads = keys.shape[1]
    group = heads // kv_heads
    splits = splits or splits_for(rows, kv_heads, columns)
    span = -(-columns // (splits * BLOCK_COLUMNS)) * BLOCK_COLUMNS  # columns a split walks (unbounded)
    first, last = bounds if bounds is not None else (bias, bias)  # (unread without bounds)
    partial = torch.empty((rows, heads, splits, dim), dtype=torch.float32, device=query.device)
    maxima = torch.empty((rows, heads, splits), dtype=torch.float32, device=query.device)
    sums = torch.empty((rows, heads, splits), dtype=torch.float32, device=query.device)
    query = query.reshape(rows, heads, dim)
    masked_below = masked_bias(bias.dtype)  # a block whose bias is all below this is skipped
    _split_kernel[(rows, kv_heads, splits)](
        query, keys, values, bias, partial, maxima, sums, first, last,
        query.stride(0), query.stride(1),
        keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2),
        bias.stride(0),
        columns, span, scale * math.log2(math.e), masked_below,
        GROUP=group, GROUP_PAD=max(16, triton.next_power_of_2(group)), DIM=dim, BLOCK=BLOCK_COLUMNS,
        BOUNDED=bounds is not None, **({"num_stages": BOUNDED_STAGES} if bounds is not None else {}),
    )
    out = torch.empty((rows, heads, dim), dtype=query.dtype, device=query.device)
    _merge_kernel[(rows, heads)](partial, maxima, sums, out, SPLITS=splits, SPLITS_PAD=max(2, triton.next_power_of_2(splits)),
                                 DIM=dim)
    return out.reshape(rows, 1, heads * dim)


def turn_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                   start: int, scale: float, launch: Optional[TurnLaunch] = None) -> torch.Tensor:
    """A turn's `tokens` new tokens per row, written at columns [start, start + tokens): each sees the
    columns `bias` leaves open up to its own. -> (rows, tokens, heads * dim). `launch`: this one, not
    the fastest of TURN_LAUNCHES."""
    return _turn(query, keys, values, bias, start, scale, causal=True, launch=launch)


def image_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor,
                    scale: float, launch: Optional[TurnLaunch] = None) -> torch.Tensor:
    """Cross-attention of a turn's tokens to an image's KV (keys/values (rows, kv heads, columns, dim)):
    every token sees the columns `bias` (rows, columns) leaves open. -> (rows, tokens, heads * dim)."""
    return _turn(query, keys, values, bias, keys.shape[2], scale, causal=False, launch=launch)


def _turn(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor, start: int,
          scale: float, causal: bool, launch: Optional[TurnLaunch] = None) -> torch.Tensor:
    if launch is not None or query.device.type != "cuda":
        return _turn_launched(query, keys, values, bias, start, scale, causal, launch or TURN_LAUNCH)
    ways = turn_ways(query, keys, values, bias, start, scale, causal)
    key = (causal, query.shape[1], keys.shape[1], query.shape[-1], query.dtype, query.device, tuple(ways))
    return fastest("turn attention", key, ways, query.device)


def turn_ways(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor, start: int,
              scale: float, causal: bool) -> dict[str, Callable[[], torch.Tensor]]:
    """The ways a GPU chooses among for a turn: the Triton kernel under each of TURN_LAUNCHES, and torch's
    SDPA given the bias as a mask (cuDNN on an H200: 5.3 ms where the best launch took 7.6, the sweep
    above) where that mask, (rows, tokens, columns) for a causal turn, stays under SDPA_MASK_BYTES: a
    long statement turn's would take gigabytes the batch plan never reserved."""
    ways: dict[str, Callable[[], torch.Tensor]] = {
        str(each): functools.partial(_turn_launched, query, keys, values, bias, start, scale, causal, each)
        for each in TURN_LAUNCHES}
    rows, _, tokens, _ = query.shape
    mask_bytes = rows * (tokens if causal else 1) * (start + tokens if causal else start) * bias.element_size()
    if mask_bytes <= SDPA_MASK_BYTES:
        ways[SDPA_WAY] = functools.partial(_turn_sdpa, query, keys, values, bias, start, scale, causal)
    return ways


def _turn_sdpa(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor, start: int,
               scale: float, causal: bool) -> torch.Tensor:
    rows, heads, tokens, dim = query.shape
    end = start + tokens if causal else start
    mask = turn_bias(bias, start, tokens) if causal else bias[:, None, None, :end]
    out = F.scaled_dot_product_attention(query, keys[:, :, :end], values[:, :, :end], attn_mask=mask, scale=scale,
                                         enable_gqa=heads != keys.shape[1])
    return out.transpose(1, 2).reshape(rows, tokens, heads * dim)


def _turn_launched(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor, start: int,
                   scale: float, causal: bool, launch: TurnLaunch) -> torch.Tensor:
    rows, heads, tokens, dim = query.shape
    kv_heads = keys.shape[1]
    group = heads // kv_heads
    out = torch.empty((rows, tokens, heads * dim), dtype=query.dtype, device=query.device)
    block = triton.next_power_of_2(launch.tokens * group)
    masked_below = masked_bias(bias.dtype)
    _turn_kernel[(rows, kv_heads, triton.cdiv(tokens * group, block))](
        query, keys, values, bias, out,
        query.stride(0), query.stride(1), query.stride(2),
        keys.stride(0), keys.stride(1), keys.stride(2),
        values.stride(0), values.stride(1), values.stride(2),
        bias.stride(0), tokens, start, scale * math.log2(math.e), masked_below,
        GROUP=group, DIM=dim, BLOCK_M=block, BLOCK=launch.columns, CAUSAL=causal, **launch.options(),
    )
    return out


def turn_bias(bias: torch.Tensor, start: int, tokens: int) -> torch.Tensor:
    """The key bias made causal for the turn's tokens: (rows, 1, tokens, start + tokens), for `grouped_attention`."""
    columns = torch.arange(start + tokens, device=bias.device)
    later = columns[None, :] > (start + torch.arange(tokens, device=bias.device))[:, None]
    return bias[:, None, None, : start + tokens].masked_fill(later, torch.finfo(bias.dtype).min)


if triton is not None:

    @triton.jit
    def _split_kernel(query, keys, values, bias, partial, maxima, sums, first, last,
                      q_row, q_head, k_row, k_head, k_col, v_row, v_head, v_col, bias_row,
                      columns, span, scale_log2, masked_below,
                      GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, DIM: tl.constexpr, BLOCK: tl.constexpr,
                      BOUNDED: tl.constexpr):
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
        if BOUNDED:  # this row's attended range, split evenly; no branch per block (it stalls the loads)
            low = tl.load(first + row).to(tl.int32)
            high = tl.minimum(tl.load(last).to(tl.int32) + 1, columns)
            share = tl.cdiv(tl.cdiv(tl.maximum(high - low, 0), splits), BLOCK) * BLOCK
            begin = low + split * share
            end = tl.minimum(begin + share, high)
        else:
            begin = split * span
            end = tl.minimum(begin + span, columns)
        for start in range(begin, end, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            col_ok = cols < end
            b = tl.load(bias + row * bias_row + cols, mask=col_ok, other=float("-inf")).to(tl.float32)
            if BOUNDED or tl.max(b, axis=0) > masked_below:  # unbounded: pass over blocks masked whole
                open_ = col_ok & (b > masked_below)
                k = tl.load(keys + row * k_row + kv_head * k_head + cols[:, None] * k_col + dims[None, :],
                            mask=open_[:, None], other=0.0)
                s = tl.dot(q, tl.trans(k)).to(tl.float32) * scale_log2 + b[None, :] * 1.4426950408889634
                s = tl.where(open_[None, :], s, float("-inf"))
                new_best = tl.maximum(best, tl.max(s, axis=1))
                safe = tl.where(new_best == float("-inf"), 0.0, new_best)  # nothing open yet
                p = tl.exp2(s - safe[:, None])
                alpha = tl.exp2(best - safe)
                total = total * alpha + tl.sum(p, axis=1)
                v = tl.load(values + row * v_row + kv_head * v_head + cols[:, None] * v_col + dims[None, :],
                            mask=open_[:, None], other=0.0)  # masked: never read
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

    @triton.jit
    def _turn_kernel(query, keys, values, bias, out,
                     q_row, q_head, q_token, k_row, k_head, k_col, v_row, v_head, v_col, bias_row,
                     tokens, start, scale_log2, masked_below,
                     GROUP: tl.constexpr, DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK: tl.constexpr,
                     CAUSAL: tl.constexpr):
        row = tl.program_id(0)
        kv_head = tl.program_id(1)
        m = tl.program_id(2) * BLOCK_M + tl.arange(0, BLOCK_M)  # query vector = token * GROUP + head in group
        token = m // GROUP
        head = kv_head * GROUP + m % GROUP
        valid = token < tokens
        dims = tl.arange(0, DIM)
        q = tl.load(query + row * q_row + head[:, None] * q_head + token[:, None] * q_token + dims[None, :],
                    mask=valid[:, None], other=0.0)
        best = tl.full((BLOCK_M,), float("-inf"), tl.float32)
        total = tl.zeros((BLOCK_M,), tl.float32)
        acc = tl.zeros((BLOCK_M, DIM), tl.float32)
        if CAUSAL:  # the block's last token's own column
            last = start + tl.minimum(((tl.program_id(2) + 1) * BLOCK_M - 1) // GROUP + 1, tokens)
        else:  # every column before `start`
            last = start
        for first in range(0, last, BLOCK):
            cols = first + tl.arange(0, BLOCK)
            col_ok = cols < last
            b = tl.load(bias + row * bias_row + cols, mask=col_ok, other=float("-inf")).to(tl.float32)
            if tl.max(b, axis=0) > masked_below:
                open_ = col_ok & (b > masked_below)
                k = tl.load(keys + row * k_row + kv_head * k_head + cols[:, None] * k_col + dims[None, :],
                            mask=open_[:, None], other=0.0)
                s = tl.dot(q, tl.trans(k)).to(tl.float32) * scale_log2
                if CAUSAL:
                    seen = open_[None, :] & (cols[None, :] <= start + token[:, None])
                else:
                    seen = open_[None, :] & valid[:, None]
                s = tl.where(seen, s, float("-inf"))
                new_best = tl.maximum(best, tl.max(s, axis=1))
                safe = tl.where(new_best == float("-inf"), 0.0, new_best)  # a query with nothing seen yet
                p = tl.exp2(s - safe[:, None])
                alpha = tl.exp2(best - safe)
                total = total * alpha + tl.sum(p, axis=1)
                v = tl.load(values + row * v_row + kv_head * v_head + cols[:, None] * v_col + dims[None, :],
                            mask=open_[:, None], other=0.0)
                acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v).to(tl.float32)
                best = new_best
        result = acc / tl.where(total > 0, total, 1.0)[:, None]
        tl.store(out + (row * tokens + token[:, None]) * (tl.num_programs(1) * GROUP * DIM) + head[:, None] * DIM + dims[None, :],
                 result.to(out.dtype.element_ty), mask=valid[:, None])
