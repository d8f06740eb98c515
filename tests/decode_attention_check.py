"""Compare the Triton decode-attention kernel with the matmul reference; run by the tests in a process
of its own (TRITON_INTERPRET=1 must be set before triton compiles, i.e. before docvlm imports it)."""

import sys

import torch

from docvlm.models.decode_attention import available, decode_attention
from docvlm.models.static_engine import _grouped_attention

CASES = [  # rows, heads, kv heads, head dim, buffer columns, attended columns, splits (None: automatic)
    (3, 8, 2, 32, 300, 200, None),
    (2, 4, 4, 16, 130, 130, 3),
    (5, 16, 2, 64, 256, 256, 1),
    (4, 12, 4, 16, 512, 449, 5),
]


def check(device: str, dtype: torch.dtype, cases=CASES, tolerance: float = 2e-3) -> None:
    generator = torch.Generator().manual_seed(0)
    masked = torch.finfo(dtype).min
    for rows, heads, kv_heads, dim, capacity, columns, splits in cases:
        def rand(*shape):
            return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

        query = rand(rows, heads, 1, dim)
        keys, values = rand(rows + 2, kv_heads, capacity, dim)[:rows], rand(rows + 2, kv_heads, capacity, dim)[:rows]
        bias = torch.full((rows, capacity), masked, dtype=dtype, device=device)
        for row in range(rows):
            bias[row, 70 * row + 5 : columns - 3] = 0  # left padding grows per row: whole blocks are skipped
            bias[row, 40:47] = masked  # pads between turns
            bias[row, columns - 1] = 0  # the token being decoded
        assert available(query)
        out = decode_attention(query, keys, values, bias, 0.125, columns, splits)
        reference = _grouped_attention(query, keys[:, :, :columns], values[:, :, :columns],
                                       bias[:, None, None, :columns], 0.125)
        error = (out.float() - reference.float()).abs().max().item()
        assert out.shape == reference.shape and out.dtype == dtype
        assert error < tolerance, (rows, heads, kv_heads, dim, columns, splits, error)
        # Masked columns are never read: garbage there changes nothing.
        keys[:, :, columns - 2] = float("nan")
        assert torch.equal(decode_attention(query, keys, values, bias, 0.125, columns, splits), out)
    print("ok")


if __name__ == "__main__":
    check(sys.argv[1], getattr(torch, sys.argv[2]))
