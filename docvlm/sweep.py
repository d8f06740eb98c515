"""Hydra multirun (`launch.py -m ...`): run each job of the sweep, keep going past a failed one, and
end with a table comparing the jobs (rank 0 prints it and writes <sweep dir>/sweep.md).

Every rank runs every job in the same order. A job that fails raises on every rank at the same point
(docvlm.run keeps the ranks in step), so recording the failure here and going on is safe. A broken
process group is different: the ranks may no longer be in step, so that ends the sweep.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from docvlm.errors import debug_requested, user_message
from docvlm.outputs import atomic_write_text

log = logging.getLogger(__name__)

SWEEP_FILE = "sweep.md"


@dataclass
class JobOutcome:
    num: int
    overrides: list[str]
    folder: str  # the job's output dir, relative to the sweep dir
    error: Optional[str] = None  # "Type: message" when the job failed
    summary: Optional[dict[str, Any]] = None  # summary.json's content (rank 0 only)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Sweep:
    """The jobs of one multirun as this rank ran them."""

    dir: Optional[Path] = None
    jobs: list[JobOutcome] = field(default_factory=list)

    def run_job(self, run: Callable[[Any], Optional[dict[str, Any]]], cfg: Any, num: int,
                overrides: list[str], sweep_dir: str, output_dir: str) -> Optional[dict[str, Any]]:
        self.dir = Path(sweep_dir).absolute()
        outcome = JobOutcome(num, overrides, os.path.relpath(output_dir, self.dir))
        try:
            outcome.summary = run(cfg)
        except Exception as err:  # noqa: BLE001 - one failed job must not end the sweep
            if _process_group_broken(err):
                raise
            message = user_message(err)
            if message is not None and not debug_requested():  # the user's mistake: its line, no traceback
                log.error("job %d (%s) failed: %s", num, " ".join(overrides), message)
                outcome.error = message
            else:
                log.error("job %d (%s) failed: %s: %s", num, " ".join(overrides), type(err).__name__, err,
                          exc_info=True)
                outcome.error = f"{type(err).__name__}: {err}"
        self.jobs.append(outcome)
        return outcome.summary

    def finish(self, is_main: Optional[bool] = None) -> int:
        """After the last job: rank 0 prints and writes the table. Returns the exit status (1: a job failed)."""
        if not self.jobs:
            return 0
        is_main = os.environ.get("RANK", "0") == "0" if is_main is None else is_main
        if is_main and self.dir is not None:
            table = summary_table(self.jobs)
            atomic_write_text(self.dir / SWEEP_FILE, f"# Sweep: {len(self.jobs)} jobs\n\n{table}\n")
            print(f"\nSweep summary ({self.dir / SWEEP_FILE}):\n{table}", flush=True)
        failed = [job.num for job in self.jobs if not job.ok]
        if failed:
            log.error("%d of %d sweep jobs failed: %s", len(failed), len(self.jobs), failed)
        return 1 if failed else 0


def summary_table(jobs: list[JobOutcome]) -> str:
    """Markdown table: one row a job; F1 columns only when some job was evaluated against ground truth."""
    varying = _varying_keys(jobs)
    evaluated = any(_overall(job) for job in jobs)
    header = ["job", "folder", "overrides", "status", "documents", "errors", "documents/s"]
    header += ["field F1 micro", "field F1 macro", "type accuracy"] if evaluated else []
    rows = [_row(job, varying, evaluated) for job in jobs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _row(job: JobOutcome, varying: set[str], evaluated: bool) -> list[Any]:
    shown = " ".join(o for o in job.overrides if o.split("=", 1)[0] in varying)
    s = job.summary or {}
    row = [job.num, job.folder, shown, "ok" if job.ok else f"FAILED: {job.error}", s.get("documents", ""),
           s.get("errors", ""), s.get("documents_per_s", "")]
    if evaluated:
        overall = _overall(job)
        row += [overall.get("micro_f1", ""), overall.get("macro_f1", ""), overall.get("type_accuracy", "")]
    return row


def _overall(job: JobOutcome) -> dict[str, Any]:
    evaluation = (job.summary or {}).get("evaluation") or {}
    return evaluation.get("overall") or {}


def _varying_keys(jobs: list[JobOutcome]) -> set[str]:
    """Override keys whose value differs between jobs (all keys when every job has the same ones)."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for override in job.overrides:
            key, _, value = override.partition("=")
            values.setdefault(key, set()).add(value)
    varying = {key for key, seen in values.items() if len(seen) > 1}
    return varying or set(values)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = " ".join(str(value).split()).replace("|", "\\|")  # one line, no column breaks
    return text if len(text) <= 160 else text[:157] + "..."


def _process_group_broken(err: BaseException) -> bool:
    """A collective timed out or a peer vanished: the ranks may be out of step, so the sweep must end."""
    import torch.distributed as torch_dist

    from docvlm.dist import RanksOutOfStep

    return isinstance(err, (RanksOutOfStep, torch_dist.DistError))
