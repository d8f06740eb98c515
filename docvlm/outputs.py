"""Files under output.dir: per-rank part files (crash-safe, resumable) and rank 0's final artifacts.

parts/rank-XXXXX.jsonl  append-only, one JSON record a line, flushed per record
results.jsonl           one record per input document, input order
results.csv             one row per document, one column per schema field
summary.json            counts, timings, throughput, config snapshot
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from docvlm.errors import UserError
from docvlm.records import DocumentRecord

log = logging.getLogger(__name__)

PARTS_DIR = "parts"
# Everything this project writes into output.dir; `output.overwrite=true` deletes these and nothing else.
OWNED_FILES = ("results.jsonl", "results.csv", "summary.json", "evaluation.json", "report.md", "sweep.md")
OWNED_DIRS = (PARTS_DIR, "plots", "logs", ".hydra")


def check_writable(out_dir: Path) -> None:
    """Fail at start (before any model loads) if output.dir cannot be created or written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-test-"):
            pass
    except OSError as err:
        raise UserError(f"output.dir={out_dir} is not a writable folder ({err.strerror or err}): "
                        "choose another output.dir") from err


def clean_owned(out_dir: Path) -> None:
    """output.overwrite=true: remove the files docvlm owns in out_dir, leave anything else alone."""
    for name in OWNED_FILES:
        (out_dir / name).unlink(missing_ok=True)
    for name in OWNED_DIRS:
        if (out_dir / name).is_dir():
            shutil.rmtree(out_dir / name)


class PartWriter:
    """Appends this rank's records to parts/rank-XXXXX.jsonl, flushed per record."""

    def __init__(self, out_dir: Path, rank: int) -> None:
        self.path = out_dir / PARTS_DIR / f"rank-{rank:05d}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = self.path.open("a", encoding="utf-8")
        if _ends_mid_line(self.path):
            self._file.write("\n")  # a crash cut the last record short: never glue the next one onto it

    def write(self, record: DocumentRecord) -> None:
        try:
            self._file.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
            self._file.flush()
            os.fsync(self._file.fileno())  # a kill -9 right after this loses nothing
        except OSError as err:  # disk full, quota: say where (a cut line is redone on resume)
            raise OSError(f"cannot write {self.path}: {err.strerror or err}") from err

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_parts(out_dir: Path, belongs: Callable[[DocumentRecord], bool] = lambda record: True
               ) -> dict[str, DocumentRecord]:
    """Records already written by any rank of any earlier run, by document id; the latest attempt wins
    (part files of another world size hold older attempts under other rank numbers).

    `belongs`: records for which it is false (another version of the document, other settings: see
    docvlm/fingerprint.py) are left out, so they are never reused and never outrank a record that belongs.
    A line that does not parse (a record cut short by a crash) is skipped: that document is redone.
    """
    done: dict[str, DocumentRecord] = {}
    for part in sorted((out_dir / PARTS_DIR).glob("rank-*.jsonl")):
        with part.open(encoding="utf-8", errors="replace") as f:
            for line_no, line in enumerate(f, 1):
                try:
                    record = DocumentRecord.from_json(json.loads(line))
                except (json.JSONDecodeError, TypeError) as err:
                    log.warning("%s:%d: ignoring unreadable record (%s)", part, line_no, err)
                    continue
                if not belongs(record):
                    continue
                prior = done.get(record.image)
                if prior is None or record.attempts >= prior.attempts:
                    done[record.image] = record  # a retry outranks an earlier try in any rank's file
    return done


def _ends_mid_line(path: Path) -> bool:
    if path.stat().st_size == 0:
        return False
    with path.open("rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) != b"\n"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file + rename so a reader never sees half a file. On failure (disk full, a
    read-only folder, text that cannot be encoded) the temp file is removed and the error names `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OSError(f"cannot write {path}: {err.strerror or err}") from err
        raise


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_results(out_dir: Path, records: Iterable[DocumentRecord], field_names: list[str]) -> None:
    records = list(records)
    atomic_write_text(
        out_dir / "results.jsonl",
        "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records),
    )
    atomic_write_text(out_dir / "results.csv", _results_csv(records, field_names))


def _results_csv(records: list[DocumentRecord], field_names: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image", "document_type", *field_names, "error", "total_s"])
    for r in records:
        error = f"{r.error['kind']}: {r.error['message']}" if r.error else ""
        writer.writerow([r.image, r.document_type or "", *(r.fields.get(f, "") for f in field_names),
                         error, r.timings.get("total_s", "")])
    return buf.getvalue()


def read_results(path: Path) -> list[dict[str, Any]]:
    """Load a results.jsonl (e.g. to evaluate it again later)."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
