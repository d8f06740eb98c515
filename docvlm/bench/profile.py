"""`--profile-docs N`: where the time of one pass goes, by kind of kernel (GPU) or op (CPU), then kernel by kernel.

The kinds answer the first question a profile is read for: how much is the matrix products (the part
the roofline counts) and how much is everything else (attention, elementwise, copies, launches' gaps).
"""

from __future__ import annotations

import collections
from typing import Any

KINDS = (  # first match wins: (kind, any of these in the lowercased kernel or op name)
    ("attention", ("flash", "fmha", "sdpa", "attention", "_split_kernel", "_merge_kernel", "_turn_kernel")),
    ("fused elementwise (Triton)", ("_rms_norm", "_add_rms_norm", "_gated", "_silu_mul", "_rotary", "_scale_add")),
    ("GEMM", ("gemm", "nvjet", "cutlass", "xmma", "cublas", "matmul", "aten::mm", "aten::addmm", "aten::bmm",
              "aten::linear", "conv")),
    ("softmax", ("softmax",)),
    ("norm", ("layer_norm", "rms_norm", "aten::pow", "aten::rsqrt", "aten::mean")),
    ("activation", ("gelu", "silu")),
    ("index / scatter / gather", ("index", "scatter", "gather", "masked")),
    ("copy / cat / cast", ("copy", "cat", "_to_copy", "aten::to", "contiguous", "memcpy", "memset")),
    ("elementwise", ("add", "mul", "sub", "div", "elementwise")),
)


def kind(name: str) -> str:
    lowered = name.lower()
    return next((label for label, keys in KINDS if any(key in lowered for key in keys)), "other")


def time_by_kind(events: Any, on_gpu: bool) -> dict[str, float]:
    """Milliseconds by kind, largest first, from `prof.key_averages()`: on GPU the kernels' own time (their
    CPU-side ops would count twice), on CPU each op's self time."""
    import torch

    spent: collections.Counter = collections.Counter()
    for event in events:
        if on_gpu and event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        spent[kind(event.key)] += (event.self_device_time_total if on_gpu else event.self_cpu_time_total) / 1e3
    return {label: round(ms, 3) for label, ms in spent.most_common() if ms > 0}


def kind_table(kinds: dict[str, float]) -> str:
    total = sum(kinds.values()) or 1.0
    rows = [f"{ms:10.1f} ms  {100 * ms / total:5.1f}%  {label}" for label, ms in kinds.items()]
    return "\n".join([f"{total:10.1f} ms  100.0%  total", *rows])
