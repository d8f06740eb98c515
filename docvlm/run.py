"""`run(cfg)`: the whole job as every rank sees it. launch.py is a thin Hydra shell around this.

  validate config -> join the process group -> find documents (same list on every rank)
  -> take this rank's contiguous shard, minus what earlier runs already recorded (resume)
     (processing.shard=cost: detect an equal-count share first, all-gather the detections, then
      take a contiguous range of about equal estimated cost: see _work_by_cost)
  -> load the model -> pipeline -> part file (flushed per record)
  -> gather_object to rank 0 -> rank 0 merges in input order, writes results, evaluates, reports
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, TypeVar

import torch
from omegaconf import DictConfig, OmegaConf

from docvlm import dist, faults, outputs
from docvlm.config import RunConfig, to_run_config
from docvlm.inputs import DEFAULT_IGNORE, Document, LoadOptions, discover
from docvlm.logs import setup_logging
from docvlm.models import check_model_path, load_model
from docvlm.pipeline.cost import CostModel
from docvlm.models.memory_plan import auto_batch_size
from docvlm.pipeline.document_pipeline import DocumentPipeline
from docvlm.pipeline.stages import StageContext
from docvlm.progress import Progress
from docvlm.prompts import load_prompts
from docvlm.records import DocumentRecord
from docvlm.schema import Schema, load_schema
from docvlm.watchdog import Watchdog

log = logging.getLogger(__name__)
T = TypeVar("T")
_job_numbers = itertools.count()  # identical sequence on every rank: names this job's progress counter


def run(cfg: DictConfig | RunConfig, snapshot: Optional[dict[str, Any]] = None) -> Optional[dict[str, Any]]:
    """Run the job; returns the summary on rank 0, None on other ranks.

    A failure on any rank raises JobFailed on EVERY rank at the same point (see `_together`), so no
    rank waits forever and, under a Hydra multirun, the next job starts with all ranks in step.
    """
    job = next(_job_numbers)
    run_cfg = to_run_config(cfg)  # ValueError naming key, value, allowed: before anything else
    snapshot = snapshot if snapshot is not None else _snapshot(cfg)
    schema, prompts = load_schema(run_cfg.schema), load_prompts(run_cfg.prompts)
    rank, world, _ = dist.env_world()
    device_kind = dist.check_gpu_request(run_cfg.processing.num_gpus, run_cfg.processing.device,
                                         _local_world_size(world), dist.visible_gpus())
    ctx = dist.init_distributed(device_kind, run_cfg.processing.dist_timeout_s)
    _share_cpu_threads(_local_world_size(world))
    out_dir = Path(run_cfg.output.dir)
    setup_logging(ctx.rank, out_dir, run_cfg.debug.log_level)
    started = time.perf_counter()

    _together(ctx, lambda: _prepare_output(run_cfg, ctx, out_dir))
    _together(ctx, lambda: _prepare_samples(run_cfg, ctx))
    _together(ctx, lambda: _prepare_tiny_model(run_cfg, ctx))
    truth, docs = _together(ctx, lambda: _find_inputs(run_cfg, schema, out_dir))

    progress = Progress(ctx, total=len(docs), key=f"docvlm/progress/{job}")
    hang_timeout_s = run_cfg.processing.hang_timeout_s or run_cfg.processing.dist_timeout_s
    watchdog = Watchdog(ctx, hang_timeout_s, key=f"docvlm/heartbeat/{job}")
    try:
        kept, new_records, rank_stats = _together(
            ctx, lambda: _work(run_cfg, ctx, schema, prompts, docs, truth, out_dir, progress, watchdog))
        progress.phase("merge")
        faults.at_point("merge", ctx.rank)  # tests: every part file complete, nothing merged yet
        gather_start = time.perf_counter()
        payload = {"records": [r.to_json() for r in kept + new_records], "stats": rank_stats}
        gathered = _collective(lambda: dist.gather_to_rank0(payload, ctx))
        gather_s = time.perf_counter() - gather_start
    finally:
        watchdog.close()
        progress.close()

    def finish() -> Optional[dict[str, Any]]:
        if not ctx.is_main:
            return None
        assert gathered is not None
        records = _merge(gathered, docs)
        return _finish(run_cfg, schema, truth, records, gathered, out_dir, snapshot,
                       elapsed_s=time.perf_counter() - started, gather_s=gather_s, world=ctx.world_size)

    return _together(ctx, finish)  # multirun: every rank starts the next job together


class JobFailed(RuntimeError):
    """The job failed on some rank; raised on EVERY rank at the same point (the ranks stay in step)."""


class RanksOutOfStep(RuntimeError):
    """A collective itself failed (timeout, a rank gone): no later job can run safely in this process."""


def _together(ctx: dist.DistContext, step: Callable[[], T]) -> T:
    """Run `step` on this rank, then meet the other ranks: all go on, or all raise JobFailed.

    Used instead of a barrier: a rank that raised would never reach a barrier, leaving the others
    waiting (until the dist timeout) or, under multirun, meeting the next job's collectives.
    """
    own: Optional[Exception] = None
    result: Any = None
    try:
        result = step()
    except Exception as err:  # noqa: BLE001 - every rank hears of it below
        own = err
    errors = _collective(lambda: dist.all_gather(None if own is None else f"{type(own).__name__}: {own}", ctx))
    if any(error is not None for error in errors):
        raise JobFailed(_describe(errors)) from own
    return result


def _describe(errors: list[Optional[str]]) -> str:
    """'rank 0,1: ValueError: ...; rank 3: ...': one entry per distinct error."""
    ranks_by_error: dict[str, list[str]] = {}
    for rank, error in enumerate(errors):
        if error is not None:
            ranks_by_error.setdefault(error, []).append(str(rank))
    return "; ".join(f"rank {','.join(ranks)}: {error}" for error, ranks in ranks_by_error.items())


def _collective(action: Callable[[], T]) -> T:
    try:
        return action()
    except Exception as err:
        raise RanksOutOfStep(f"a collective failed, the ranks may be out of step: {type(err).__name__}: {err}") from err


def _find_inputs(run_cfg: RunConfig, schema: Schema, out_dir: Path) -> tuple[Any, list[Document]]:
    truth = _load_truth(run_cfg, schema)  # every rank checks: a bad file fails everywhere
    docs = discover(run_cfg.data.dir, run_cfg.data.extensions, _ignore(run_cfg, out_dir))[: run_cfg.debug.limit]
    if run_cfg.model.family != "ocr":
        check_model_path(run_cfg.model)  # a missing model is a clear error before any GPU work
    return truth, docs


def _work(run_cfg: RunConfig, ctx: dist.DistContext, schema: Schema, prompts: Any, docs: list[Document], truth: Any,
          out_dir: Path, progress: Progress,
          watchdog: Watchdog) -> tuple[list[DocumentRecord], list[DocumentRecord], dict[str, Any]]:
    """This rank's share: (records kept from earlier runs, new records, stats)."""
    worker = _Worker(run_cfg, ctx, schema, prompts, truth, docs, progress, watchdog)
    try:
        if run_cfg.processing.shard == "cost":
            return _work_by_cost(worker, docs, out_dir)
        return _work_by_count(worker, docs, out_dir)
    finally:
        watchdog.waiting()  # done (or failed): waiting for the other ranks is not a hang


def _work_by_count(worker: "_Worker", docs: list[Document],
                   out_dir: Path) -> tuple[list[DocumentRecord], list[DocumentRecord], dict[str, Any]]:
    """processing.shard=count: an equal-count contiguous shard, detected and extracted here."""
    ctx = worker.ctx
    mine = [docs[i] for i in dist.shard_range(len(docs), ctx.rank, ctx.world_size)]
    kept, todo = _split_resume(mine, outputs.read_parts(out_dir), worker.cfg.processing.max_retries)
    log.info("%d documents in all; this rank: %d (%d recorded earlier, %d to do)", len(docs), len(mine), len(kept), len(todo))
    worker.progress.resumed(len(kept))
    new_records, stats = _process(worker, todo, out_dir)
    stats.update(worker.stats(), shard="count")
    if worker.stage_ctx is not None:  # the same estimate as shard=cost, from the types found, to compare
        model = worker.cost_model(worker.batch_size or 1)
        stats["estimated_cost"] = round(sum(model.cost(r) for r in new_records), 3)
    return kept, new_records, stats


def _work_by_cost(worker: "_Worker", docs: list[Document],
                  out_dir: Path) -> tuple[list[DocumentRecord], list[DocumentRecord], dict[str, Any]]:
    """processing.shard=cost: detect an equal-count shard, share the detections with every rank, then
    extract a contiguous range of about equal estimated cost (every rank computes the same ranges).

    Resume: documents recorded by an earlier run are neither detected nor extracted again; they cost 0,
    and the rank whose range holds one passes its record on.
    """
    ctx, cfg = worker.ctx, worker.cfg
    started = time.perf_counter()
    # Inside _together: a rank that fails here must not skip the all-gather the others wait in.
    recorded, todo, detections, detect_s = _together(ctx, lambda: _detect_share(worker, docs, out_dir))
    payload = {"records": [r.to_json() for r in detections], "batch_size": worker.batch_size}
    gathered = _collective(lambda: dist.all_gather(payload, ctx))
    worker.watchdog.beat("splitting the documents by estimated cost")
    detected = {rec["image"]: DocumentRecord.from_json(rec) for part in gathered for rec in part["records"]}
    costs = _estimate_costs(worker, docs, detected, _cost_batch_size(cfg, gathered))
    mine = dist.balanced_ranges(costs, ctx.world_size)[ctx.rank]
    kept, work = _split_range([docs[i] for i in mine], detected, recorded, todo)
    log.info("%d documents in all; cost-balanced range of this rank: %d (%d recorded earlier, %d to do), "
             "estimated cost %.1f s of %.1f s", len(docs), len(mine), len(kept), len(work),
             sum(costs[i] for i in mine), sum(costs))
    worker.progress.resumed(len(kept))
    new_records, stats = _process(worker, work, out_dir, detected=detected, clock_start=started)
    stats.update(worker.stats(), shard="cost", detected=len(detections), detect_s=round(detect_s, 3),
                 estimated_cost=round(sum(costs[i] for i in mine), 3))
    stats["busy_s"] = round(stats["busy_s"] + detect_s, 3)  # working time: waiting at the all-gather excluded
    return kept, new_records, stats


def _detect_share(worker: "_Worker", docs: list[Document], out_dir: Path) -> tuple[
        list[DocumentRecord], list[tuple[Document, int]], list[DocumentRecord], float]:
    """shard=cost, phase 1: what earlier runs recorded (all documents: recorded, to do), then detection
    of this rank's equal-count share of the documents to do: their records (error records for
    unreadable files) and the seconds it took, model loading excluded."""
    try:
        ctx = worker.ctx
        recorded, todo = _split_resume(docs, outputs.read_parts(out_dir), worker.cfg.processing.max_retries)
        share = {docs[i].id for i in dist.shard_range(len(docs), ctx.rank, ctx.world_size)}
        mine = [doc for doc, _ in todo if doc.id in share]
        if not mine:
            return recorded, todo, [], 0.0
        pipeline = worker.pipeline()
        start = time.perf_counter()
        records = []
        for record in pipeline.detect_only(mine):
            records.append(record)
            worker.watchdog.beat(f"detected {len(records)}/{len(mine)} ({record.image})")
        return recorded, todo, records, time.perf_counter() - start
    finally:
        worker.watchdog.waiting()  # the other ranks may still be detecting: not a hang


def _cost_batch_size(run_cfg: RunConfig, gathered: list[dict[str, Any]]) -> int:
    """The batch size in the cost estimate: the same on every rank, which auto sizes (free memory) may
    not be, so the smallest any rank reported."""
    reported = [part["batch_size"] for part in gathered if part["batch_size"]]
    return run_cfg.processing.batch_size or min(reported, default=1)


def _estimate_costs(worker: "_Worker", docs: list[Document], detected: dict[str, DocumentRecord],
                    batch_size: int) -> list[float]:
    """Each document's work left after detection (seconds); 0 for those recorded by an earlier run."""
    model = worker.cost_model(batch_size)
    routes = worker.routes or {}  # benchmarks: the ground-truth type picks the flow
    return [model.cost(detected[doc.id], routes.get(doc.id)) if doc.id in detected else 0.0 for doc in docs]


def _split_range(mine: list[Document], detected: dict[str, DocumentRecord], recorded: list[DocumentRecord],
                 todo: list[tuple[Document, int]]) -> tuple[list[DocumentRecord], list[tuple[Document, int]]]:
    """This rank's range: (records of earlier runs, documents to finish with their attempt number).
    Every document still to do was detected in phase 1 by some rank; the others were recorded."""
    earlier = {record.image: record for record in recorded}
    attempts = {doc.id: n for doc, n in todo}
    kept, work = [], []
    for doc in mine:
        if doc.id in detected and doc.id in attempts:
            work.append((doc, attempts[doc.id]))
        elif doc.id in earlier and doc.id not in detected:
            kept.append(earlier[doc.id])
        else:  # the ranks read different part files (a file system that is not shared?)
            raise RuntimeError(f"{doc.id}: the ranks disagree on whether an earlier run recorded it; "
                               "are the part files under output.dir visible to every rank?")
    return kept, work


def _share_cpu_threads(local_ranks: int) -> None:
    """torchrun runs every rank with OMP_NUM_THREADS=1 when it starts more than one, which makes image
    preprocessing single-threaded (measured: 2 ranks slower than 1 on 4xH100). Unless the user chose
    DOCVLM_CPU_THREADS, the ranks of a node share its cores."""
    chosen = os.environ.get("DOCVLM_CPU_THREADS")
    threads = int(chosen) if chosen else max(1, (os.cpu_count() or 1) // max(1, local_ranks))
    torch.set_num_threads(threads)


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
    restarted = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"  # an elastic restart resumes
    if run_cfg.output.overwrite and ctx.is_main and not restarted:
        outputs.clean_owned(out_dir)
        setup_logging(ctx.rank, out_dir, run_cfg.debug.log_level)  # its log folder was just removed
    # (the caller's _together keeps the other ranks from reading old part files while rank 0 deletes them)


def _prepare_samples(run_cfg: RunConfig, ctx: dist.DistContext) -> None:
    data_dir = Path(run_cfg.data.dir)
    if run_cfg.data.make_samples and ctx.is_main and not (data_dir / "ground_truth.csv").exists():
        from docvlm.synth import generate_samples

        log.info("generating the synthetic sample set into %s", data_dir)
        generate_samples(data_dir, seed=run_cfg.data.sample_seed)


def _prepare_tiny_model(run_cfg: RunConfig, ctx: dist.DistContext) -> None:
    """Rank 0 builds a missing tiny model (transformers' save_pretrained writes weights on rank 0 only)."""
    if run_cfg.model.tiny and ctx.is_main:
        from docvlm.models.tiny import ensure_tiny_model

        ensure_tiny_model(run_cfg.model.family, Path(run_cfg.model.path).expanduser())


def _route_types(run_cfg: RunConfig, truth: Any, docs: list[Document]) -> Optional[dict[str, str]]:
    """debug.route_by_ground_truth (random-weight benchmarks): document id -> its true type."""
    if not run_cfg.debug.route_by_ground_truth:
        return None
    if truth is None:
        raise ValueError("debug.route_by_ground_truth=true needs data.ground_truth")
    keys = {doc.id: truth.match(doc.id) for doc in docs}
    return {doc_id: truth[key]["DOCUMENT_TYPE"] for doc_id, key in keys.items() if key is not None}


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


def _process(worker: "_Worker", todo: list[tuple[Document, int]], out_dir: Path,
             detected: Optional[dict[str, DocumentRecord]] = None,
             clock_start: Optional[float] = None) -> tuple[list[DocumentRecord], dict[str, Any]]:
    """Finish `todo` and write each record to this rank's part file. `detected` (shard=cost): phase-1
    records; their documents skip detection, and error records among them are written as they are.
    first_result_s counts from `clock_start` (default: now)."""
    ctx, progress, watchdog = worker.ctx, worker.progress, worker.watchdog
    stats: dict[str, Any] = {"rank": ctx.rank, "documents": len(todo), "busy_s": 0.0}
    if not todo:
        return [], stats  # idle rank: still joins every collective
    docs = [doc for doc, _ in todo]
    failed = [detected[doc.id] for doc in docs if detected is not None and not detected[doc.id].ok]
    to_run = [doc for doc in docs if detected is None or detected[doc.id].ok]
    pipeline = worker.pipeline() if to_run else None
    faults.at_point("work", ctx.rank)  # tests: model loaded, nothing flushed yet
    attempts = {doc.id: n for doc, n in todo}
    records: list[DocumentRecord] = []
    busy_start = time.perf_counter()
    clock_start = busy_start if clock_start is None else clock_start
    with outputs.PartWriter(out_dir, ctx.rank) as part:
        for record in itertools.chain(failed, _run_pipeline(pipeline, to_run, detected)):
            record.attempts = attempts[record.image]
            part.write(record)
            records.append(record)
            progress.advance()
            watchdog.beat(f"wrote record {len(records)}/{len(todo)} ({record.image})")
            faults.after_records(ctx.rank, len(records))
            if len(records) == 1:
                stats["first_result_s"] = round(time.perf_counter() - clock_start, 3)
    stats["busy_s"] = round(time.perf_counter() - busy_start, 3)
    return records, stats


def _run_pipeline(pipeline: Any, docs: list[Document],
                  detected: Optional[dict[str, DocumentRecord]]) -> Iterator[DocumentRecord]:
    if not docs:
        return iter(())
    return pipeline.process(docs) if detected is None else pipeline.process(docs, detected=detected)


class _Worker:
    """What one rank works with: config, model pipeline, progress and heartbeat. The model is loaded on
    first use, so a rank with nothing to do never loads it."""

    def __init__(self, run_cfg: RunConfig, ctx: dist.DistContext, schema: Schema, prompts: Any, truth: Any,
                 docs: list[Document], progress: Progress, watchdog: Watchdog) -> None:
        self.cfg, self.ctx, self.schema, self.prompts = run_cfg, ctx, schema, prompts
        self.progress, self.watchdog = progress, watchdog
        self.routes = _route_types(run_cfg, truth, docs)  # benchmarks: document id -> true type
        self.batch_size: Optional[int] = None
        self.stage_ctx: Optional[StageContext] = None
        self.load_model_s = 0.0
        self._pipeline: Any = None

    def pipeline(self) -> Any:
        if self._pipeline is None:
            start = time.perf_counter()
            self.watchdog.beat(f"loading the model from {self.cfg.model.path}")
            self._pipeline = self._build()
            self.load_model_s = round(time.perf_counter() - start, 3)
        return self._pipeline

    def _build(self) -> Any:
        cfg = self.cfg
        if cfg.model.family == "ocr":
            self.batch_size = 1
            self.progress.phase("extraction")
            return _ocr_pipeline(cfg, self.ctx, self.schema)
        model = load_model(cfg.model, self.ctx.device)
        self.batch_size = cfg.processing.batch_size or auto_batch_size(
            self.ctx.device, model, cfg.processing.max_new_tokens.detect, cfg.processing.max_tiles)
        self.stage_ctx = StageContext(model, self.schema, self.prompts, cfg.processing.max_new_tokens,
                                      cfg.processing.force_length)
        pipeline = _PhasedPipeline(self.stage_ctx, self.batch_size, cfg.processing.group_window, self.ctx.rank,
                                   LoadOptions(pdf_dpi=cfg.data.pdf_dpi), route_types=self.routes,
                                   grounding=_grounding(cfg, self.schema),
                                   shared_prefill=cfg.processing.shared_prefill)
        pipeline.progress, pipeline.watchdog = self.progress, self.watchdog
        return pipeline

    def cost_model(self, batch_size: int) -> CostModel:
        processing = self.cfg.processing
        return CostModel(self.schema, processing.max_new_tokens, processing.shard_cost, processing.max_tiles,
                         batch_size)

    def stats(self) -> dict[str, Any]:
        """Model loading, batch size and per-stage statistics (empty stages: the model never loaded)."""
        stats: dict[str, Any] = {"load_model_s": self.load_model_s}
        if self.batch_size is not None:
            stats["batch_size"] = self.batch_size
        stages = self.stage_ctx.stats.items() if self.stage_ctx is not None else ()
        stats["stages"] = {name: st.to_json() for name, st in stages}
        return stats


def _grounding(run_cfg: RunConfig, schema: Schema) -> Any:
    if not run_cfg.validation.grounding:
        return None
    from docvlm.pipeline.grounding import Grounding

    return Grounding(schema)


def _ocr_pipeline(run_cfg: RunConfig, ctx: dist.DistContext, schema: Schema) -> Any:
    """model=ocr: RapidOCR + layout rules on the CPU; ONNX Runtime threads = CPUs / local ranks."""
    from docvlm.ocr import OcrEngine
    from docvlm.pipeline.ocr_pipeline import OcrPipeline

    return OcrPipeline(OcrEngine(), schema, ctx.rank, LoadOptions(pdf_dpi=run_cfg.data.pdf_dpi))


class _PhasedPipeline(DocumentPipeline):
    """The pipeline, naming the stage it runs in the progress bar."""

    _PHASES = {"detect": "detection", "detect+extract": "detection+extraction", "extract": "extraction", "bank": "bank turns"}
    progress: Optional[Progress] = None
    watchdog: Optional[Watchdog] = None

    def _stage(self, stage: str, items: list, run_batch: Callable) -> None:
        if items and self.progress is not None and stage in self._PHASES:
            self.progress.phase(self._PHASES[stage])
        super()._stage(stage, items, run_batch)

    def _before_batch(self, stage: str, batch: list) -> None:
        if self.watchdog is not None:
            ids = ", ".join(item.doc.id for item in batch[:3]) + (", ..." if len(batch) > 3 else "")
            self.watchdog.beat(f"{self._PHASES.get(stage, stage)}: stage {stage}, batch of {len(batch)} ({ids})")
        super()._before_batch(stage, batch)



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
    if evaluation is not None:
        print(evaluation_table(evaluation), flush=True)
    return summary


def evaluation_table(evaluation: dict[str, Any]) -> str:
    """The evaluation in a few lines for the console (report.md has everything)."""
    lines = ["", "type            docs  macro F1  micro F1  doc F1 median"]
    rows = {**evaluation.get("per_type", {}), "ALL": evaluation["overall"]}
    for name, row in rows.items():
        lines.append(f"{name:<15} {row['documents']:>4}  {row['macro_f1']:8.3f}  {row['micro_f1']:8.3f}  "
                     f"{row['document_f1_median']:13.3f}")
    accuracy = evaluation["overall"].get("type_accuracy")
    if accuracy is not None:
        lines.append(f"document type accuracy: {accuracy:.3f}")
    return "\n".join(lines)
