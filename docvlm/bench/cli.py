"""`python scripts/benchmark.py`: one process builds the model, runs every configuration, writes JSON.

  hardware ceilings -> build model (timed) -> synthetic workload
  -> per configuration: warm-up pass (timed apart) -> timed pass -> metrics, JSON rewritten
  -> table + ratios to the baseline (the first configuration, the seed-style engine at batch 8)
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import logging
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from docvlm.bench.architectures import MODEL_NAMES, BuiltModel, build_model
from docvlm.bench.profile import (
    host_waits,
    host_waits_table,
    kind_table,
    part_ranges,
    phase_table,
    place_kernels,
    time_by_kind,
    time_by_phase,
    top_kernels,
    top_kernels_table,
)
from docvlm.bench.report import pass_metrics, ratios, table, write_json
from docvlm.bench.roofline import Hardware, datasheet, hardware_json, measure, model_cost
from docvlm.bench.workload import VisionCounter, Workload, make_workload, run_pass, same_outputs
from docvlm.config import TokenBudgets
from docvlm.inputs import Document, load_image
from docvlm.models import VisionLanguageModel, build_engine
from docvlm.models.protocol import Request
from docvlm.pipeline.build import batch_sizes
from docvlm.pipeline.stages import StageContext
from docvlm.paths import REPO_ROOT
from docvlm.prompts import Prompts, load_prompts
from docvlm.schema import Schema, load_schema

log = logging.getLogger("docvlm.bench")

# "seed": the seed's design: eager HF `generate`, detection and extraction each prefill the image (baseline).
# "hf": the plain path: eager HF `generate` with docvlm's flow (one conversation a document); the
#       reference the static engine must match token for token.
# "docvlm": the pipeline's default: the static engine (owned decode loop, CUDA graphs) and docvlm's flow.
ENGINES = ("seed", "hf", "docvlm")
MODEL_ENGINE = {"seed": "hf", "hf": "hf", "docvlm": "static"}  # the model layer's engine of each configuration


@dataclass(frozen=True)
class BenchConfig:
    engine: str
    batch_size: int | None  # None: processing.batch_size=null (auto)

    @property
    def name(self) -> str:
        return f"{self.engine}:{self.batch_size or 'auto'}"


def parse_configs(text: str) -> list[BenchConfig]:
    """'seed:8,docvlm:auto' -> configurations; the first one is the baseline."""
    configs = []
    for part in text.split(","):
        engine, _, batch = part.strip().partition(":")
        if engine not in ENGINES or not (batch == "auto" or batch.isdigit() and int(batch) > 0):
            raise ValueError(f"--configs: {part!r} is not ENGINE:BATCH with ENGINE in {ENGINES}, "
                             "BATCH a positive integer or auto")
        configs.append(BenchConfig(engine, None if batch == "auto" else int(batch)))
    return configs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark docvlm against the seed-style engine on one device.")
    p.add_argument("--model", default="internvl3_5_8b", choices=MODEL_NAMES)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--docs", type=int, default=56, help="documents in the workload (statements included)")
    p.add_argument("--statements", type=int, default=None, help="bank statements among them (default docs/7, >= 1)")
    p.add_argument("--seed", type=int, default=0, help="synthetic corpus seed")
    p.add_argument("--configs", default="seed:8,docvlm:auto", help="ENGINE:BATCH,...; the first is the baseline")
    p.add_argument("--max-tiles", type=int, default=12, help="processing.max_tiles")
    p.add_argument("--detect-tokens", type=int, default=16)
    p.add_argument("--extract-tokens", type=int, default=256)
    p.add_argument("--bank-tokens", type=int, nargs=2, default=(64, 1024), metavar=("HEADERS", "ROWS"))
    p.add_argument("--warmup-tokens", type=int, default=0,
                   help="budget of every stage in the warm-up pass; 0: the real budgets (captures every graph)")
    p.add_argument("--baseline-docs", type=int, default=None,
                   help="the baseline (first configuration) runs on the first N documents only: it is slow, "
                        "and its rate per document is steady from one full batch on")
    p.add_argument("--profile-docs", type=int, default=0,
                   help="after the configurations, the last docvlm configuration again on the first N documents "
                        "under torch.profiler: top kernels written to profile_<model>.txt (0: skip)")
    p.add_argument("--check-docs", type=int, default=8,
                   help="the plain path (hf) and the static engine on the first N documents, same flow and "
                        "batch: share of identical replies and fields (0: skip)")
    p.add_argument("--out", type=Path, default=Path("outputs/bench"), help="folder for bench_<model>.json")
    args = p.parse_args(argv)
    if args.statements is None:
        args.statements = max(1, args.docs // 7)
    if not 0 <= args.statements <= args.docs or args.docs < 1:
        p.error(f"need --docs >= 1 and 0 <= --statements <= --docs, got {args.docs} and {args.statements}")
    try:
        args.configs = parse_configs(args.configs)
    except ValueError as err:
        p.error(str(err))
    return args


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def environment(device: torch.device) -> dict[str, Any]:
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "transformers": transformers.__version__,
        "git_commit": _git_commit(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }


def _git_commit() -> str | None:
    """HEAD of the checkout, '+dirty' with uncommitted changes; None where there is no git (device copies)."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        return head and head + ("+dirty" if _git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10).stdout.strip()


def hardware_bases(device: torch.device, dtype: torch.dtype) -> list[Hardware]:
    """The datasheet first where the GPU is known (the primary basis), then the measured ceilings."""
    measured = measure(device, dtype)
    sheet = datasheet(measured.name) if device.type == "cuda" else None
    return [sheet, measured] if sheet else [measured]


def make_engine(config: BenchConfig, built: BuiltModel) -> VisionLanguageModel:
    # Each engine reads the end ids from the model's generation config and then replaces it: restore it.
    built.model.generation_config = copy.deepcopy(built.generation_config)
    return build_engine(MODEL_ENGINE[config.engine], built.model, built.processor, built.spec, built.model.device)


@torch.inference_mode()
def check_finite(engine: VisionLanguageModel, doc: Document) -> None:
    """Random weights must keep activations finite, or every later number is about NaNs."""
    inputs = engine.encode([Request(load_image(doc), "Check.", 1)])
    logits = engine.model(**inputs).logits
    if not torch.isfinite(logits).all():
        raise RuntimeError(f"{engine.name}: non-finite logits with random weights; lower initializer_range")


def _peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None


def _batch_sizes(config: BenchConfig, engine: VisionLanguageModel, built: BuiltModel, workload: Workload,
                 schema: Schema, prompts: Prompts) -> tuple[int, int]:
    """The configuration's batch (and bank batch), or what `processing.batch_size=null` picks for this engine."""
    ctx = StageContext(engine, schema, prompts, workload.budgets)
    return batch_sizes(ctx, built.model.device, config.batch_size, built.spec.max_tiles)


def run_config(config: BenchConfig, built: BuiltModel, workload: Workload, counter: VisionCounter,
               hardware: list[Hardware], warmup_tokens: int, docs: int | None = None) -> tuple[dict[str, Any], Any]:
    device = built.model.device
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the last configuration's cached blocks would shrink the auto batch
    engine = make_engine(config, built)
    schema, prompts = load_schema(), load_prompts()
    batch, bank_batch = _batch_sizes(config, engine, built, workload, schema, prompts)
    shared = config.engine != "seed"
    if docs is not None:
        workload = Workload(workload.docs[:docs], workload.types, workload.budgets)
    # The static engine warms up on the real budgets (every graph it will replay gets captured here);
    # the eager engines have nothing to capture: a few tokens warm them up.
    if config.engine != "docvlm":
        warmup_tokens = warmup_tokens or 4
    short = TokenBudgets(*[warmup_tokens] * 4) if warmup_tokens else workload.budgets
    log.info("%s: batch %d, warm-up on %d documents", config.name, batch, min(batch, len(workload.docs)))
    warm = run_pass(engine, schema, prompts, workload, batch, counter, workload.docs[:batch], short, shared,
                    bank_batch)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    log.info("%s: timed pass over %d documents", config.name, len(workload.docs))
    captures_before = getattr(engine, "captures", 0), getattr(engine, "capture_s", 0.0)
    timed = run_pass(engine, schema, prompts, workload, batch, counter, shared_prefill=shared,
                     bank_batch_size=bank_batch)
    metrics = {"name": config.name, "engine": config.engine, "engine_class": type(engine).__name__,
               "flow": "shared prefill" if shared else "separate prefill", "batch_size": batch,
               "bank_batch_size": bank_batch,
               "warmup_s": round(warm.wall_s, 3), "peak_memory_gib": _peak_gib(device),
               "graphs_captured_in_warmup": captures_before[0],
               "graphs_captured_in_timed_pass": getattr(engine, "captures", 0) - captures_before[0],
               "capture_s_in_timed_pass": round(getattr(engine, "capture_s", 0.0) - captures_before[1], 3)}
    metrics.update(pass_metrics(timed, workload, model_cost(built.model), hardware))
    log.info("%s: %.3f documents/s (%.1f s), %d errors", config.name, metrics["documents_per_s"], timed.wall_s,
             metrics["errors"])
    if hasattr(engine, "release"):
        engine.release()  # the next configuration must find the memory free
    timed.ctx.model = None
    warm.ctx.model = None
    return metrics, timed.ctx


def _workload_json(workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    return {"documents": len(workload.docs), "statements": args.statements, "seed": args.seed,
            "max_tiles": args.max_tiles, "budgets": vars(workload.budgets), "forced_lengths": True,
            "types": dict(sorted(_type_counts(workload).items()))}  # fmt: skip


def _type_counts(workload: Workload) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc in workload.docs:
        counts[workload.types[doc.id]] = counts.get(workload.types[doc.id], 0) + 1
    return counts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    args = parse_args(argv)
    configs = args.configs
    device = _device(args.device)
    out = args.out / f"bench_{args.model}.json"
    result: dict[str, Any] = {"model": args.model, "environment": environment(device)}
    log.info("environment: %s", result["environment"])

    built = build_model(args.model, device, args.max_tiles)
    hardware = hardware_bases(device, built.model.dtype)
    result.update(_model_json(built, device), hardware=[hardware_json(hw) for hw in hardware])
    log.info("built %s: %.3fB parameters in %.1f s; roofline basis %s", args.model, built.params / 1e9,
             built.build_s, [hardware_json(hw) for hw in hardware])
    budgets = TokenBudgets(args.detect_tokens, args.extract_tokens, *args.bank_tokens)
    with tempfile.TemporaryDirectory(prefix="docvlm-bench-") as folder:
        workload = make_workload(Path(folder), args.docs, args.statements, args.seed, budgets)
        result["workload"] = _workload_json(workload, args)
        check_finite(make_engine(configs[0], built), workload.docs[0])
        write_json(out, result)  # the build figures survive a run cut short
        result["configs"] = _run_configs(configs, built, workload, hardware, args.warmup_tokens, result, out,
                                         args.baseline_docs)
        if args.profile_docs:
            docvlm = [c for c in configs if c.engine == "docvlm"][-1]
            result["profile"] = profile(built, workload, docvlm, args.profile_docs,
                                        args.out / f"profile_{args.model}.txt")
            write_json(out, result)
        if args.check_docs:
            result["plain_vs_static"] = check_identity(built, workload, args.check_docs)
            log.info("plain path vs static engine: %s", result["plain_vs_static"])
            write_json(out, result)
    print(table(result["configs"], hardware[0].source), flush=True)
    print(f"ratio to baseline ({configs[0].name}): {result['ratio']}", flush=True)
    print(f"wrote {out}", flush=True)
    return result


def profile(built: BuiltModel, workload: Workload, config: BenchConfig, docs: int, out: Path) -> dict[str, Any]:
    """One pass under torch.profiler: where the GPU time goes, by kind and kernel by kernel (CPU ops on CPU)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    engine = make_engine(config, built)
    schema, prompts = load_schema(), load_prompts()
    batch, bank_batch = _batch_sizes(config, engine, built, workload, schema, prompts)
    subset = workload.docs[:docs]
    run_pass(engine, schema, prompts, workload, batch, None, subset, bank_batch_size=bank_batch)  # warm-up: graphs
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if built.model.device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof, part_ranges(built.model):
        timed = run_pass(engine, schema, prompts, workload, batch, None, subset, bank_batch_size=bank_batch)
    on_gpu = built.model.device.type == "cuda"
    events = prof.key_averages()
    kinds = time_by_kind(events, on_gpu)
    function_events = prof.events()
    placed = place_kernels(function_events, on_gpu)
    phases = time_by_phase(function_events, placed, on_gpu)
    places = top_kernels(placed)
    waits = host_waits(function_events) if on_gpu else []
    text = events.table(sort_by="cuda_time_total" if on_gpu else "cpu_time_total", row_limit=25,
                        max_name_column_width=70)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"{config.name} on {len(subset)} documents, batch {batch}, {timed.wall_s:.1f} s\n"
                   f"{'GPU kernels' if on_gpu else 'CPU ops'} by kind:\n{kind_table(kinds)}\n\n"
                   f"by engine phase and model part:\n{phase_table(phases)}\n\n"
                   f"largest {'kernels' if on_gpu else 'ops'} of the largest places:\n{top_kernels_table(places)}\n\n"
                   + (f"GPU idle, waiting for the host (gaps >= 20 us; by the launching op's place, ops around):\n"
                      f"{host_waits_table(waits)}\n\n" if on_gpu else "") +
                   f"{text}\n")
    log.info("profile written to %s; by kind: %s", out, kinds)
    if hasattr(engine, "release"):
        engine.release()
    return {"config": config.name, "documents": len(subset), "batch": batch, "wall_s": round(timed.wall_s, 3),
            "ms_by_kind": kinds, "ms_by_phase": phases, "top_kernels": places,
            "host_waits": waits}


def check_identity(built: BuiltModel, workload: Workload, docs: int) -> dict[str, Any]:
    """The plain path (transformers generate) and the static engine on the same documents and batch."""
    subset = workload.docs[:docs]
    schema, prompts = load_schema(), load_prompts()
    passes = {}
    for engine in ("hf", "docvlm"):
        model = make_engine(BenchConfig(engine, len(subset)), built)
        passes[engine] = run_pass(model, schema, prompts, workload, len(subset), None, subset)
    plain, static = (passes[name] for name in ("hf", "docvlm"))
    same_fields = sum(a.fields == b.fields for a, b in zip(plain.records, static.records))
    return {"documents": len(subset), "same_tokens": round(same_outputs(plain.ctx, static.ctx), 4),
            "same_fields": round(same_fields / len(subset), 4), "plain_s": round(plain.wall_s, 2),
            "static_s": round(static.wall_s, 2)}


def _model_json(built: BuiltModel, device: torch.device) -> dict[str, Any]:
    weights = round(torch.cuda.memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None
    return {"family": built.family, "params": built.params, "expected_params": built.expected_params,
            "dtype": str(built.model.dtype), "load_s": round(built.build_s, 3), "weights_gib": weights}  # fmt: skip


def _run_configs(configs: list[BenchConfig], built: BuiltModel, workload: Workload, hardware: list[Hardware],
                 warmup_tokens: int, result: dict[str, Any], out: Path,
                 baseline_docs: int | None = None) -> list[dict[str, Any]]:
    """Each configuration in turn; the JSON is rewritten after each, so a cut-short run keeps what it did."""
    counter = VisionCounter(built.model)
    done: list[dict[str, Any]] = []
    baseline_ctx = None
    try:
        for config in configs:
            started = time.perf_counter()
            docs = baseline_docs if not done else None
            metrics, ctx = run_config(config, built, workload, counter, hardware, warmup_tokens, docs)
            baseline_ctx = baseline_ctx or ctx
            metrics["ratio_to_baseline"] = ratios(done[0] if done else metrics, metrics)
            metrics["same_tokens_as_baseline"] = round(same_outputs(baseline_ctx, ctx), 4)
            metrics["config_s"] = round(time.perf_counter() - started, 1)
            done.append(metrics)
            best = max(done[1:] or done, key=lambda c: c["documents_per_s"])
            result.update(configs=done, ratio={"config": best["name"], **best["ratio_to_baseline"]})
            write_json(out, result)
    finally:
        counter.close()
    return done
