"""The hardware floor of a benchmark run: what the GPU could do at best for the work that was asked.

Model (BENCHMARKS.md explains it):
  prefill of a call >= max(2 * LM matmul params * prompt tokens + 2 * vision params * vision tokens) / peak FLOP/s,
                           all weights read once / bandwidth)
  one decode step  >= (LM weights read, embedding table excluded, + KV cache of every active row) / bandwidth
A call's floor is its prefill plus its decode steps; the run's floor is the sum over its calls. Only real
tokens count (no padding, no repeated work): the floor is what a perfect engine would need.
Approximations, all of which make the floor lower (optimistic): attention FLOPs in prefill are
left out; decode reads nothing but weights and KV (activations, logits and sampling are free).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch

# Vendor datasheets: HBM bandwidth, bf16 dense tensor-core rate (no sparsity). Matched in this order.
DATASHEETS: tuple[tuple[str, float, float], ...] = (
    ("H200", 4.8e12, 989e12),
    ("H100 NVL", 3.9e12, 835e12),
    ("H100 PCIe", 2.0e12, 756e12),
    ("H100", 3.35e12, 989e12),  # SXM: "NVIDIA H100 80GB HBM3"
)


@dataclass(frozen=True)
class Hardware:
    name: str
    bandwidth: float  # bytes/s
    flops: float  # FLOP/s in the model's dtype
    source: str  # "datasheet" or "measured"


@dataclass(frozen=True)
class ModelCost:
    """What one token costs the hardware, from the model's own shapes."""

    decode_weight_bytes: float  # read once per decode step: LM + lm_head, input embedding table excluded
    all_weight_bytes: float  # read at least once per prefill
    prefill_params: float  # LM matmul params applied to each prompt token (no embedding table, no lm_head)
    head_params: float  # lm_head: applied once per row to produce the first token
    vision_params: float  # vision tower + projector, applied to each vision token
    kv_bytes_per_token: float  # self-attention KV cache, all layers
    cross_kv_bytes_per_row: float  # Mllama: cached cross-attention KV of the image, read every step


@dataclass(frozen=True)
class CallShape:
    """One generate / continue_ call as the hardware saw it (real tokens per row)."""

    stage: str
    context: list[int]  # tokens already in the cache per row before this call (0 for a first turn)
    prompt: list[int]  # new prompt tokens per row
    generated: list[int]  # tokens generated per row (the first comes out of prefill)
    vision_tokens: int  # tokens the vision tower processed over the batch


@dataclass(frozen=True)
class Floor:
    prefill_s: float
    decode_s: float

    @property
    def total_s(self) -> float:
        return self.prefill_s + self.decode_s


def datasheet(device_name: str) -> Hardware | None:
    for key, bandwidth, flops in DATASHEETS:
        if key in device_name:
            return Hardware(device_name, bandwidth, flops, "datasheet")
    return None


def model_cost(model: torch.nn.Module) -> ModelCost:
    """Costs from the parameter tensors and the text config (self- and cross-attention layers)."""
    item = next(model.parameters()).element_size()
    language = model.model.language_model
    embedding = model.get_input_embeddings().weight.numel()
    head = model.get_output_embeddings().weight.numel()
    lm = _count(language)
    vision = _count(model) - lm - head
    text = model.config.get_text_config(decoder=True)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_per_layer = 2 * text.num_key_value_heads * head_dim * item
    cross_layers = len(getattr(text, "cross_attention_layers", None) or [])
    return ModelCost(
        decode_weight_bytes=(lm - embedding + head) * item,
        all_weight_bytes=_count(model) * item,
        prefill_params=lm - embedding,
        head_params=head,
        vision_params=vision,
        kv_bytes_per_token=(text.num_hidden_layers - cross_layers) * kv_per_layer,
        cross_kv_bytes_per_row=cross_layers * kv_per_layer * _cross_tokens_per_row(model.config),
    )


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _cross_tokens_per_row(config: object) -> int:
    """Mllama caches cross-attention KV for every tile slot (max_num_tiles x patches + class token)."""
    vision = getattr(config, "vision_config", None)
    if not hasattr(vision, "max_num_tiles"):
        return 0
    patches = (vision.image_size // vision.patch_size) ** 2 + 1
    return vision.max_num_tiles * patches


def call_floor(call: CallShape, cost: ModelCost, hw: Hardware) -> Floor:
    flops = (
        2 * cost.prefill_params * sum(call.prompt)
        + 2 * cost.head_params * len(call.prompt)
        + 2 * cost.vision_params * call.vision_tokens
    )
    prefill = max(flops / hw.flops, cost.all_weight_bytes / hw.bandwidth)
    steps = [max(g - 1, 0) for g in call.generated]  # the first token comes out of prefill
    kv = 0.0
    for ctx, prompt, n in zip(call.context, call.prompt, steps):
        start = ctx + prompt  # cached tokens when this row's first decode step runs
        kv += cost.kv_bytes_per_token * (n * start + n * (n + 1) / 2) + cost.cross_kv_bytes_per_row * n
    decode = (max(steps, default=0) * cost.decode_weight_bytes + kv) / hw.bandwidth
    return Floor(prefill, decode)


def floors_by_stage(calls: list[CallShape], cost: ModelCost, hw: Hardware) -> dict[str, Floor]:
    stages: dict[str, Floor] = {}
    for call in calls:
        floor = call_floor(call, cost, hw)
        old = stages.get(call.stage, Floor(0.0, 0.0))
        stages[call.stage] = Floor(old.prefill_s + floor.prefill_s, old.decode_s + floor.decode_s)
    return stages


# ---- measured ceilings (METHOD.md: datasheet rates are leads; measure the two ceilings once) ----------


def measure(device: torch.device, dtype: torch.dtype) -> Hardware:
    """A large device copy (bytes read + written) and a large matrix product, median of repeats."""
    on_gpu = device.type == "cuda"
    bandwidth = _copy_rate(device, (2 << 30) if on_gpu else (64 << 20))
    flops = _matmul_rate(device, dtype, 8192 if on_gpu else 1024)
    if on_gpu:
        torch.cuda.empty_cache()  # give the buffers back: the auto batch size reads free memory
    return Hardware(torch.cuda.get_device_name(device) if on_gpu else "cpu", bandwidth, flops, "measured")


def _copy_rate(device: torch.device, size: int) -> float:
    src = torch.randn(size // 4, device=device)  # random data: zeros can run faster
    dst = torch.empty_like(src)
    return 2 * size / _median_time(lambda: dst.copy_(src), device)


def _matmul_rate(device: torch.device, dtype: torch.dtype, n: int) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n**3 / _median_time(lambda: a @ b, device)


def _median_time(fn, device: torch.device, warmup: int = 3, repeats: int = 10) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def hardware_json(hw: Hardware) -> dict[str, object]:
    return {**asdict(hw), "bandwidth_TBps": round(hw.bandwidth / 1e12, 3), "TFLOPs": round(hw.flops / 1e12, 1)}
