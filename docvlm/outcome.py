"""The run's last words on the console (rank 0): documents done, failed (by kind, the first few with
their reasons) and skipped because an earlier run recorded them; whether the answers mean anything.

A failed document is a record, not a crash: the run's job is to record every document, so by default
the exit status stays 0; `processing.fail_on_errors=true` makes it non-zero (docvlm/run.py).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from docvlm.config import ModelConfig
from docvlm.records import DocumentRecord

SHOWN_FAILURES = 5  # file names with reasons on the console; results.jsonl has every one


@dataclass
class Outcome:
    total: int
    done: int  # answered in this run
    skipped: int  # answered by an earlier run (resume), not processed again
    failed: list[DocumentRecord]  # error records, this run's and those kept from earlier runs

    @classmethod
    def of(cls, records: list[DocumentRecord], earlier: set[str]) -> "Outcome":
        failed = [r for r in records if not r.ok]
        skipped = sum(r.ok and r.image in earlier for r in records)
        return cls(len(records), len(records) - len(failed) - skipped, skipped, failed)

    def lines(self, out_dir: Path, model: ModelConfig) -> list[str]:
        lines = [f"{self.total} documents: {self.done} done, {len(self.failed)} failed, {self.skipped} skipped "
                 f"(recorded by an earlier run); results in {out_dir}"]
        if self.failed:
            kinds = Counter(r.error["kind"] for r in self.failed if r.error)
            lines.append("failed: " + ", ".join(f"{kind} {n}" for kind, n in kinds.most_common()))
            lines += [f"  {r.image}: {_reason(r)}" for r in self.failed[:SHOWN_FAILURES]]
            if len(self.failed) > SHOWN_FAILURES:
                lines.append(f"  ... {len(self.failed) - SHOWN_FAILURES} more: the \"error\" column of results.csv")
        if random_weights(model):
            lines.append(f"note: model {model.name} has random weights: its answers are meaningless "
                         "(it shows the machinery works, not what a real model extracts)")
        return lines


def _reason(record: DocumentRecord, width: int = 160) -> str:
    error = record.error or {}
    message = str(error.get("message", ""))
    message = message.removeprefix(f"{record.image}: ")  # input errors name the document already
    text = f"{error.get('kind')} ({error.get('stage')}): {message}"
    return text if len(text) <= width else text[: width - 3] + "..."


def random_weights(model: ModelConfig) -> bool:
    """The tiny demo models (tiny_*) and the benchmarks' random full-size ones answer noise."""
    return model.tiny or model.random_weights or model.name.startswith("tiny_")
