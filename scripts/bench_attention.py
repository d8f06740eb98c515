"""Decode attention on this GPU: the Triton kernel against the two-matmul path, same inputs, same process.

    python scripts/bench_attention.py [--rows 16 48 64 96] [--columns 2700] [--vision-tiles 25]
    python scripts/bench_attention.py --turn-sweep [--rows 64]

InternVL3.5-8B's language model shapes (32 query heads, 8 KV heads, head dim 128), bf16, buffers
sized as the static engine sizes them; rows' prompts differ by up to 15% (left padding), and the
columns bucket rounds up to 256 as the engine's graphs do. Prints ms per call for one layer: the
matmuls, the kernel over the whole buffer (its graphs' way before 2026-12-05: masked blocks passed over
by a branch) and the kernel bounded per row (first attended column .. last written one: the engine's
way now), and the bandwidth each reaches on the K/V bytes that matter. Then a follow-up turn's
self-attention (the Triton turn kernel against the matmuls), the vision towers'
attention as TFLOP/s: InternViT-300M (16 heads of 64, 1025 tokens a tile) through each SDPA backend,
and Llama-3.2-Vision's (16 heads of 80, 4 tiles of 1,608 tokens an image) with transformers' tile mask
through each backend against the two unmasked parts both ways the engine chooses between (tile_attention.py:
two varlen flash calls, or two SDPA calls an image, per backend); then Qwen3-VL's
(16 heads of 72, ~7,000 patches an image) per image per backend (as transformers' views, contiguous, and
with the head dim zero-padded to 80/96/128, pad included) against one varlen flash call.
`--turn-sweep`: only the follow-up turn's self-attention, at each `--rows`: the turn kernel under each
launch (`attention.TurnLaunch`: query tokens a program, columns a step, warps, stages) against torch's
SDPA backends running the engine's SDPA way (`attention.turn_ways`: the causal, left-padded bias made into a
mask each call, grouped-query heads).
"""

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from docvlm.models.attention import (SDPA_WAY, TURN_LAUNCH, TurnLaunch, decode_attention, grouped_attention,  # noqa: E402
                                     turn_attention, turn_bias, turn_ways)
from docvlm.models.kv_buffers import COLUMN_STEP, round_up  # noqa: E402
from docvlm.models import tile_attention  # noqa: E402
from docvlm.models.tile_attention import tile_split  # noqa: E402


def timed(fn, repeats: int = 50) -> float:
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[16, 48, 64, 96])
    parser.add_argument("--columns", type=int, default=2700)
    parser.add_argument("--vision-tiles", type=int, default=25)
    parser.add_argument("--turn-sweep", action="store_true", help="only the turn kernel's launches, per --rows")
    args = parser.parse_args()
    if args.turn_sweep:
        for rows in args.rows:
            turn_sweep(rows)
        return
    heads, kv_heads, dim, dtype = 32, 8, 128, torch.bfloat16
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("rows | columns | matmuls ms | whole buffer ms | bounded ms | speed-up | matmul GB/s | bounded GB/s")
    for rows in args.rows:
        capacity = round_up(args.columns + 2048, COLUMN_STEP)
        columns = round_up(args.columns, COLUMN_STEP)
        query = torch.randn(rows, heads, 1, dim, dtype=dtype, device="cuda")
        keys = torch.randn(rows, kv_heads, capacity, dim, dtype=dtype, device="cuda")
        values = torch.randn_like(keys)
        bias = torch.full((rows, capacity), torch.finfo(dtype).min, dtype=dtype, device="cuda")
        lengths = [int(args.columns * (0.85 + 0.15 * row / max(rows - 1, 1))) for row in range(rows)]
        for row, length in enumerate(lengths):
            bias[row, args.columns - length : args.columns] = 0
        attended = sum(lengths) * kv_heads * dim * 2 * dtype.itemsize  # K and V bytes that matter
        matmuls = timed(lambda: grouped_attention(query, keys[:, :, :columns], values[:, :, :columns],
                                                   bias[:, None, None, :columns], 0.088))
        whole = timed(lambda: decode_attention(query, keys, values, bias, 0.088, capacity))
        first = torch.tensor([args.columns - length for length in lengths], device="cuda")
        last = torch.tensor([args.columns - 1], device="cuda")
        kernel = timed(lambda: decode_attention(query, keys, values, bias, 0.088, capacity, bounds=(first, last)))
        print(f"{rows} | {columns} | {matmuls:.3f} | {whole:.3f} | {kernel:.3f} | {matmuls / kernel:.2f}x | "
              f"{attended / matmuls / 1e6:.0f} | {attended / kernel / 1e6:.0f}")
    turn_kernel()
    vision_backends(args.vision_tiles)
    tile_mask_attention()
    qwen_vision_attention()


def turn_kernel(rows: int = 16, start: int = 2300, tokens: int = 630) -> None:
    """A follow-up turn's self-attention (the extraction prompt after a first turn, Qwen3-VL / InternVL
    shapes): the Triton turn kernel against the matmuls, as TFLOP/s of the causal products."""
    query, keys, values, bias, flops = turn_inputs(rows, start, tokens)
    heads, kv_heads, dim = query.shape[1], keys.shape[1], query.shape[-1]
    print(f"turn attention, {rows} rows x {tokens} tokens after {start} columns, {heads} heads "
          f"({kv_heads} KV) of {dim}: way | ms | TFLOP/s")
    end = start + tokens
    ways = {"Triton turn kernel": lambda: turn_attention(query, keys, values, bias, start, 0.088),
            "matmuls": lambda: grouped_attention(query, keys[:, :, :end], values[:, :, :end],
                                                 turn_bias(bias, start, tokens), 0.088)}
    for name, way in ways.items():
        ms = timed(way, repeats=10)
        print(f"{name} | {ms:.3f} | {flops / ms / 1e9:.0f}")


def turn_inputs(rows: int, start: int, tokens: int) -> tuple[torch.Tensor, ...]:
    """Query, KV buffers and key bias of a follow-up turn (Qwen3-VL / InternVL shapes; half the rows
    left-padded by 10%), and the causal products' FLOPs."""
    heads, kv_heads, dim, dtype = 32, 8, 128, torch.bfloat16
    capacity = round_up(start + tokens + 256, COLUMN_STEP)
    query = torch.randn(rows, heads, tokens, dim, dtype=dtype, device="cuda")
    keys = torch.randn(rows, kv_heads, capacity, dim, dtype=dtype, device="cuda")
    values = torch.randn_like(keys)
    bias = torch.zeros(rows, capacity, dtype=dtype, device="cuda")
    bias[: rows // 2, : start // 10] = torch.finfo(dtype).min
    flops = 4 * rows * heads * tokens * (start + tokens / 2) * dim
    return query, keys, values, bias, flops


def turn_sweep(rows: int, start: int = 2300, tokens: int = 630) -> None:
    """The turn kernel under each launch against SDPA's backends, on the same inputs (outputs checked
    against the default launch)."""
    from torch.nn.attention import SDPBackend

    query, keys, values, bias, flops = turn_inputs(rows, start, tokens)
    print(f"turn sweep, {rows} rows x {tokens} tokens after {start} columns: way | ms | TFLOP/s | max diff")
    reference = turn_attention(query, keys, values, bias, start, 0.088)
    launches = [TURN_LAUNCH] + [TurnLaunch(t, c, w, s) for t in (16, 32) for c in (32, 64, 128)
                                for w in (4, 8) for s in (2, 3, 4)]
    for launch in dict.fromkeys(launches):
        try:
            out = turn_attention(query, keys, values, bias, start, 0.088, launch)
            ms = timed(lambda: turn_attention(query, keys, values, bias, start, 0.088, launch), repeats=10)
        except Exception as err:  # a launch this GPU cannot take (shared memory, registers)
            print(f"{launch} | failed: {str(err).splitlines()[0][:80]}")
            continue
        diff = (out.float() - reference.float()).abs().max().item()
        print(f"{launch} | {ms:.3f} | {flops / ms / 1e9:.0f} | {diff:.3g}")
    sdpa = turn_ways(query, keys, values, bias, start, 0.088, causal=True).get(SDPA_WAY)  # the engine's, mask made too
    if sdpa is None:
        print("SDPA | not offered: its mask would exceed attention.SDPA_MASK_BYTES")
        return
    per_backend("SDPA, ", [SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.FLASH_ATTENTION],
                sdpa, flops, repeats=10)


def per_backend(label: str, backends: list, run: Callable[[], object], flops: float, repeats: int = 50) -> None:
    """One row a SDPA backend: `run` with only that backend allowed."""
    from torch.nn.attention import sdpa_kernel

    for backend in backends:
        try:
            with sdpa_kernel([backend]):
                ms = timed(run, repeats=repeats)
            print(f"{label}{backend.name} | {ms:.3f} | {flops / ms / 1e9:.0f}")
        except RuntimeError as err:
            print(f"{label}{backend.name} | unavailable: {str(err).splitlines()[0]}")


def vision_backends(tiles: int) -> None:
    from torch.nn.attention import SDPBackend

    query, key, value = (torch.randn(tiles, 16, 1025, 64, dtype=torch.bfloat16, device="cuda") for _ in range(3))
    flops = 4 * tiles * 16 * 1025 * 1025 * 64
    print(f"vision attention, {tiles} tiles x 1025 tokens, 16 heads of 64: backend | ms | TFLOP/s")
    per_backend("", [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION],
                lambda: torch.nn.functional.scaled_dot_product_attention(query, key, value), flops)


def tile_mask_attention(images: int = 5) -> None:
    from torch.nn.attention import SDPBackend
    from transformers.models.mllama.modeling_mllama import _prepare_aspect_ratio_attention_mask

    tiles_real = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])[:images]
    length, dim = 4 * 1608, 80
    query, key, value = (torch.randn(images, 16, length, dim, dtype=torch.bfloat16, device="cuda") for _ in range(3))
    mask = _prepare_aspect_ratio_attention_mask(tiles_real.cuda(), 1601, 1608, torch.bfloat16)
    flops = 4 * images * 16 * length * length * dim
    print(f"Llama vision attention, {images} images x 4 tiles x 1608 tokens, 16 heads of 80: way | ms | TFLOP/s")
    per_backend("masked, ", [SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH],
                lambda: torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask), flops,
                repeats=5)
    # the two unmasked parts both ways the engine chooses between (tile_attention.py, fastest.py)
    split = tile_split(tiles_real, 1608, 1601, torch.device("cuda"))
    flat = [t.transpose(1, 2).reshape(images * length, 16, dim) for t in (query, key, value)]
    ms = timed(lambda: tile_attention._varlen_parts(*flat, split, dim**-0.5), repeats=5)
    print(f"two unmasked parts, varlen flash | {ms:.3f} | {flops / ms / 1e9:.0f}")
    per_backend("two unmasked parts, SDPA an image, ", [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION],
                lambda: tile_attention._parts_an_image(*flat, split, dim**-0.5), flops, repeats=5)


def qwen_vision_attention(images: int = 8, patches: int = 6988) -> None:
    """Qwen3-VL's vision attention (16 heads of 72, ~7,000 patches a document in the benchmark): transformers'
    SDPA way (one call an image over (1, heads, patches, 72) views) per backend against one varlen flash call."""
    from torch.nn.attention import SDPBackend

    from docvlm.models.packing import flash_varlen

    heads, dim = 16, 72
    qkv = torch.randn(images * patches, 3, heads, dim, dtype=torch.bfloat16, device="cuda")
    query, key, value = qkv.unbind(1)
    flops = 4 * images * heads * patches * patches * dim
    print(f"Qwen3-VL vision attention, {images} images x {patches} patches, {heads} heads of {dim}: way | ms | TFLOP/s")
    views = [tensor.transpose(0, 1)[None] for tensor in (query, key, value)]

    def per_image() -> None:
        for part in zip(*(torch.split(view, patches, dim=2) for view in views)):
            torch.nn.functional.scaled_dot_product_attention(*part)

    per_backend("per image, ", [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION],
                per_image, flops, repeats=5)
    contiguous = [view.contiguous() for view in views]
    per_backend("per image, contiguous (1, heads, patches, 72), ", [SDPBackend.CUDNN_ATTENTION],
                lambda: [torch.nn.functional.scaled_dot_product_attention(*part) for part in
                         zip(*(torch.split(view, patches, dim=2) for view in contiguous))], flops, repeats=5)
    for padded in (80, 96, 128):  # zero columns leave q.k and the kept output columns exact; the pad is timed
        def padded_per_image(padded: int = padded) -> None:
            wide = [torch.nn.functional.pad(view, (0, padded - dim)) for view in views]
            for part in zip(*(torch.split(view, patches, dim=2) for view in wide)):
                torch.nn.functional.scaled_dot_product_attention(*part, scale=dim**-0.5)[..., :dim]

        per_backend(f"per image, head dim padded to {padded}, ", [SDPBackend.CUDNN_ATTENTION], padded_per_image,
                    flops, repeats=5)
    starts = torch.arange(0, (images + 1) * patches, patches, dtype=torch.int32, device="cuda")
    ms = timed(lambda: flash_varlen(query, key, value, starts, starts, patches, patches, causal=False,
                                    scale=dim**-0.5), repeats=5)
    print(f"one varlen flash call | {ms:.3f} | {flops / ms / 1e9:.0f}")


if __name__ == "__main__":
    main()
