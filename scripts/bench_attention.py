"""Decode attention on this GPU: the Triton kernel against the two-matmul path, same inputs, same process.

    python scripts/bench_attention.py [--rows 16 48 64 96] [--columns 2700] [--vision-tiles 25]

InternVL3.5-8B's language model shapes (32 query heads, 8 KV heads, head dim 128), bf16, buffers
sized as the static engine sizes them; rows' prompts differ by up to 15% (left padding), and the
columns bucket rounds up to 256 as the engine's graphs do. Prints ms per call for one layer: the
matmuls, the kernel over the whole buffer (its graphs' way before 2026-12-05: masked blocks passed over
by a branch) and the kernel bounded per row (first attended column .. last written one: the engine's
way now), and the bandwidth each reaches on the K/V bytes that matter. Then the vision towers'
attention as TFLOP/s: InternViT-300M (16 heads of 64, 1025 tokens a tile) through each SDPA backend,
and Llama-3.2-Vision's (16 heads of 80, 4 tiles of 1,608 tokens an image) with transformers' tile mask
through each backend against the two unmasked parts the engine runs (tile_attention.py: varlen flash; also
as SDPA calls an image per backend); then Qwen3-VL's
(16 heads of 72, ~7,000 patches an image) per image per backend against one varlen flash call.
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from docvlm.models.attention import decode_attention, grouped_attention  # noqa: E402
from docvlm.models.kv_buffers import COLUMN_STEP, round_up  # noqa: E402
from docvlm.models.tile_attention import split_attention, tile_split, tile_split_attention  # noqa: E402


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
    args = parser.parse_args()
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
    vision_backends(args.vision_tiles)
    tile_mask_attention()
    qwen_vision_attention()


def vision_backends(tiles: int) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    query, key, value = (torch.randn(tiles, 16, 1025, 64, dtype=torch.bfloat16, device="cuda") for _ in range(3))
    flops = 4 * tiles * 16 * 1025 * 1025 * 64
    print(f"vision attention, {tiles} tiles x 1025 tokens, 16 heads of 64: backend | ms | TFLOP/s")
    for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        try:
            with sdpa_kernel([backend]):
                ms = timed(lambda: torch.nn.functional.scaled_dot_product_attention(query, key, value))
            print(f"{backend.name} | {ms:.3f} | {flops / ms / 1e9:.0f}")
        except RuntimeError as err:
            print(f"{backend.name} | unavailable: {str(err).splitlines()[0]}")


def tile_mask_attention(images: int = 5) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from transformers.models.mllama.modeling_mllama import _prepare_aspect_ratio_attention_mask

    tiles_real = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])[:images]
    length, dim = 4 * 1608, 80
    query, key, value = (torch.randn(images, 16, length, dim, dtype=torch.bfloat16, device="cuda") for _ in range(3))
    mask = _prepare_aspect_ratio_attention_mask(tiles_real.cuda(), 1601, 1608, torch.bfloat16)
    flops = 4 * images * 16 * length * length * dim
    print(f"Llama vision attention, {images} images x 4 tiles x 1608 tokens, 16 heads of 80: way | ms | TFLOP/s")
    for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH):
        try:
            with sdpa_kernel([backend]):
                ms = timed(lambda: torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask),
                           repeats=5)
            print(f"masked, {backend.name} | {ms:.3f} | {flops / ms / 1e9:.0f}")
        except RuntimeError as err:
            print(f"masked, {backend.name} | unavailable: {str(err).splitlines()[0]}")
    split = tile_split(tiles_real, 1608, 1601, torch.device("cuda"))
    config = type("Config", (), {"_attn_implementation": "sdpa"})()
    with tile_split_attention(config, split):
        ms = timed(lambda: split_attention(None, query, key, value, mask, scaling=dim**-0.5), repeats=5)
    print(f"two unmasked parts (varlen flash) | {ms:.3f} | {flops / ms / 1e9:.0f}")
    # the same two parts as dense SDPA calls an image (cuDNN beat flash at Qwen3-VL's head dim 72)
    flat = [t.transpose(1, 2).reshape(images * length, 16, dim) for t in (query, key, value)]

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.scaled_dot_product_attention(*(t.transpose(0, 1)[None] for t in (q, k, v)))

    def per_image() -> None:
        q, k, v = flat
        for image in range(images):
            real = split.real[split.real_bounds[image] : split.real_bounds[image + 1]]
            pad = split.pad[split.pad_bounds[image] : split.pad_bounds[image + 1]]
            whole = slice(image * length, (image + 1) * length)
            attend(q[real], k[whole], v[whole])
            attend(q[pad], k[real], v[real])

    for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION):
        try:
            with sdpa_kernel([backend]):
                ms = timed(per_image, repeats=5)
            print(f"two unmasked parts an image, {backend.name} | {ms:.3f} | {flops / ms / 1e9:.0f}")
        except RuntimeError as err:
            print(f"two unmasked parts an image, {backend.name} | unavailable: {str(err).splitlines()[0]}")


def qwen_vision_attention(images: int = 8, patches: int = 6988) -> None:
    """Qwen3-VL's vision attention (16 heads of 72, ~7,000 patches a document in the benchmark): transformers'
    SDPA way (one call an image over (1, heads, patches, 72) views) per backend against one varlen flash call."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from docvlm.models.packing import flash_varlen

    heads, dim = 16, 72
    qkv = torch.randn(images * patches, 3, heads, dim, dtype=torch.bfloat16, device="cuda")
    query, key, value = qkv.unbind(1)
    flops = 4 * images * heads * patches * patches * dim
    print(f"Qwen3-VL vision attention, {images} images x {patches} patches, {heads} heads of {dim}: way | ms | TFLOP/s")
    views = [tensor.transpose(0, 1)[None] for tensor in (query, key, value)]
    for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
        def per_image() -> None:
            for part in zip(*(torch.split(view, patches, dim=2) for view in views)):
                torch.nn.functional.scaled_dot_product_attention(*part)
        try:
            with sdpa_kernel([backend]):
                ms = timed(per_image, repeats=5)
            print(f"per image, {backend.name} | {ms:.3f} | {flops / ms / 1e9:.0f}")
        except RuntimeError as err:
            print(f"per image, {backend.name} | unavailable: {str(err).splitlines()[0]}")
    starts = torch.arange(0, (images + 1) * patches, patches, dtype=torch.int32, device="cuda")
    ms = timed(lambda: flash_varlen(query, key, value, starts, starts, patches, patches, causal=False,
                                    scale=dim**-0.5), repeats=5)
    print(f"one varlen flash call | {ms:.3f} | {flops / ms / 1e9:.0f}")


if __name__ == "__main__":
    main()
