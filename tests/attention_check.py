"""The Triton attention kernels against the matmul reference; run by the tests in a process of its own
(TRITON_INTERPRET=1 must be set before triton compiles, i.e. before docvlm imports it) and by the CUDA
tests directly."""

import sys

import torch

from docvlm.models.attention import (SDPA_WAY, TURN_LAUNCH, TurnLaunch, available, decode_attention, grouped_attention, image_attention,
                                     turn_attention, turn_bias, turn_ways)
from docvlm.models.text_layers import cross_attention

DECODE_CASES = [  # rows, heads, kv heads, head dim, buffer columns, attended columns, splits (None: automatic)
    (3, 8, 2, 32, 300, 200, None),
    (2, 4, 4, 16, 130, 130, 3),
    (5, 16, 2, 64, 256, 256, 1),
    (4, 12, 4, 16, 512, 449, 5),
]
CROSS_CASES = [  # rows, heads, kv heads, head dim, image columns, tiles, tokens (1: a decode step)
    (4, 8, 2, 32, 4 * 70, 4, 1),
    (3, 4, 4, 16, 2 * 130, 2, 1),
    (3, 8, 2, 32, 4 * 70, 4, 5),  # a turn's tokens: the turn kernel without its causal bound
    (5, 8, 2, 32, 4 * 70, 4, 37),
]
TURN_CASES = [  # rows, heads, kv heads, head dim, buffer columns, columns before the turn, turn tokens
    (3, 8, 2, 32, 400, 150, 37),
    (2, 4, 4, 16, 200, 64, 1),
    (3, 6, 2, 16, 512, 300, 90),  # several query blocks (the interpreter's cost grows with rows x heads)
]


def _inputs(generator, device, dtype, rows, heads, kv_heads, dim, capacity, tokens=1):
    def rand(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    query = rand(rows, heads, tokens, dim)
    keys, values = rand(rows + 2, kv_heads, capacity, dim)[:rows], rand(rows + 2, kv_heads, capacity, dim)[:rows]
    return query, keys, values


def _bias(rows: int, capacity: int, end: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    masked = torch.finfo(dtype).min
    bias = torch.full((rows, capacity), masked, dtype=dtype, device=device)
    for row in range(rows):
        bias[row, 70 * row + 5 : end] = 0  # left padding grows per row: whole blocks are skipped
        bias[row, 40:47] = masked  # pads between turns
        bias[row, end - 1] = 0  # the last token sees itself
    return bias


def _cross_bias(rows: int, columns: int, tiles: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """Row r sees its first r + 1 tiles (the rest are padding); the last row sees no image (bias 0 everywhere,
    as transformers gives a text row masked out whole)."""
    per_tile = columns // tiles
    bias = torch.full((rows, 1, 1, columns), torch.finfo(dtype).min, dtype=dtype, device=device)
    for row in range(rows - 1):
        bias[row, ..., : per_tile * min(tiles, row + 1)] = 0
    bias[rows - 1] = 0
    return bias


def check_cross(device: str, dtype: torch.dtype, cases=CROSS_CASES, tolerance: float = 2e-3) -> None:
    """Cross-attention to the image KV (text_layers.cross_attention) == the matmuls; masked tiles never read."""
    generator = torch.Generator().manual_seed(1)
    for rows, heads, kv_heads, dim, columns, tiles, tokens in cases:
        query, keys, values = _inputs(generator, device, dtype, rows, heads, kv_heads, dim, columns, tokens)
        bias = _cross_bias(rows, columns, tiles, device, dtype)
        out = cross_attention(query, keys, values, bias, 0.125)
        reference = grouped_attention(query, keys, values, bias, 0.125)
        _close(out, reference, dtype, tolerance, ("cross", rows, heads, kv_heads, dim, columns, tiles, tokens))
        if available(query):  # the kernels skip padded tiles' columns whole (SDPA, a GPU's other way, reads them)
            def kernel() -> torch.Tensor:
                return (cross_attention(query, keys, values, bias, 0.125) if tokens == 1 else
                        image_attention(query, keys, values, bias[:, 0, 0], 0.125, TURN_LAUNCH))
            clean = kernel()
            unseen = (bias[: rows - 1, 0, 0] < 0).all(dim=0)
            keys[: rows - 1, :, unseen], values[: rows - 1, :, unseen] = float("nan"), float("nan")
            assert torch.equal(kernel()[: rows - 1], clean[: rows - 1])


def check(device: str, dtype: torch.dtype, decode_cases=DECODE_CASES, turn_cases=TURN_CASES,
          tolerance: float = 2e-3) -> None:
    check_cross(device, dtype, tolerance=tolerance)
    generator = torch.Generator().manual_seed(0)
    for rows, heads, kv_heads, dim, capacity, columns, splits in decode_cases:
        query, keys, values = _inputs(generator, device, dtype, rows, heads, kv_heads, dim, capacity)
        bias = _bias(rows, capacity, columns, device, dtype)
        assert available(query)
        out = decode_attention(query, keys, values, bias, 0.125, columns, splits)
        reference = grouped_attention(query, keys[:, :, :columns], values[:, :, :columns],
                                      bias[:, None, None, :columns], 0.125)
        _close(out, reference, dtype, tolerance, ("decode", rows, heads, kv_heads, dim, columns, splits))
        keys[:, :, 40:47], values[:, :, 40:47] = float("nan"), float("nan")  # masked columns are never read
        assert torch.equal(decode_attention(query, keys, values, bias, 0.125, columns, splits), out)
        # The static engine's graphs attend over the whole buffer: the unwritten, masked tail is skipped.
        keys[:, :, columns:], values[:, :, columns:] = float("nan"), float("nan")
        whole = decode_attention(query, keys, values, bias, 0.125, capacity, splits)
        _close(whole, reference, dtype, tolerance, ("decode, whole buffer", rows, heads, kv_heads, dim, capacity, splits))
        # ... or walk each row from its first open column to the last written one, bounds read on the device
        # (the columns outside them are never read, whatever the bias says there)
        first = (bias[:, :columns] > torch.finfo(dtype).min / 2).to(torch.int8).argmax(dim=1)
        last = torch.tensor([columns - 1], device=device)
        keys[torch.arange(rows), :, first - 1] = float("nan")  # left of each row's first column, opened
        bias[torch.arange(rows), first - 1] = 0
        bias[:, columns:] = 0  # beyond `last` (NaN keys), opened too
        bounded = decode_attention(query, keys, values, bias, 0.125, capacity, splits, bounds=(first, last))
        _close(bounded, reference, dtype, tolerance, ("decode, bounded", rows, heads, kv_heads, dim, capacity, splits))
    for rows, heads, kv_heads, dim, capacity, start, tokens in turn_cases:
        query, keys, values = _inputs(generator, device, dtype, rows, heads, kv_heads, dim, capacity, tokens)
        bias = _bias(rows, capacity, start + tokens, device, dtype)
        bias[0, start + tokens // 2] = torch.finfo(dtype).min  # a padded token inside the turn
        out = turn_attention(query, keys, values, bias, start, 0.125)
        end = start + tokens
        reference = grouped_attention(query, keys[:, :, :end], values[:, :, :end], turn_bias(bias, start, tokens), 0.125)
        _close(out, reference, dtype, tolerance, ("turn", rows, heads, kv_heads, dim, start, tokens))
        # every way the GPU chooses among (under the interpreter one other launch: each costs a compile)
        ways = turn_ways(query, keys, values, bias, start, 0.125, causal=True)
        if str(device) != "cuda":
            ways = {name: way for name, way in ways.items() if name in (SDPA_WAY, str(TurnLaunch(32, 32, 4, 3)))}
        for name, way in ways.items():
            _close(way(), reference, dtype, tolerance, ("turn", name, rows, heads, kv_heads, dim, start, tokens))
        clean = turn_attention(query, keys, values, bias, start, 0.125, TURN_LAUNCH)  # the kernel: never reads
        keys[:, :, 40:47], values[:, :, 40:47] = float("nan"), float("nan")   # masked columns (SDPA does)
        assert torch.equal(turn_attention(query, keys, values, bias, start, 0.125, TURN_LAUNCH), clean)
    print("ok")


def _close(out: torch.Tensor, reference: torch.Tensor, dtype: torch.dtype, tolerance: float, case: tuple) -> None:
    assert out.shape == reference.shape and out.dtype == dtype, (case, out.shape, reference.shape)
    error = (out.float() - reference.float()).abs().max().item()
    assert error < tolerance, (case, error)


if __name__ == "__main__":
    check(sys.argv[1], getattr(torch, sys.argv[2]))
