"""`run(cfg)`: the whole job as every rank sees it. launch.py is a thin Hydra shell around this.

  validate config -> join the process group -> find documents (same list on every rank)
  -> work(): this rank's contiguous share, minus what earlier runs already recorded (resume),
     through the model pipeline into its part file, flushed per record (docvlm/work.py)
  -> gather_object to rank 0 -> rank 0 merges in input order, writes results, evaluates, reports
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from docvlm import dist, faults, fingerprint, outputs
from docvlm.config import RunConfig, to_run_config
from docvlm.errors import UserError
from docvlm.inputs import Document, discover
from docvlm.lock import OutputLock
from docvlm.logs import setup_logging
from docvlm.ground_truth import GroundTruth, load_ground_truth
from docvlm.outcome import Outcome
from docvlm.pipeline.build import check_model
from docvlm.progress import Progress
from docvlm.prompts import Prompts, load_prompts
from docvlm.records import DocumentRecord
from docvlm.schema import Schema, load_schema
from docvlm.watchdog import Watchdog
from docvlm.work import work

log = logging.getLogger(__name__)
_job_numbers = itertools.count()  # identical sequence on every rank: names this job's progress counter


def run(cfg: DictConfig | RunConfig, snapshot: Optional[dict[str, Any]] = None) -> Optional[dict[str, Any]]:
    """Run the job; returns the summary on rank 0, None on other ranks.

    A failure on any rank raises JobFailed on EVERY rank at the same point (see `dist.together`), so no
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
    dist.together(ctx, lambda: _check_output_dir(run_cfg, out_dir))  # before any file is written there
    setup_logging(ctx.rank, out_dir, run_cfg.debug.log_level)
    with OutputLock(out_dir) as lock:  # rank 0 takes it in _prepare_output; released however the job ends
        return _job(run_cfg, ctx, schema, prompts, out_dir, lock, snapshot, job)


def _job(run_cfg: RunConfig, ctx: dist.DistContext, schema: Schema, prompts: Prompts, out_dir: Path,
         lock: OutputLock, snapshot: dict[str, Any], job: int) -> Optional[dict[str, Any]]:
    started = time.perf_counter()
    settings = fingerprint.run_settings(run_cfg)
    _rank0_decides(ctx, lock.acquire)  # a second run into output.dir stops here, before it deletes anything
    dist.together(ctx, lambda: _prepare_output(run_cfg, ctx, out_dir))
    dist.together(ctx, lambda: _check_settings(ctx, out_dir, settings))
    dist.together(ctx, lambda: _prepare_samples(run_cfg, ctx))
    dist.together(ctx, lambda: _prepare_tiny_model(run_cfg, ctx))
    truth, docs = dist.together(ctx, lambda: _find_inputs(run_cfg, schema, out_dir))

    progress = Progress(ctx, total=len(docs), key=f"docvlm/progress/{job}")
    hang_timeout_s = run_cfg.processing.hang_timeout_s or run_cfg.processing.dist_timeout_s
    watchdog = Watchdog(ctx, hang_timeout_s, key=f"docvlm/heartbeat/{job}")
    try:
        kept, new_records, rank_stats = dist.together(
            ctx, lambda: work(run_cfg, ctx, schema, prompts, docs, truth, out_dir, progress, watchdog))
        progress.phase("merge")
        faults.at_point("merge", ctx.rank)  # tests: every part file complete, nothing merged yet
        gather_start = time.perf_counter()
        payload = {"records": [r.to_json() for r in kept + new_records], "earlier": [r.image for r in kept],
                   "stats": rank_stats}
        gathered = dist.collective(lambda: dist.gather_to_rank0(payload, ctx))
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

    summary = dist.together(ctx, finish)  # multirun: every rank starts the next job together
    _rank0_decides(ctx, lambda: _check_failures(run_cfg, summary, out_dir))
    return summary


def _rank0_decides(ctx: dist.DistContext, check: Callable[[], None]) -> None:
    """`check` runs on rank 0 only; a UserError it raises is raised on EVERY rank with the same line,
    so the job stops everywhere with the user's message rather than 'rank 0: ...'."""
    def attempt() -> Optional[str]:
        if not ctx.is_main:
            return None
        try:
            check()
        except UserError as err:
            return str(err)
        return None

    refusal = dist.together(ctx, attempt)
    refusal = dist.collective(lambda: dist.broadcast_from_rank0(refusal, ctx))
    if refusal is not None:
        raise UserError(refusal)


def _check_failures(run_cfg: RunConfig, summary: Optional[dict[str, Any]], out_dir: Path) -> None:
    """processing.fail_on_errors=true: a failed document makes the exit status non-zero, once every
    result is written (the default records failures and exits 0: the run's job is to record every document)."""
    if run_cfg.processing.fail_on_errors and summary is not None and summary["errors"]:
        raise UserError(f"{summary['errors']} of {summary['documents']} documents failed and "
                        f"processing.fail_on_errors=true (their records are in {out_dir / 'results.jsonl'})")


def _find_inputs(run_cfg: RunConfig, schema: Schema, out_dir: Path) -> tuple[Optional[GroundTruth], list[Document]]:
    truth = _load_truth(run_cfg, schema)  # every rank checks: a bad file fails everywhere
    # An output folder inside the data folder must not feed its own results back in as documents.
    found = discover(run_cfg.data.dir, run_cfg.data.extensions, exclude=[out_dir])
    if truth is not None:  # rows that match no document: one clear line now, not an empty evaluation later
        truth.check_documents([d.id for d in found], run_cfg.data.dir, warn=dist.env_world()[0] == 0)
    docs = found[: run_cfg.debug.limit]
    check_model(run_cfg)  # a missing model is a clear error before any GPU work
    return truth, docs


def _share_cpu_threads(local_ranks: int) -> None:
    """torchrun runs every rank with OMP_NUM_THREADS=1 when it starts more than one, which makes image
    preprocessing single-threaded (measured: 2 ranks slower than 1 on 4xH100). Unless the user chose
    DOCVLM_CPU_THREADS, the ranks of a node share the cores this process may run on."""
    chosen = os.environ.get("DOCVLM_CPU_THREADS")
    threads = int(chosen) if chosen else max(1, _usable_cores() // max(1, local_ranks))
    torch.set_num_threads(threads)


def _usable_cores() -> int:
    """The cores this process may run on: Slurm (cgroups, --cpus-per-task) and taskset restrict them,
    and os.cpu_count() still counts the whole node."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _local_world_size(world: int) -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE", world))


def _snapshot(cfg: DictConfig | RunConfig) -> dict[str, Any]:
    node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def _check_output_dir(run_cfg: RunConfig, out_dir: Path) -> None:
    """output.dir is a writable folder, and not the data folder (the next run would take this run's
    logs and plots for documents). Every rank checks: each can say so itself."""
    data_dir = Path(run_cfg.data.dir)
    if out_dir.resolve() == data_dir.resolve():
        raise UserError(f"output.dir={out_dir} is the data folder (data.dir={data_dir}): the next run would take "
                        "this run's files for documents; choose another output.dir (a folder inside data.dir is fine)")
    outputs.check_writable(out_dir)


def _prepare_output(run_cfg: RunConfig, ctx: dist.DistContext, out_dir: Path) -> None:
    """output.overwrite=true: rank 0 deletes the files docvlm owns there (it holds the lock by now)."""
    if not ctx.is_main:
        return
    restarted = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"  # an elastic restart resumes
    if run_cfg.output.overwrite and not restarted:
        outputs.clean_owned(out_dir)
        setup_logging(ctx.rank, out_dir, run_cfg.debug.log_level)  # its log folder was just removed
    # (the caller's dist.together keeps the other ranks from reading old part files while rank 0 deletes them)


def _check_settings(ctx: dist.DistContext, out_dir: Path, settings: dict[str, Any]) -> None:
    """Records of other settings under output.dir stop the run (every rank says so); rank 0 then
    writes this run's settings. Safe beside the other ranks' check: it writes only what they compare equal."""
    fingerprint.check_output_settings(out_dir, settings)
    if ctx.is_main:
        fingerprint.write_settings(out_dir, settings)


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


def _load_truth(run_cfg: RunConfig, schema: Schema) -> Optional[GroundTruth]:
    if not run_cfg.data.ground_truth:
        return None
    return load_ground_truth(run_cfg.data.ground_truth, schema)


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


def _finish(run_cfg: RunConfig, schema: Schema, truth: Optional[GroundTruth], records: list[DocumentRecord],
            gathered: list[dict[str, Any]], out_dir: Path, snapshot: dict[str, Any],
            elapsed_s: float, gather_s: float, world: int) -> dict[str, Any]:
    from docvlm.summary import build_summary

    evaluation = None
    record_dicts = [r.to_json() for r in records]
    if truth is not None:
        from docvlm.evaluate import evaluate
        from docvlm.report import write_report

        model = run_cfg.model
        evaluation = evaluate(record_dicts, truth, schema, elapsed_s=elapsed_s,
                              processed=sum(g["stats"]["documents"] for g in gathered),  # as summary.json
                              model=model.name, random_weights=model.tiny or model.random_weights)
        outputs.write_json(out_dir / "evaluation.json", evaluation)
        write_report(evaluation, record_dicts, out_dir)
        records = [DocumentRecord.from_json(r) for r in record_dicts]  # now with per-document scores
    outputs.write_results(out_dir, records, schema.all_field_names)
    summary = build_summary(run_cfg, records, [g["stats"] for g in gathered], evaluation,
                            elapsed_s=elapsed_s, gather_s=gather_s, world=world, snapshot=snapshot,
                            earlier={image for part in gathered for image in part["earlier"]})
    outputs.write_json(out_dir / "summary.json", summary)
    log.info("wrote %s (%d documents, %.2f documents/s)", out_dir, len(records), summary["documents_per_s"])
    if evaluation is not None:
        print(evaluation_table(evaluation), flush=True)
    outcome = Outcome.of(records, {image for part in gathered for image in part["earlier"]})
    print("\n".join(["", *outcome.lines(out_dir, run_cfg.model)]), flush=True)
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
