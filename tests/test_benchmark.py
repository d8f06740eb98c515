"""The GPU benchmark (docvlm/bench), exercised on CPU: a tiny end-to-end run, the roofline arithmetic,
and the full-size replicas' shapes (built on the meta device: no memory, no weights)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from docvlm.bench.architectures import ARCHITECTURES, check_param_count
from docvlm.bench.cli import parse_configs
from docvlm.bench.roofline import CallShape, Hardware, ModelCost, call_floor, datasheet, model_cost
from docvlm.models import ModelSpec, load_model
from docvlm.models.registry import adapter_class

REPO = Path(__file__).resolve().parents[1]
STAGES = {"detect", "extract", "bank_headers", "bank_rows"}
BUDGETS = {"detect": 16, "extract": 48, "bank_headers": 16, "bank_rows": 192}
BUDGET_FLAGS = ["--detect-tokens", "16", "--extract-tokens", "48", "--bank-tokens", "16", "192"]


@pytest.fixture(scope="module")
def tiny_run(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The documented CPU command, once: 6 documents (5 invoices/receipts, 1 statement), two configs.

    Shorter budgets than the defaults (16 / 256 / 64 + 1024) keep this file fast on 2 loaded cores; the
    code path is the same.
    """
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--model", "tiny_internvl",
               "--device", "cpu", "--docs", "6", "--out", str(out), "--profile-docs", "2",
               *BUDGET_FLAGS]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # DOCVLM_CACHE: the session's tiny models (conftest)
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ratio to baseline (seed:8)" in done.stdout
    return {**json.loads((out / "bench_tiny_internvl.json").read_text()), "out_dir": str(out)}


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def test_tiny_run_reports_every_figure(tiny_run: dict) -> None:
    assert tiny_run["environment"]["transformers"] and tiny_run["environment"]["torch"]
    assert tiny_run["params"] > 0 and _number(tiny_run["load_s"])
    assert tiny_run["workload"]["documents"] == 6 and tiny_run["workload"]["types"]["BANK_STATEMENT"] == 1
    assert [c["name"] for c in tiny_run["configs"]] == ["seed:8", "docvlm:auto"]
    assert tiny_run["configs"][1]["batch_size"] == 4  # auto on CPU
    for config in tiny_run["configs"]:
        assert config["errors"] == 0 and config["documents"] == 6
        for key in ("documents_per_s", "standard_docs_per_s", "statements_per_s", "prefill_s", "decode_s", "warmup_s"):
            assert _number(config[key]) and config[key] > 0, key
        # either flow: a statement's header turn is a bank batch's (docvlm's pools statements after detection)
        assert set(config["stages"]) == STAGES
        for stage in config["stages"].values():
            assert stage["tokens_per_s"] > 0 and stage["ms_per_decode_step"] > 0
            assert 0 <= stage["inputs_s"] <= stage["other_s"] + 1e-3  # waiting for inputs is time beside both
        assert config["stages"]["detect"]["inputs_s"] > 0  # first turns wait for (or take) their inputs
        if config["flow"] == "shared prefill":  # extraction a follow-up turn: no inputs to wait for
            assert config["stages"]["extract"]["inputs_s"] == 0
        assert all(_number(v) and v > 0 for v in config["ratio_to_baseline"].values())
        roof = config["roofline"]["measured"]  # CPU: no datasheet, the measured ceilings
        assert 0 < roof["fraction"] < 1  # a floor below what was measured
        assert _number(roof["documents_per_s"]) and roof["documents_per_s"] > config["documents_per_s"]
    assert tiny_run["configs"][0]["ratio_to_baseline"]["documents_per_s"] == 1.0

    assert _number(tiny_run["ratio"]["documents_per_s"]) and tiny_run["ratio"]["config"] == "docvlm:auto"


def test_tiny_run_profile_says_where_the_time_goes(tiny_run: dict) -> None:
    """--profile-docs: one pass under the profiler; its time by kind (matrix products vs the rest) in the
    JSON and, with the top ops, in profile_<model>.txt."""
    kinds = tiny_run["profile"]["ms_by_kind"]
    assert tiny_run["profile"]["documents"] == 2 and tiny_run["profile"]["config"] == "docvlm:auto"
    assert kinds["GEMM"] > 0 and all(ms > 0 for ms in kinds.values())
    assert list(kinds.values()) == sorted(kinds.values(), reverse=True)
    # ... and by engine phase and model part: the first turns' vision tower and language model, the
    # follow-up turns' prefill and the decode steps (the engine's own loops); the two views add up
    phases = tiny_run["profile"]["ms_by_phase"]
    assert {"first-turn prefill", "follow-up prefill", "decode"} <= phases.keys(), phases
    assert {"vision tower", "language model"} <= phases["first-turn prefill"].keys()
    assert phases["decode"]["-"] > 0 and phases["follow-up prefill"]["-"] > 0
    by_phase = sum(ms for parts in phases.values() for ms in parts.values())
    assert by_phase == pytest.approx(sum(kinds.values()), rel=0.02)
    # ... and what the largest places are made of: their largest ops, in the JSON and the text
    places = tiny_run["profile"]["top_kernels"]
    totals = {f"{phase} / {part}": ms for phase, parts in phases.items() for part, ms in parts.items()}
    assert list(places) == sorted(totals, key=totals.get, reverse=True)[:4]
    for place, rows in places.items():
        phase, part = place.split(" / ")
        assert rows and all(ms > 0 for _, ms in rows) and sum(ms for _, ms in rows) <= phases[phase][part] + 1e-3
        assert [ms for _, ms in rows] == sorted((ms for _, ms in rows), reverse=True)
    text = (Path(tiny_run["out_dir"]) / "profile_tiny_internvl.txt").read_text()
    assert all(f"{place}:" in text for place in places) and rows[0][0][:100] in text


def test_gpu_ranges_are_spans_not_kernels() -> None:
    """On GPU the profiler reports each `docvlm::`/`part::` range as a span too: the kind table leaves
    them out (their kernels count already); a replayed CUDA graph's kernels (decode steps), tied to no op,
    are placed by the correlation id of their `cudaGraphLaunch`; a span's time no kernel covers is UNPLACED."""
    from types import SimpleNamespace

    from docvlm.bench.profile import REPLAYED, UNPLACED, place_kernels, time_by_kind, time_by_phase, top_kernels

    cpu, cuda = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA
    prefill = SimpleNamespace(name="docvlm::first-turn prefill", device_type=cpu, kernels=[], cpu_parent=None, id=1)
    gemm = SimpleNamespace(name="aten::mm", device_type=cpu, cpu_parent=prefill, id=2,
                           kernels=[SimpleNamespace(name="nvjet_sm90_tst_64x16", duration=900.0)])
    decode = SimpleNamespace(name="docvlm::decode", device_type=cpu, kernels=[], cpu_parent=None, id=3)
    replay = SimpleNamespace(name="cudaGraphLaunch", device_type=cpu, cpu_parent=decode, kernels=[], id=4)
    launch = SimpleNamespace(name="cudaLaunchKernel", device_type=cpu, cpu_parent=gemm, kernels=[], id=5)
    spans = [SimpleNamespace(name="docvlm::first-turn prefill", device_type=cuda, device_time_total=1000.0, id=1,
                             time_range=SimpleNamespace(start=0.0, end=1000.0)),
             SimpleNamespace(name="docvlm::decode", device_type=cuda, device_time_total=3000.0, id=3,
                             time_range=SimpleNamespace(start=1000.0, end=4000.0))]
    replayed = [SimpleNamespace(name=name, device_type=cuda, id=4, time_range=SimpleNamespace(start=a, end=b))
                for name, a, b in (("_split_kernel", 1000.0, 1500.0), ("nvjet_sm90_tst_64x16", 1500.0, 3500.0),
                                   ("_split_kernel", 3500.0, 3900.0))]
    launched = SimpleNamespace(name="nvjet_sm90_tst_64x16", device_type=cuda, id=5,  # counted once, via gemm's kernels
                               time_range=SimpleNamespace(start=0.0, end=900.0))
    events = [prefill, gemm, decode, replay, launch, *spans, *replayed, launched]
    placed = place_kernels(events, on_gpu=True)
    phases = time_by_phase(events, placed, on_gpu=True)
    assert phases == {"decode": {REPLAYED: 2.9, UNPLACED: 0.1}, "first-turn prefill": {"-": 0.9, UNPLACED: 0.1}}
    assert top_kernels(placed) == {f"decode / {REPLAYED}": [("nvjet_sm90_tst_64x16", 2.0), ("_split_kernel", 0.9)],
                                   "first-turn prefill / -": [("nvjet_sm90_tst_64x16", 0.9)]}
    averaged = [SimpleNamespace(key="nvjet_sm90_tst_64x16", device_type=cuda, self_device_time_total=900.0),
                SimpleNamespace(key="docvlm::decode", device_type=cuda, self_device_time_total=3000.0),
                SimpleNamespace(key="part::vision tower", device_type=cuda, self_device_time_total=500.0)]
    assert time_by_kind(averaged, on_gpu=True) == {"GEMM": 0.9}


def test_kernel_names_sort_into_kinds() -> None:
    from docvlm.bench.profile import kind

    assert kind("nvjet_sm90_tst_192x208_64x4_2x1_v_bz_coopB_TNT") == "GEMM"
    assert kind("aten::addmm") == "GEMM"
    assert kind("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128") == "attention"
    assert kind("_split_kernel") == "attention"
    assert kind("_rms_norm_kernel") == "fused elementwise (Triton)"
    assert kind("_norm_rotate_kernel") == "fused elementwise (Triton)"
    assert kind("aten::_softmax") == "softmax"
    assert kind("aten::index_copy_") == "index / scatter / gather"
    assert kind("aten::copy_") == "copy / cat / cast"
    assert kind("aten::add") == "elementwise"
    assert kind("cudaGraphLaunch") == "other"


def test_tiny_run_forces_lengths_and_routes_by_true_type(tiny_run: dict) -> None:
    """Random detection answers must not change the workload: 5 extractions and 1 two-turn statement."""
    stages = tiny_run["configs"][0]["stages"]
    rows = {"detect": 6, "extract": 5, "bank_headers": 1, "bank_rows": 1}
    expected = {stage: rows[stage] * BUDGETS[stage] for stage in STAGES}
    assert {name: stage["new_tokens"] for name, stage in stages.items()} == expected
    assert stages["extract"]["documents"] == 5 and stages["bank_rows"]["documents"] == 1
    assert stages["detect"]["vision_tokens"] > 0
    assert stages["bank_rows"]["vision_tokens"] == 0  # turn 2 reuses the cache: the image is not encoded again


def test_tiny_run_same_tokens_in_every_configuration(tiny_run: dict) -> None:
    """fp32 tiny model: the plain path (transformers generate) and the static engine, same pipeline flow and
    batch, give identical tokens and fields. (The seed baseline's flow prefills extraction apart, so its
    extraction replies differ from docvlm's by design: only its detection turn is shared.)"""
    identity = tiny_run["plain_vs_static"]
    assert identity["documents"] == 6 and identity["same_tokens"] == 1.0 and identity["same_fields"] == 1.0
    assert tiny_run["configs"][0]["same_tokens_as_baseline"] == 1.0
    assert 0 < tiny_run["configs"][1]["same_tokens_as_baseline"] < 1.0  # detection alike, extraction not


def test_decode_floor_counts_weights_per_step_and_growing_kv() -> None:
    cost = ModelCost(decode_weight_bytes=100.0, all_weight_bytes=500.0, prefill_params=10.0, head_params=2.0,
                     vision_params=3.0, kv_bytes_per_token=10.0, cross_kv_bytes_per_row=0.0)  # fmt: skip
    hw = Hardware("test", bandwidth=1.0, flops=1.0, source="measured")
    call = CallShape("extract", context=[0, 4], prompt=[5, 1], generated=[3, 3], vision_tokens=7)
    floor = call_floor(call, cost, hw)
    # 2 steps; row 0 reads 6 then 7 cached tokens, row 1 reads 6 then 7 (4 context + 1 prompt + step).
    assert floor.decode_s == pytest.approx(2 * 100 + 10 * (6 + 7) * 2)
    # flops 2*10*6 + 2*2*2 + 2*3*7 = 170 < weights read once (500 bytes at 1 B/s)
    assert floor.prefill_s == pytest.approx(500)
    fast_memory = Hardware("test", bandwidth=1e6, flops=1.0, source="measured")
    assert call_floor(call, cost, fast_memory).prefill_s == pytest.approx(170)


def test_mllama_floor_reads_the_cached_image_every_step() -> None:
    cost = ModelCost(0.0, 0.0, 0.0, 0.0, 0.0, kv_bytes_per_token=0.0, cross_kv_bytes_per_row=50.0)
    call = CallShape("extract", context=[0, 0], prompt=[2, 2], generated=[4, 2], vision_tokens=0)
    assert call_floor(call, cost, Hardware("t", 1.0, 1.0, "measured")).decode_s == pytest.approx(50 * (3 + 1))


@pytest.mark.parametrize(
    "name, bandwidth",
    [("NVIDIA H100 80GB HBM3", 3.35e12), ("NVIDIA H100 PCIe", 2.0e12), ("NVIDIA H100 NVL", 3.9e12),
     ("NVIDIA H200", 4.8e12), ("Tesla T4", None)],
)  # fmt: skip
def test_datasheet_by_device_name(name: str, bandwidth: float | None) -> None:
    sheet = datasheet(name)
    assert (sheet.bandwidth if sheet else None) == bandwidth


def test_configs_parse_and_reject_bad_ones() -> None:
    assert [c.name for c in parse_configs("seed:8, docvlm:auto,docvlm:32")] == ["seed:8", "docvlm:auto", "docvlm:32"]
    for bad in ("seed", "turbo:8", "seed:0", "seed:x"):
        with pytest.raises(ValueError, match="ENGINE:BATCH"):
            parse_configs(bad)


# Qwen3-8B text side: 36 layers x K and V x 8 heads x 128 x 2 bytes (bf16) a token.
EXPECTED_KV = {"internvl3_5_8b": 36 * 2 * 8 * 128 * 2, "qwen3_vl_8b": 36 * 2 * 8 * 128 * 2,
               "llama3_2_11b_vision": 32 * 2 * 8 * 128 * 2,
               "qwen2_5_vl_7b": 28 * 2 * 4 * 128 * 2}  # Qwen2.5-7B: 28 layers, 4 KV heads  # fmt: skip


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_full_size_replica_matches_the_checkpoint(name: str, tiny_model_dir) -> None:
    family, arch = ARCHITECTURES[name]
    tiny = load_model(ModelSpec(family, str(tiny_model_dir(family))), torch.device("cpu"))
    with torch.device("meta"):  # shapes only
        model = adapter_class(family).model_class._from_config(arch.config(tiny.processor), dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    check_param_count(name, params, arch.expected_params)
    cost = model_cost(model)
    assert cost.kv_bytes_per_token == EXPECTED_KV[name]
    assert 14e9 < cost.decode_weight_bytes < 20e9  # ~7-10B weights read per decode step
    with pytest.raises(ValueError, match="parameters"):
        check_param_count(name, int(params * 0.9), arch.expected_params)


def test_internvl_processor_has_the_real_tiles(tiny_model_dir) -> None:
    """An A4 page at 150 dpi: 2x3 tiles + thumbnail of 448 px, 256 tokens each (~1.8k image tokens)."""
    from PIL import Image

    _, arch = ARCHITECTURES["internvl3_5_8b"]
    tiny = load_model(ModelSpec("internvl", str(tiny_model_dir("internvl"))), torch.device("cpu"))
    processor = arch.processor(tiny.processor, 12)
    config = arch.config(tiny.processor)
    page = Image.new("RGB", (1240, 1754), "white")
    out = processor(images=[page], text=["<IMG_CONTEXT>\nhi"], return_tensors="pt", crop_to_patches=True,
                    max_patches=12)
    assert tuple(out["pixel_values"].shape) == (7, 3, 448, 448)
    assert int((out["input_ids"] == config.image_token_id).sum()) == 7 * 256


def test_gpu_bench_script_packs_its_files(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """scripts/gpu_bench.sh as the device runs it, on CPU with a tiny model: with BENCH_PACK every file
    of every model lands in ONE archive (the device tool brings back at most 8 files)."""
    import tarfile

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OUT": str(tmp_path), "BENCH_PACK": "results", "BENCH_DEVICE": "cpu",
           "BENCH_WORKLOAD": "--docs 2 --statements 0",
           "BENCH_FLAGS": "--configs docvlm:auto --check-docs 0 --detect-tokens 4 --extract-tokens 4"}
    done = subprocess.run(["bash", "scripts/gpu_bench.sh", "tiny_internvl", "tiny_qwen3_vl"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["results.tgz"]
    with tarfile.open(tmp_path / "results.tgz") as archive:
        names = sorted(Path(name).name for name in archive.getnames() if name.endswith((".json", ".log")))
    assert names == ["bench_tiny_internvl.json", "bench_tiny_internvl.log", "bench_tiny_qwen3_vl.json",
                     "bench_tiny_qwen3_vl.log"]


def test_host_waits_sum_the_gpus_idle_gaps_by_the_ops_around_them() -> None:
    """A gap between two kernels goes to the place of the op that launched the second (the parent of the
    driver call sharing the kernel's correlation id, as torch's events give it) and to the ops before
    and after it; kernels that overlap or follow within `min_us` make no gap; ranges and the profiler's
    own device events (no launch shares their id) are no kernels."""
    from types import SimpleNamespace

    from docvlm.bench.profile import host_waits

    cpu, cuda = torch.autograd.DeviceType.CPU, torch.autograd.DeviceType.CUDA
    prefill = SimpleNamespace(name="docvlm::first-turn prefill", device_type=cpu, cpu_parent=None, id=1)
    tower = SimpleNamespace(name="part::vision tower", device_type=cpu, cpu_parent=prefill, id=2)
    ops = {name: SimpleNamespace(name=name, device_type=cpu, cpu_parent=tower, id=i)
           for i, name in ((10, "aten::mm"), (11, "aten::item"), (12, "aten::_cudnn_attention_forward"))}
    events = [prefill, tower, *ops.values(),
              SimpleNamespace(name="docvlm::first-turn prefill", device_type=cuda, id=1,
                              time_range=SimpleNamespace(start=0.0, end=5000.0)),
              SimpleNamespace(name="Activity Buffer Request", device_type=cuda, id=99,
                              time_range=SimpleNamespace(start=50.0, end=4000.0))]

    def kernel(op: str, start: float, end: float) -> None:
        correlation = 1000 + len(events)  # the driver call and its kernel share it
        events.append(SimpleNamespace(name="cudaLaunchKernel", device_type=cpu, cpu_parent=ops[op], id=correlation))
        events.append(SimpleNamespace(name="k", device_type=cuda, id=correlation,
                                      time_range=SimpleNamespace(start=start, end=end)))

    kernel("aten::mm", 0, 100)
    kernel("aten::item", 105, 110)  # 5 us: no gap
    kernel("aten::_cudnn_attention_forward", 410, 900)  # 300 us after the item
    kernel("aten::mm", 880, 1000)  # overlaps the one before
    kernel("aten::item", 1000, 1010)
    kernel("aten::_cudnn_attention_forward", 1210, 1500)
    waits = host_waits(events, min_us=20)
    assert waits == [("first-turn prefill / vision tower", "aten::item -> aten::_cudnn_attention_forward", 0.5, 2)]
