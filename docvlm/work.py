"""One rank's share of the job: which documents it takes, the pipeline, its part file.

  processing.shard=count: an equal-count contiguous shard, detected and extracted here;
  processing.shard=cost: detect an equal-count share first, all-gather the detections, then take a
    contiguous range of about equal estimated cost (every rank computes the same ranges).
Either way, documents recorded by an earlier run are kept (resume), each new record goes to this
rank's part file as it is made, and the pipeline (docvlm/pipeline/build.py: the VLM's or the OCR's)
is built on first use (an idle rank never loads a model).
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from docvlm import dist, faults, fingerprint, outputs
from docvlm.config import RunConfig
from docvlm.ground_truth import GroundTruth
from docvlm.inputs import Document
from docvlm.pipeline.build import build_pipeline
from docvlm.pipeline.cost import CostModel
from docvlm.pipeline.protocol import DetectingPipeline, Pipeline
from docvlm.progress import Progress
from docvlm.prompts import Prompts
from docvlm.records import DocumentRecord
from docvlm.schema import Schema
from docvlm.watchdog import Watchdog

log = logging.getLogger(__name__)


def work(run_cfg: RunConfig, ctx: dist.DistContext, schema: Schema, prompts: Prompts, docs: list[Document],
         truth: Optional[GroundTruth], out_dir: Path, progress: Progress,
         watchdog: Watchdog) -> tuple[list[DocumentRecord], list[DocumentRecord], dict[str, Any]]:
    """This rank's share: (records kept from earlier runs, new records, stats)."""
    worker = Worker(run_cfg, ctx, schema, prompts, truth, docs, progress, watchdog)
    try:
        if run_cfg.processing.shard == "cost":
            return _work_by_cost(worker, docs, out_dir)
        return _work_by_count(worker, docs, out_dir)
    finally:
        watchdog.waiting()  # done (or failed): waiting for the other ranks is not a hang


def _work_by_count(worker: "Worker", docs: list[Document],
                   out_dir: Path) -> tuple[list[DocumentRecord], list[DocumentRecord], dict[str, Any]]:
    """processing.shard=count: an equal-count contiguous shard, detected and extracted here."""
    ctx = worker.ctx
    mine = [docs[i] for i in dist.shard_range(len(docs), ctx.rank, ctx.world_size)]
    kept, todo = _split_resume(mine, worker.recorded(docs, out_dir), worker.cfg.processing.max_retries)
    log.info("%d documents in all; this rank: %d (%d recorded earlier, %d to do)", len(docs), len(mine), len(kept), len(todo))
    worker.progress.resumed(len(kept))
    new_records, stats = _process(worker, todo, out_dir)
    stats.update(worker.stats(), shard="count")
    if worker.detects_apart():  # the same estimate as shard=cost, from the types found, to compare
        model = worker.cost_model(worker.batch_size or 1, worker.bank_batch_size)
        stats["estimated_cost"] = round(sum(model.cost(r) for r in new_records), 3)
    return kept, new_records, stats


def _work_by_cost(worker: "Worker", docs: list[Document],
                  out_dir: Path) -> tuple[list[DocumentRecord], list[DocumentRecord], dict[str, Any]]:
    """processing.shard=cost: detect an equal-count shard, share the detections with every rank, then
    extract a contiguous range of about equal estimated cost (every rank computes the same ranges).

    Resume: documents recorded by an earlier run are neither detected nor extracted again; they cost 0,
    and the rank whose range holds one passes its record on.
    """
    ctx, cfg = worker.ctx, worker.cfg
    started = time.perf_counter()
    # Inside dist.together: a rank that fails here must not skip the all-gather the others wait in.
    recorded, todo, detections, detect_s = dist.together(ctx, lambda: _detect_share(worker, docs, out_dir))
    payload = {"records": [r.to_json() for r in detections], "batch_size": worker.batch_size,
               "bank_batch_size": worker.bank_batch_size}
    gathered = dist.collective(lambda: dist.all_gather(payload, ctx))
    worker.watchdog.beat("splitting the documents by estimated cost")
    detected = {rec["image"]: DocumentRecord.from_json(rec) for part in gathered for rec in part["records"]}
    costs = _estimate_costs(worker, docs, detected, *_cost_batch_sizes(cfg, gathered))
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


def _detect_share(worker: "Worker", docs: list[Document], out_dir: Path) -> tuple[
        list[DocumentRecord], list[tuple[Document, int]], list[DocumentRecord], float]:
    """shard=cost, phase 1: what earlier runs recorded (all documents: recorded, to do), then detection
    of this rank's equal-count share of the documents to do: their records (error records for
    unreadable files) and the seconds it took, model loading excluded."""
    try:
        ctx = worker.ctx
        recorded, todo = _split_resume(docs, worker.recorded(docs, out_dir), worker.cfg.processing.max_retries)
        share = {docs[i].id for i in dist.shard_range(len(docs), ctx.rank, ctx.world_size)}
        mine = [doc for doc, _ in todo if doc.id in share]
        if not mine:
            return recorded, todo, [], 0.0
        pipeline = worker.detecting_pipeline()
        start = time.perf_counter()
        records = []
        for record in pipeline.detect_only(mine):
            records.append(record)
            worker.watchdog.beat(f"detected {len(records)}/{len(mine)} ({record.image})")
        return recorded, todo, records, time.perf_counter() - start
    finally:
        worker.watchdog.waiting()  # the other ranks may still be detecting: not a hang


def _cost_batch_sizes(run_cfg: RunConfig, gathered: list[dict[str, Any]]) -> tuple[int, int]:
    """The batch sizes (documents, bank statements) in the cost estimate: the same on every rank, which
    auto sizes (free memory) may not be, so the smallest any rank reported."""
    def smallest(key: str) -> int:
        return run_cfg.processing.batch_size or min((part[key] for part in gathered if part[key]), default=1)

    return smallest("batch_size"), smallest("bank_batch_size")


def _estimate_costs(worker: "Worker", docs: list[Document], detected: dict[str, DocumentRecord],
                    batch_size: int, bank_batch_size: int) -> list[float]:
    """Each document's work left after detection (seconds); 0 for those recorded by an earlier run."""
    model = worker.cost_model(batch_size, bank_batch_size)
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


def _process(worker: "Worker", todo: list[tuple[Document, int]], out_dir: Path,
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
    if to_run:
        worker.pipeline()  # loaded before the fault point below
    faults.at_point("work", ctx.rank)  # tests: model loaded, nothing flushed yet
    attempts = {doc.id: n for doc, n in todo}
    stamps = {doc.id: doc.fingerprint for doc in docs}
    records: list[DocumentRecord] = []
    busy_start = time.perf_counter()
    clock_start = busy_start if clock_start is None else clock_start
    with outputs.PartWriter(out_dir, ctx.rank) as part:
        for record in itertools.chain(failed, _run_pipeline(worker, to_run, detected)):
            record.attempts = attempts[record.image]
            record.document_fingerprint, record.settings_fingerprint = stamps[record.image], worker.settings
            part.write(record)
            records.append(record)
            progress.advance()
            watchdog.beat(f"wrote record {len(records)}/{len(todo)} ({record.image})")
            faults.after_records(ctx.rank, len(records))
            if len(records) == 1:
                stats["first_result_s"] = round(time.perf_counter() - clock_start, 3)
    stats["busy_s"] = round(time.perf_counter() - busy_start, 3)
    return records, stats


def _run_pipeline(worker: "Worker", docs: list[Document],
                  detected: Optional[dict[str, DocumentRecord]]) -> Iterator[DocumentRecord]:
    if not docs:
        return iter(())
    if detected is None:
        return worker.pipeline().process(docs)
    return worker.detecting_pipeline().process(docs, detected=detected)


class Worker:
    """What one rank works with: config, pipeline, progress and heartbeat. The pipeline (and so the
    model) is built on first use, so a rank with nothing to do never loads it."""

    def __init__(self, run_cfg: RunConfig, ctx: dist.DistContext, schema: Schema, prompts: Prompts,
                 truth: Optional[GroundTruth], docs: list[Document], progress: Progress, watchdog: Watchdog) -> None:
        self.cfg, self.ctx, self.schema, self.prompts = run_cfg, ctx, schema, prompts
        self.progress, self.watchdog = progress, watchdog
        self.routes = _route_types(run_cfg, truth, docs)  # benchmarks: document id -> true type
        self.settings = fingerprint.digest(fingerprint.run_settings(run_cfg))  # stamped on every record
        self.load_model_s = 0.0
        self._pipeline: Optional[Pipeline] = None

    def recorded(self, docs: list[Document], out_dir: Path) -> dict[str, DocumentRecord]:
        """Records of earlier runs that still belong to this one: same document file, same settings."""
        stamps = {doc.id: doc.fingerprint for doc in docs}

        def belongs(record: DocumentRecord) -> bool:
            return (record.settings_fingerprint == self.settings
                    and record.document_fingerprint == stamps.get(record.image))

        return outputs.read_parts(out_dir, belongs)

    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            start = time.perf_counter()
            self.watchdog.beat(f"loading the model from {self.cfg.model.path}")
            self._pipeline = build_pipeline(self.cfg, self.ctx, self.schema, self.prompts, self.progress,
                                            self.watchdog, route_types=self.routes)
            self.load_model_s = round(time.perf_counter() - start, 3)
        return self._pipeline

    def detecting_pipeline(self) -> DetectingPipeline:
        """The pipeline, for processing.shard=cost (config validation refuses it for a pipeline without
        a detection of its own)."""
        pipeline = self.pipeline()
        if not isinstance(pipeline, DetectingPipeline):
            raise RuntimeError(f"model.family={self.cfg.model.family} has no separate detection for "
                               "processing.shard=cost")
        return pipeline

    def detects_apart(self) -> bool:
        """Whether the pipeline, once built, could run under shard=cost (so its cost estimate means something)."""
        return isinstance(self._pipeline, DetectingPipeline)

    @property
    def batch_size(self) -> Optional[int]:
        return self._pipeline.batch_size if self._pipeline is not None else None

    @property
    def bank_batch_size(self) -> Optional[int]:
        return self._pipeline.bank_batch_size if self._pipeline is not None else None

    def cost_model(self, batch_size: int, bank_batch_size: Optional[int] = None) -> CostModel:
        processing = self.cfg.processing
        return CostModel(self.schema, processing.max_new_tokens, processing.shard_cost, processing.max_tiles,
                         batch_size, bank_batch_size)

    def stats(self) -> dict[str, Any]:
        """Model loading, batch size and per-stage statistics (empty stages: the model never loaded)."""
        stats: dict[str, Any] = {"load_model_s": self.load_model_s}
        if self._pipeline is not None:
            stats["batch_size"] = self._pipeline.batch_size
            stats["bank_batch_size"] = self._pipeline.bank_batch_size
        stats["stages"] = self._pipeline.stage_stats() if self._pipeline is not None else {}
        return stats


def _route_types(run_cfg: RunConfig, truth: Optional[GroundTruth],
                 docs: list[Document]) -> Optional[dict[str, str]]:
    """debug.route_by_ground_truth (random-weight benchmarks): document id -> its true type."""
    if not run_cfg.debug.route_by_ground_truth:
        return None
    if truth is None:
        raise ValueError("debug.route_by_ground_truth=true needs data.ground_truth")
    keys = {doc.id: truth.match(doc.id) for doc in docs}
    return {doc_id: truth[key]["DOCUMENT_TYPE"] for doc_id, key in keys.items() if key is not None}

