"""Ground truth: load a CSV or JSONL file, check it, and find the truth of a document by its file name.

CSV: one row per document; a key column (`image_file`, `filename`, `image_name` or `file`), a
`DOCUMENT_TYPE` column giving the TRUE type, and a column for each field that is labelled. Ground truth
as it comes in the real world is PARTIAL: a field whose column is absent, or whose cell is empty, is not
labelled and not scored; `NOT_FOUND` means "the field does not apply" and is scored.
JSONL: one object per line with a key, `DOCUMENT_TYPE` and the labelled fields (an absent key or "" is
not labelled; null is NOT_FOUND). List values may be JSON arrays; they are joined with the schema's
list separator.

PDF pages are documents of their own (`name.pdf#page=N`): a page matches only its own row; a row keyed
by the file alone (`name.pdf`) is page 1's.

Values are kept as written: scoring passes truth and prediction through the same normaliser.
Every problem is a GroundTruthError (a UserError: one clear line) naming the file, the line and what is
wrong, raised before any model work.
"""

from __future__ import annotations

import csv
import difflib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from docvlm.errors import UserError
from docvlm.normalize import normalize_value, split_list
from docvlm.schema import Schema

log = logging.getLogger(__name__)

KEY_COLUMNS = ("image_file", "filename", "image_name", "file", "image")  # preference order
TYPE_COLUMN = "DOCUMENT_TYPE"
CSV_SUFFIXES = (".csv",)
JSONL_SUFFIXES = (".jsonl", ".ndjson")
_PAGE_ID = re.compile(r"^(?P<file>.+)#page=(?P<page>\d+)$")  # how docvlm.inputs names a PDF page
EXAMPLES_SHOWN = 3  # file names quoted in a warning

Truth = dict[str, str]  # DOCUMENT_TYPE (canonical) + each LABELLED field -> value as written


class GroundTruthError(UserError, ValueError):
    """A ground-truth file that cannot be used (a ValueError too, for callers that catch those)."""


def split_page(doc_id: str) -> tuple[str, int]:
    """("x.pdf", 2) for "x.pdf#page=2"; a name without a page is page 1 ("x.png" -> ("x.png", 1))."""
    match = _PAGE_ID.match(doc_id)
    return (match["file"], int(match["page"])) if match else (doc_id, 1)


@dataclass
class GroundTruth(Mapping[str, Truth]):
    """Truth records by key (the file name as written in the ground-truth file).

    `match(image)` finds the key for a result's image path: exact relative path, then base name, then
    stem, always of the same PDF page (page 2 never falls back to page 1's row).
    """

    path: Path
    rows: dict[str, Truth]
    _by_name: dict[tuple[str, int], list[str]] = field(init=False, repr=False)
    _by_stem: dict[tuple[str, int], list[str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_name, self._by_stem = {}, {}
        for key in self.rows:
            file, page = split_page(key)
            self._by_name.setdefault((PurePosixPath(file).name, page), []).append(key)
            self._by_stem.setdefault((PurePosixPath(file).stem, page), []).append(key)

    def __getitem__(self, key: str) -> Truth:
        return self.rows[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def match(self, image: str, warn: bool = True) -> str | None:
        """The key of `image`'s truth, or None (also when a name or stem is shared by several rows)."""
        clean = _clean_key(image)
        if clean in self.rows:
            return clean
        file, page = split_page(clean)
        path = PurePosixPath(file)
        for index, part in ((self._by_name, (path.name, page)), (self._by_stem, (path.stem, page))):
            keys = index.get(part, [])
            if len(keys) == 1:
                return keys[0]
            if len(keys) > 1:
                if warn:
                    log.warning("%s: %r matches several ground-truth rows %s; not scored", self.path, image, keys)
                return None
        return None

    def check_documents(self, images: Iterable[str], where: str, warn: bool = True) -> list[str]:
        """Before any model work: the rows that match none of `images` (documents found in `where`).

        No row matching any document is a GroundTruthError (a wrong folder or file); some rows
        unmatched is a warning naming how many (when `warn`).
        """
        images = list(images)
        matched = {self.match(image, warn=False) for image in images}
        unmatched = [key for key in self.rows if key not in matched]
        if images and len(unmatched) == len(self.rows):
            raise GroundTruthError(
                f"{self.path}: none of its {len(self.rows)} rows matches any of the {len(images)} documents "
                f"in {where} (rows name e.g. {unmatched[0]!r}, documents are named e.g. {images[0]!r}); "
                f"use the ground truth of these documents, or fix the names in its key column (relative to "
                f"the data folder; a PDF page is name.pdf#page=N)")
        if unmatched and warn:
            log.warning("%s: %d of %d ground-truth rows match no document in %s (e.g. %s); they are not scored",
                        self.path, len(unmatched), len(self.rows), where, ", ".join(unmatched[:EXAMPLES_SHOWN]))
        return unmatched


def load_ground_truth(path: str | Path, schema: Schema) -> GroundTruth:
    """Read and check a CSV or JSONL ground-truth file (raises GroundTruthError naming file, line, problem)."""
    path = Path(path)
    if not path.is_file():
        raise GroundTruthError(f"ground truth file not found: {path}")
    entries = _read_entries(path)
    rows: dict[str, Truth] = {}
    first_line: dict[str, int] = {}
    for line_no, entry in entries:
        key, truth = _check_entry(entry, schema, f"{path}:{line_no}")
        if key in rows:
            raise GroundTruthError(f"{path}:{line_no}: duplicate entry for {key!r} (first on line {first_line[key]})")
        rows[key], first_line[key] = truth, line_no
    if not rows:
        raise GroundTruthError(f"{path}: no ground-truth rows")
    _warn_unknown_columns(path, entries, schema)
    return GroundTruth(path, rows)


def _warn_unknown_columns(path: Path, entries: list[tuple[int, dict[str, Any]]], schema: Schema) -> None:
    """A column that is no field is ignored; with partial truth a misspelt one would silently not be scored."""
    known = {*schema.all_field_names, TYPE_COLUMN}
    columns = {str(k).strip() for _, entry in entries for k in entry}
    unknown = sorted(c for c in columns if c.upper() not in known and c.lower() not in KEY_COLUMNS)
    for column in unknown:
        close = difflib.get_close_matches(column.upper(), sorted(known), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]}?)" if close else ""
        log.warning("%s: column %r is not a schema field%s; ignored", path, column, hint)


def _read_entries(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row or record) for each entry of the file, by its format."""
    suffix = path.suffix.lower()
    if suffix not in CSV_SUFFIXES + JSONL_SUFFIXES:
        raise GroundTruthError(f"{path}: unsupported ground-truth format {suffix!r}; use .csv or .jsonl")
    try:
        return _read_csv(path) if suffix in CSV_SUFFIXES else _read_jsonl(path)
    except UnicodeDecodeError as err:
        raise GroundTruthError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None


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
                    raise GroundTruthError(f"{path}:{reader.line_num}: {len(row)} cells, the header has {len(header)}")
                entries.append((reader.line_num, dict(zip(header, row))))
        except csv.Error as err:
            raise GroundTruthError(f"{path}:{reader.line_num}: malformed CSV ({err})") from None
    return entries


def _csv_header(header: list[str] | None, path: Path) -> list[str]:
    if not header:
        raise GroundTruthError(f"{path}:1: empty file, expected a header row")
    header = [h.strip() for h in header]
    seen = [h.upper() for h in header]
    repeated = sorted({h for h in header if seen.count(h.upper()) > 1})
    if repeated:
        raise GroundTruthError(f"{path}:1: column(s) {', '.join(repeated)} appear more than once")
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
                raise GroundTruthError(f"{path}:{line_no}: invalid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(entry, dict):
                raise GroundTruthError(f"{path}:{line_no}: expected a JSON object, got {type(entry).__name__}")
            entries.append((line_no, entry))
    return entries


def _check_entry(entry: dict[str, Any], schema: Schema, where: str) -> tuple[str, Truth]:
    """Validate one row/record; return its key, its type and its type's LABELLED fields (as strings)."""
    by_upper = {str(k).strip().upper(): k for k in entry}
    key = _find_key(entry, where)
    if TYPE_COLUMN not in by_upper:
        raise GroundTruthError(f"{where}: missing {TYPE_COLUMN} (the true document type)")
    raw_type = _as_text(entry[by_upper[TYPE_COLUMN]], schema)
    if not raw_type or raw_type == schema.not_found:
        raise GroundTruthError(f"{where}: empty {TYPE_COLUMN}; every row needs its true document type")
    doc_type = normalize_value(raw_type, "doc_type", schema)
    if doc_type not in schema.types:
        raise GroundTruthError(f"{where}: {TYPE_COLUMN} {raw_type!r} is not a known type {sorted(schema.types)}")
    spec = schema.types[doc_type]
    truth = {TYPE_COLUMN: doc_type}
    for name in spec.field_names:
        if name != TYPE_COLUMN and name in by_upper:
            value = _as_text(entry[by_upper[name]], schema)
            if value:  # an empty cell is not labelled: not scored
                truth[name] = value
    _check_rows_aligned(truth, spec.name, schema, where)
    return key, truth


def _find_key(entry: dict[str, Any], where: str) -> str:
    by_lower = {str(k).strip().lower(): k for k in entry}
    for column in KEY_COLUMNS:
        if column in by_lower:
            key = _clean_key(str(entry[by_lower[column]] or ""))
            if not key:
                raise GroundTruthError(f"{where}: empty {column!r}")
            return key
    raise GroundTruthError(f"{where}: no file-name column; expected one of {', '.join(KEY_COLUMNS)}")


def _clean_key(name: str) -> str:
    name = name.strip().replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def _as_text(value: Any, schema: Schema) -> str:
    """JSON values -> the text form a CSV cell would hold (null: NOT_FOUND)."""
    if value is None:
        return schema.not_found
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return schema.list_separator.join(_as_text(v, schema) for v in value)
    return str(value).strip()


def _check_rows_aligned(truth: Truth, doc_type: str, schema: Schema, where: str) -> None:
    """A bank statement's list fields are columns of one transaction table: the labelled ones must have
    one item a row."""
    spec = schema.types[doc_type]
    if spec.flow != "bank":
        return
    lengths = {}
    for f in spec.fields:
        if f.is_list and f.name in truth:
            value = normalize_value(truth[f.name], f.kind, schema, is_list=True)
            if value != schema.not_found:
                lengths[f.name] = len(split_list(value, schema))
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise GroundTruthError(f"{where}: transaction lists differ in length ({sizes}); list every row in each, "
                               f"with {schema.not_found} where a row has no value")
