"""Ground truth: load a CSV or JSONL file, check it, and find the truth of a document by its file name.

CSV: one row per image; a key column (`image_file`, `filename`, `image_name` or `file`), a
`DOCUMENT_TYPE` column giving the TRUE type, one column per field; `NOT_FOUND` (or empty) where a
field does not apply.
JSONL: one object per line with a key, `DOCUMENT_TYPE` and the fields of its type. List values may be
JSON arrays; they are joined with the schema's list separator.

Values are kept as written: scoring passes truth and prediction through the same normaliser.
Every problem is a ValueError naming the file, the line and what is wrong, raised before any model work.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from docvlm.normalize import normalize_value, split_list
from docvlm.schema import Schema

log = logging.getLogger(__name__)

KEY_COLUMNS = ("image_file", "filename", "image_name", "file", "image")  # preference order
TYPE_COLUMN = "DOCUMENT_TYPE"
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")

Truth = dict[str, str]  # FIELD -> value as written; DOCUMENT_TYPE canonical


@dataclass
class GroundTruth(Mapping[str, Truth]):
    """Truth records by key (the file name as written in the ground-truth file).

    `match(image)` finds the key for a result's image path: exact relative path, then base name, then stem.
    """

    path: Path
    rows: dict[str, Truth]
    _by_name: dict[str, list[str]] = field(init=False, repr=False)
    _by_stem: dict[str, list[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name, self._by_stem = {}, {}
        for key in self.rows:
            self._by_name.setdefault(PurePosixPath(key).name, []).append(key)
            self._by_stem.setdefault(PurePosixPath(key).stem, []).append(key)

    def __getitem__(self, key: str) -> Truth:
        return self.rows[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def match(self, image: str) -> str | None:
        """The key of `image`'s truth, or None (also when a name or stem is shared by several rows)."""
        path = PurePosixPath(_clean_key(image))
        if str(path) in self.rows:
            return str(path)
        for index, part in ((self._by_name, path.name), (self._by_stem, path.stem)):
            keys = index.get(part, [])
            if len(keys) == 1:
                return keys[0]
            if len(keys) > 1:
                log.warning("%s: %r matches several ground-truth rows %s; not scored", self.path, image, keys)
                return None
        return None


def load_ground_truth(path: str | Path, schema: Schema) -> GroundTruth:
    """Read and check a CSV or JSONL ground-truth file (raises ValueError naming file, line, problem)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"ground truth file not found: {path}")
    entries = _read_entries(path)
    rows: dict[str, Truth] = {}
    first_line: dict[str, int] = {}
    for line_no, entry in entries:
        key, truth = _check_entry(entry, schema, f"{path}:{line_no}")
        if key in rows:
            raise ValueError(f"{path}:{line_no}: duplicate entry for {key!r} (first on line {first_line[key]})")
        rows[key], first_line[key] = truth, line_no
    if not rows:
        raise ValueError(f"{path}: no ground-truth rows")
    return GroundTruth(path, rows)


def _read_entries(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row or record) for each entry of the file, by its format."""
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + JSONL_SUFFIXES:
        raise ValueError(f"{path}: unsupported ground-truth format {suffix!r}; use .csv or .jsonl")
    try:
        return _read_csv(path) if suffix in CSV_SUFFIXES else _read_jsonl(path)
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None


def _read_csv(path: Path) -> list[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, strict=True)
        try:
            header = _csv_header(next(reader, None), path)
            entries = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # blank line
                if len(row) != len(header):
                    raise ValueError(f"{path}:{reader.line_num}: {len(row)} cells, the header has {len(header)}")
                entries.append((reader.line_num, dict(zip(header, row))))
        except csv.Error as err:
            raise ValueError(f"{path}:{reader.line_num}: malformed CSV ({err})") from None
    return entries


def _csv_header(header: list[str] | None, path: Path) -> list[str]:
    if not header:
        raise ValueError(f"{path}:1: empty file, expected a header row")
    header = [h.strip() for h in header]
    seen = [h.upper() for h in header]
    repeated = sorted({h for h in header if seen.count(h.upper()) > 1})
    if repeated:
        raise ValueError(f"{path}:1: column(s) {', '.join(repeated)} appear more than once")
    return header


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    entries = []
    with path.open(encoding="utf-8-sig") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line.strip())
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: invalid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(entry, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object, got {type(entry).__name__}")
            entries.append((line_no, entry))
    return entries


def _check_entry(entry: dict[str, Any], schema: Schema, where: str) -> tuple[str, Truth]:
    """Validate one row/record; return its key and its type's fields (as strings)."""
    by_upper = {str(k).strip().upper(): k for k in entry}
    key = _find_key(entry, where)
    if TYPE_COLUMN not in by_upper:
        raise ValueError(f"{where}: missing {TYPE_COLUMN} (the true document type)")
    raw_type = _as_text(entry[by_upper[TYPE_COLUMN]], schema)
    doc_type = normalize_value(raw_type, "doc_type", schema)
    if doc_type not in schema.types:
        raise ValueError(f"{where}: {TYPE_COLUMN} {raw_type!r} is not a known type {sorted(schema.types)}")
    spec = schema.types[doc_type]
    missing = [name for name in spec.field_names if name != TYPE_COLUMN and name not in by_upper]
    if missing:
        raise ValueError(f"{where}: {doc_type} needs field(s) {', '.join(missing)}")
    truth = {name: _as_text(entry[by_upper[name]], schema) for name in spec.field_names if name != TYPE_COLUMN}
    truth[TYPE_COLUMN] = doc_type
    _check_rows_aligned(truth, spec.name, schema, where)
    return key, truth


def _find_key(entry: dict[str, Any], where: str) -> str:
    by_lower = {str(k).strip().lower(): k for k in entry}
    for column in KEY_COLUMNS:
        if column in by_lower:
            key = _clean_key(str(entry[by_lower[column]] or ""))
            if not key:
                raise ValueError(f"{where}: empty {column!r}")
            return key
    raise ValueError(f"{where}: no file-name column; expected one of {', '.join(KEY_COLUMNS)}")


def _clean_key(name: str) -> str:
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def _as_text(value: Any, schema: Schema) -> str:
    """JSON values -> the text form a CSV cell would hold."""
    if value is None:
        return schema.not_found
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return schema.list_separator.join(_as_text(v, schema) for v in value)
    return str(value).strip()


def _check_rows_aligned(truth: Truth, doc_type: str, schema: Schema, where: str) -> None:
    """A bank statement's list fields are columns of one transaction table: they must have one item a row."""
    spec = schema.types[doc_type]
    if spec.flow != "bank":
        return
    lengths = {}
    for f in spec.fields:
        value = normalize_value(truth[f.name], f.kind, schema, is_list=True) if f.is_list else schema.not_found
        if value != schema.not_found:
            lengths[f.name] = len(split_list(value, schema))
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise ValueError(f"{where}: transaction lists differ in length ({sizes}); list every row in each, "
                         f"with {schema.not_found} where a row has no value")
