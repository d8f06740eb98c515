"""`--profile-docs N`: where the time of one pass goes, by kind of kernel (GPU) or op (CPU), then kernel by kernel.

The kinds answer the first question a profile is read for: how much is the matrix products (the part
the roofline counts) and how much is everything else (attention, elementwise, copies, launches' gaps).
The phases answer the second: which step of the engine (first-turn prefill, follow-up prefill, decode:
the static engine's `docvlm::` ranges) and which part of the model (vision tower, projector, language
model: `part::` ranges this module puts around their forwards) the time is spent in; the top kernels
of the largest of those places, the third: what that part's time is made of; the host waits, the
fourth: where the GPU sat idle waiting for the host (syncs, Python between launches), by the ops around.
"""

from __future__ import annotations

import collections
from contextlib import contextmanager
from typing import Any, Iterator

import torch

PARTS = (  # part name, attribute names on the model's inner `model` (the first one present is taken)
    ("vision tower", ("vision_model", "visual", "vision_tower")),
    ("projector", ("multi_modal_projector", "mlp1")),
    ("language model", ("language_model",)),
)
PHASE, PART = "docvlm::", "part::"
UNPLACED = "gaps"  # a phase's GPU span not covered by its kernels: the GPU idle, waiting for the host
REPLAYED = "CUDA graph replays"  # the part of kernels a replayed graph ran (decode steps): no op launched them
GRAPH_LAUNCHES = ("cudaGraphLaunch", "cuGraphLaunch")

KINDS = (  # first match wins: (kind, any of these in the lowercased kernel or op name)
    ("attention", ("flash", "fmha", "sdpa", "attention", "_split_kernel", "_merge_kernel", "_turn_kernel")),
    ("fused elementwise (Triton)", ("_rms_norm", "_gated", "_silu_mul", "_rotary", "_norm_rotate", "_scale_add")),
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
    spent: collections.Counter = collections.Counter()
    for event in events:
        if on_gpu and (event.device_type != torch.autograd.DeviceType.CUDA or _is_range(event.key)):
            continue  # a range's GPU span (its kernels count already) is not a kernel
        spent[kind(event.key)] += (event.self_device_time_total if on_gpu else event.self_cpu_time_total) / 1e3
    return {label: round(ms, 3) for label, ms in spent.most_common() if ms > 0}


def kind_table(kinds: dict[str, float], total_label: str = "total") -> str:
    total = sum(kinds.values()) or 1.0
    rows = [f"{ms:10.1f} ms  {100 * ms / total:5.1f}%  {label}" for label, ms in kinds.items()]
    return "\n".join([f"{total:10.1f} ms  100.0%  {total_label}", *rows])


@contextmanager
def part_ranges(model: torch.nn.Module) -> Iterator[None]:
    """A profiler range around each forward of the model's parts (`PARTS`), named `part::<part>`."""
    from torch.profiler import record_function

    inner = getattr(model, "model", model)
    hooks = []
    for name, attributes in PARTS:
        module = next((getattr(inner, a) for a in attributes if isinstance(getattr(inner, a, None), torch.nn.Module)), None)
        if module is None:
            continue
        ranges: list[Any] = []

        def enter(*args: Any, name: str = name, ranges: list = ranges) -> None:
            ranges.append(record_function(PART + name).__enter__())

        def leave(*args: Any, ranges: list = ranges) -> None:
            ranges.pop().__exit__(None, None, None)

        hooks += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave, always_call=True)]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def place_kernels(events: Any, on_gpu: bool) -> collections.Counter:
    """Milliseconds by (phase, part, kernel or op name) from `prof.events()`: each GPU kernel tied to the
    op that launched it, or (CPU) each op's self time, goes to the innermost `docvlm::` and `part::`
    ranges around (or of) that op; "-" where there is none. What `time_by_phase` and `top_kernels` read."""
    spent: collections.Counter = collections.Counter()
    for event in events:
        if event.device_type != torch.autograd.DeviceType.CPU:
            continue
        if on_gpu:
            for kernel in event.kernels:
                spent[(*_ranges(event), kernel.name)] += kernel.duration / 1e3
        elif event.self_cpu_time_total:
            spent[(*_ranges(event), event.name)] += event.self_cpu_time_total / 1e3
    if on_gpu:
        spent.update(replayed_kernels(events))
    return spent


def replayed_kernels(events: Any) -> collections.Counter:
    """Milliseconds by (phase, REPLAYED, kernel name) of the kernels replayed CUDA graphs ran: the profiler
    ties them to no op, only (by correlation id) to the `cudaGraphLaunch` call, placed by its ranges."""
    spent: collections.Counter = collections.Counter()
    for kernel, launch in _launched_kernels(events, lambda name: name in GRAPH_LAUNCHES):
        phase, _ = _ranges(launch)
        spent[(phase, REPLAYED, kernel.name)] += (kernel.time_range.end - kernel.time_range.start) / 1e3
    return spent


def _launched_kernels(events: Any, launcher: Any) -> list[tuple[Any, Any]]:
    """(kernel, the CPU call that launched it) for each device event whose correlation id a CPU call named
    as `launcher` (name -> bool) accepts shares, by start time. (torch 2.11's events carry no link from a
    kernel to its op; the profiler's own device events, buffer requests spanning the run, have no such call.)"""
    launches = {event.id: event for event in events
                if event.device_type == torch.autograd.DeviceType.CPU and launcher(event.name)}
    kernels = [event for event in events if event.device_type != torch.autograd.DeviceType.CPU
               and event.id in launches and not _is_range(event.name)]
    return [(kernel, launches[kernel.id]) for kernel in sorted(kernels, key=lambda event: event.time_range.start)]


def time_by_phase(events: Any, placed: collections.Counter, on_gpu: bool) -> dict[str, dict[str, float]]:
    """Milliseconds by (engine phase, model part) of the `placed` kernels. On GPU, what a phase's span
    (its range's GPU event) holds beyond its placed kernels goes to `UNPLACED`: the GPU's idle gaps."""
    spent = _by_place(placed)
    spans: collections.Counter = collections.Counter()
    for event in events:
        if on_gpu and event.device_type != torch.autograd.DeviceType.CPU and event.name.startswith(PHASE):
            spans[event.name[len(PHASE):]] += event.device_time_total / 1e3
    for phase, span in spans.items():
        placed_ms = sum(ms for (where, _), ms in spent.items() if where == phase)
        if span > placed_ms:
            spent[(phase, UNPLACED)] += span - placed_ms
    phases: dict[str, dict[str, float]] = {}
    for (phase, part), ms in spent.most_common():
        phases.setdefault(phase, {})[part] = round(ms, 3)
    return phases


def top_kernels(placed: collections.Counter, parts: int = 4, kernels: int = 8) -> dict[str, list[tuple[str, float]]]:
    """The largest `parts` (phase / part) places of the `placed` kernels and, in each, its `kernels`
    largest kernels (GPU) or ops (CPU) with their milliseconds: what a part's time is made of, e.g. the
    vision tower's non-GEMM work."""
    out = {}
    for phase, part in [where for where, _ in _by_place(placed).most_common(parts)]:
        mine = collections.Counter({name: ms for (p, q, name), ms in placed.items() if (p, q) == (phase, part)})
        out[f"{phase} / {part}"] = [(name, round(ms, 3)) for name, ms in mine.most_common(kernels)]
    return out


def host_waits(events: Any, min_us: float = 20.0, rows: int = 12) -> list[tuple[str, str, float, int]]:
    """Where the GPU waited for the host: each idle gap of at least `min_us` between one kernel's end and
    the next kernel's start, summed by the phase / part of the op that launched the kernel after it and
    by "op before -> op after" (a sync in the first and the Python up to the second, typically). Returns
    the `rows` largest as (place, ops, milliseconds, gaps). GPU only (device events carry times).

    A kernel is a device event whose correlation id a CPU driver/runtime call (`cudaLaunchKernel`,
    `cuLaunchKernel`, `cudaMemcpyAsync`, `cudaGraphLaunch`, ...) shares; the op is that call's parent."""
    waits: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    busy_until, before = None, "-"
    for kernel, launch in _launched_kernels(events, lambda name: name.startswith("cu")):
        after = (launch.cpu_parent or launch).name
        if busy_until is not None and kernel.time_range.start - busy_until >= min_us:
            key = (" / ".join(_ranges(launch)), f"{before} -> {after}")
            waits[key] += (kernel.time_range.start - busy_until) / 1e3
            counts[key] += 1
        if busy_until is None or kernel.time_range.end > busy_until:
            busy_until = kernel.time_range.end
        before = after
    return [(place, ops, round(ms, 3), counts[(place, ops)]) for (place, ops), ms in waits.most_common(rows)]


def host_waits_table(waits: list[tuple[str, str, float, int]]) -> str:
    return "\n".join(f"{ms:10.1f} ms  {gaps:6d} gaps  {place:36}  {ops[:110]}" for place, ops, ms, gaps in waits)


def _by_place(placed: collections.Counter) -> collections.Counter:
    totals: collections.Counter = collections.Counter()
    for (phase, part, _), ms in placed.items():
        totals[(phase, part)] += ms
    return totals


def top_kernels_table(places: dict[str, list[tuple[str, float]]]) -> str:
    lines = []
    for place, rows in places.items():
        lines.append(f"{place}:")
        lines += [f"{ms:10.1f} ms  {kind(name):26}  {name[:100]}" for name, ms in rows]
    return "\n".join(lines)


def _is_range(name: str) -> bool:
    return name.startswith(PHASE) or name.startswith(PART)


def _ranges(event: Any) -> tuple[str, str]:
    phase = part = "-"
    parent = event  # a range's own self time (CPU: the Python between its ops) is its own
    while parent is not None:
        if phase == "-" and parent.name.startswith(PHASE):
            phase = parent.name[len(PHASE):]
        if part == "-" and parent.name.startswith(PART):
            part = parent.name[len(PART):]
        parent = parent.cpu_parent
    return phase, part


def phase_table(phases: dict[str, dict[str, float]]) -> str:
    flat = {f"{phase} / {part}": ms for phase, parts in phases.items() for part, ms in parts.items()}
    return kind_table(flat, "total (engine phase / model part)")
