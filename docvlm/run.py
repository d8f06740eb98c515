"""`run(cfg)`: the whole job as every rank sees it. launch.py is a thin Hydra shell around this.

  validate config -> join the process group -> find documents (same list on every rank)
  -> take this rank's contiguous shard, minus what earlier runs already recorded (resume)
  -> load the model -> pipeline -> part file (flushed per record)
  -> gather_object to rank 0 -> rank 0 merges in input order, writes results, evaluates, reports
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from docvlm import dist, outputs
from docvlm.config import RunConfig, to_run_config
from docvlm.inputs import DEFAULT_IGNORE, Document, LoadOptions, discover
from docvlm.logs import setup_logging
from docvlm.models import check_model_path, load_model
from docvlm.pipeline.document_pipeline import DocumentPipeline
from docvlm.pipeline.stages import StageContext
from docvlm.progress import Progress
from docvlm.prompts import load_prompts
from docvlm.records import DocumentRecord
from docvlm.schema import Schema, load_schema

log = logging.getLogger(__name__)
_job_numbers = itertools.count()  # identical sequence on every rank: names this job's progress counter


def run(cfg: DictConfig | RunConfig, snapshot: Optional[dict[str, Any]] = None) -> Optional[dict[str, Any]]:
    """Run the job; returns the summary on rank 0, None on other ranks."""
    job = next(_job_numbers)
    run_cfg = to_run_config(cfg)  # ValueError naming key, value, allowed: before anything else
    snapshot = snapshot if snapshot is not None else _snapshot(cfg)
    schema, prompts = load_schema(run_cfg.schema), load_prompts(run_cfg.prompts)
    rank, world, _ = dist.env_world()
    device_kind = dist.check_gpu_request(run_cfg.processing.num_gpus, run_cfg.processing.device,
                                         _local_world_size(world), dist.visible_gpus())
    ctx = dist.init_distributed(device_kind, run_cfg.processing.dist_timeout_s)
    out_dir = Path(run_cfg.output.dir)
    setup_logging(ctx.rank, out_dir, run_cfg.debug.log_level)
    started = time.perf_counter()

    _prepare_output(run_cfg, ctx, out_dir)
    _prepare_samples(run_cfg, ctx)
    _prepare_tiny_model(run_cfg, ctx)
    truth = _load_truth(run_cfg, schema)  # every rank checks: a bad file fails everywhere, no hang
    docs = discover(run_cfg.data.dir, run_cfg.data.extensions, _ignore(run_cfg, out_dir))[: run_cfg.debug.limit]
    check_model_path(run_cfg.model)  # a missing model is a clear error before any GPU work

    mine = [docs[i] for i in dist.shard_range(len(docs), ctx.rank, ctx.world_size)]
    earlier = outputs.read_parts(out_dir)
    kept, todo = _split_resume(mine, earlier, run_cfg.processing.max_retries)
    log.info("%d documents in all; this rank: %d (%d recorded earlier, %d to do)", len(docs), len(mine), len(kept), len(todo))

    progress = Progress(ctx, total=len(docs), initial=0, key=f"docvlm/progress/{job}")
    progress.advance(len(kept))
    new_records, rank_stats = _process(run_cfg, ctx, schema, prompts, todo, earlier, out_dir, progress)
    progress.phase("merge")
    gather_start = time.perf_counter()
    gathered = dist.gather_to_rank0({"records": [r.to_json() for r in kept + new_records], "stats": rank_stats}, ctx)
    gather_s = time.perf_counter() - gather_start
    progress.close()

    summary = None
    if ctx.is_main:
        assert gathered is not None
        records = _merge(gathered, docs)
        summary = _finish(run_cfg, schema, truth, records, gathered, out_dir, snapshot,
                          elapsed_s=time.perf_counter() - started, gather_s=gather_s, world=ctx.world_size)
    dist.barrier(ctx)  # multirun: every rank starts the next job together
    return summary


def _local_world_size(world: int) -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", world))


def _ignore(run_cfg: RunConfig, out_dir: Path) -> tuple[str, ...]:
    """An output folder inside the data folder must not feed its own plots back in as documents."""
    data_dir = Path(run_cfg.data.dir).resolve()
    inside = out_dir.resolve().is_relative_to(data_dir) and out_dir.resolve() != data_dir
    return (*DEFAULT_IGNORE, out_dir.resolve().relative_to(data_dir).parts[0]) if inside else DEFAULT_IGNORE


def _snapshot(cfg: DictConfig | RunConfig) -> dict[str, Any]:
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def _prepare_output(run_cfg: RunConfig, ctx: dist.DistContext, out_dir: Path) -> None:
    outputs.check_writable(out_dir)
    if run_cfg.output.overwrite and ctx.is_main:
        outputs.clean_owned(out_dir)
        setup_logging(ctx.rank, out_dir, run_cfg.debug.log_level)  # its log folder was just removed
    dist.barrier(ctx)  # nobody reads old part files while rank 0 deletes them


def _prepare_samples(run_cfg: RunConfig, ctx: dist.DistContext) -> None:
    data_dir = Path(run_cfg.data.dir)
    if run_cfg.data.make_samples and ctx.is_main and not (data_dir / "ground_truth.csv").exists():
        from docvlm.synth import generate_samples

        log.info("generating the synthetic sample set into %s", data_dir)
        generate_samples(data_dir, seed=run_cfg.data.sample_seed)
    dist.barrier(ctx)


def _prepare_tiny_model(run_cfg: RunConfig, ctx: dist.DistContext) -> None:
    """Rank 0 builds a missing tiny model (transformers' save_pretrained writes weights on rank 0 only)."""
    if run_cfg.model.tiny and ctx.is_main:
        from docvlm.models.tiny import ensure_tiny_model

        ensure_tiny_model(run_cfg.model.family, Path(run_cfg.model.path).expanduser())
    dist.barrier(ctx)


def _load_truth(run_cfg: RunConfig, schema: Schema) -> Any:
    if not run_cfg.data.ground_truth:
        return None
    from docvlm.ground_truth import load_ground_truth

    return load_ground_truth(run_cfg.data.ground_truth, schema)


def _split_resume(mine: list[Document], earlier: dict[str, DocumentRecord],
                  max_retries: int) -> tuple[list[DocumentRecord], list[tuple[Document, int]]]:
    """Documents already recorded are kept; failed ones are redone while attempts remain."""
    kept: list[DocumentRecord] = []
    todo: list[tuple[Document, int]] = []
    for doc in mine:
        prior = earlier.get(doc.id)
        if prior is not None and (prior.ok or prior.attempts > max_retries):
            prior.index = doc.index
            kept.append(prior)
        else:
            todo.append((doc, 1 if prior is None else prior.attempts + 1))
    return kept, todo


def _process(run_cfg: RunConfig, ctx: dist.DistContext, schema: Schema, prompts: Any,
             todo: list[tuple[Document, int]], earlier: dict[str, DocumentRecord], out_dir: Path,
             progress: Progress) -> tuple[list[DocumentRecord], dict[str, Any]]:
    stats: dict[str, Any] = {"rank": ctx.rank, "documents": len(todo), "load_model_s": 0.0, "busy_s": 0.0}
    if not todo:
        return [], stats  # idle rank: still joins every collective
    load_start = time.perf_counter()
    model = load_model(run_cfg.model, ctx.device)
    stats["load_model_s"] = round(time.perf_counter() - load_start, 3)
    batch_size = run_cfg.processing.batch_size or auto_batch_size(ctx.device)
    stage_ctx = StageContext(model, schema, prompts, run_cfg.processing.max_new_tokens, run_cfg.processing.force_length)
    pipeline = DocumentPipeline(stage_ctx, batch_size, run_cfg.processing.group_window, ctx.rank,
                                LoadOptions(pdf_dpi=run_cfg.data.pdf_dpi))
    attempts = {doc.id: n for doc, n in todo}
    records: list[DocumentRecord] = []
    busy_start = time.perf_counter()
    progress.phase("extract")
    with outputs.PartWriter(out_dir, ctx.rank) as part:
        for record in pipeline.process([doc for doc, _ in todo]):
            record.attempts = attempts[record.image]
            part.write(record)
            records.append(record)
            progress.advance()
            if len(records) == 1:
                stats["first_result_s"] = round(time.perf_counter() - busy_start, 3)
    stats["busy_s"] = round(time.perf_counter() - busy_start, 3)
    stats["batch_size"] = batch_size
    stats["stages"] = {name: s.to_json() for name, s in stage_ctx.stats.items()}
    return records, stats


def auto_batch_size(device: torch.device) -> int:
    """processing.batch_size=null: 4 on CPU; on GPU from free memory, ~1.5 GiB a document in flight."""
    if device.type != "cuda":
        return 4
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(32, int(free / 1.5 / 2**30)))


def _merge(gathered: list[dict[str, Any]], docs: list[Document]) -> list[DocumentRecord]:
    """One record per input document, in input order, whatever the number of ranks."""
    by_id = {rec["image"]: DocumentRecord.from_json(rec) for part in gathered for rec in part["records"]}
    missing = [d.id for d in docs if d.id not in by_id]
    if missing:
        raise RuntimeError(f"{len(missing)} documents have no record after the gather, e.g. {missing[:3]}")
    merged = []
    for doc in docs:
        record = by_id[doc.id]
        record.index = doc.index
        merged.append(record)
    return merged


def _finish(run_cfg: RunConfig, schema: Schema, truth: Any, records: list[DocumentRecord],
            gathered: list[dict[str, Any]], out_dir: Path, snapshot: dict[str, Any],
            elapsed_s: float, gather_s: float, world: int) -> dict[str, Any]:
    from docvlm.summary import build_summary

    evaluation = None
    record_dicts = [r.to_json() for r in records]
    if truth is not None:
        from docvlm.evaluate import evaluate
        from docvlm.report import write_report

        evaluation = evaluate(record_dicts, truth, schema, elapsed_s=elapsed_s)
        outputs.write_json(out_dir / "evaluation.json", evaluation)
        write_report(evaluation, record_dicts, out_dir)
        records = [DocumentRecord.from_json(r) for r in record_dicts]  # now with per-document scores
    outputs.write_results(out_dir, records, schema.all_field_names)
    summary = build_summary(run_cfg, records, [g["stats"] for g in gathered], evaluation,
                            elapsed_s=elapsed_s, gather_s=gather_s, world=world, snapshot=snapshot)
    outputs.write_json(out_dir / "summary.json", summary)
    log.info("wrote %s (%d documents, %.2f documents/s)", out_dir, len(records), summary["documents_per_s"])
    return summary
