"""Write a synthetic corpus: document images (PNG and/or PDF) plus ground_truth.csv.

Documents are planned round-robin over each type's layouts (so every layout appears once a type's
count reaches its number of layouts), then shuffled so that types interleave in file order (every
rank of a sharded run gets a mix). Each document draws from its own `random.Random`, seeded from
the corpus seed, so the same seed gives byte-identical images and ground truth.

File names: `doc-0001-invoice-classic.png` (position, type, layout); the model never sees them.
The CSV has one row per written file: `image_file` then every schema field, NOT_FOUND where a
field does not apply to the document's type.
"""

from __future__ import annotations

import csv
import random
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from docvlm.errors import UserError
from docvlm.schema import Schema, load_schema
from docvlm.synth import bank, invoice, receipt
from docvlm.synth.degrade import degrade as degrade_page
from docvlm.synth.document import SynthDoc
from docvlm.synth.draw import DPI
from docvlm.synth.truth import render_fields

GROUND_TRUTH = "ground_truth.csv"
FORMATS = ("png", "pdf")
DEFAULT_COUNTS = {"INVOICE": 4, "RECEIPT": 4, "BANK_STATEMENT": 6}
SAMPLE_COUNTS = {"INVOICE": 2, "RECEIPT": 2, "BANK_STATEMENT": 3}
PDF_DATE = time.gmtime(1_704_067_200)  # 2024-01-01, as Pillow's PDF writer wants it (struct_time)


@dataclass(frozen=True)
class Generator:
    layouts: tuple[str, ...]
    make: Callable[[random.Random, str, int], SynthDoc]  # (rng, layout, pages)
    multi_page: bool = False


GENERATORS: dict[str, Generator] = {
    "INVOICE": Generator(invoice.LAYOUTS, lambda rng, layout, pages: invoice.make_invoice(rng, layout)),
    "RECEIPT": Generator(receipt.LAYOUTS, lambda rng, layout, pages: receipt.make_receipt(rng, layout)),
    "BANK_STATEMENT": Generator(bank.LAYOUTS, bank.make_statement, multi_page=True),
}


def all_layouts() -> dict[str, tuple[str, ...]]:
    """Document type -> its layout names (names are unique across types)."""
    return {doc_type: gen.layouts for doc_type, gen in GENERATORS.items()}


def generate_corpus(out_dir: Path, counts: dict[str, int] | None = None, seed: int = 0, degrade: bool = False,
                    formats: tuple[str, ...] = ("png",), layouts: Sequence[str] | None = None,
                    max_pages: int = 1, schema: Schema | None = None, workers: int = 1) -> Path:
    """Write documents and `out_dir/ground_truth.csv`; returns the CSV path.

    counts: documents per type (default DEFAULT_COUNTS). layouts: only these layout names (a type
    none of whose layouts is listed gets no documents). formats: "png" and/or "pdf".
    max_pages > 1: bank statements get 1..max_pages pages; those with several pages are written as
    PDF only (needs "pdf" in formats). schema: default conf/schema/default.yaml. workers: processes
    that render (the documents are the same whatever the number: each has its own seed).
    Files of an earlier corpus in `out_dir` are not removed: use a fresh folder.
    """
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    _check_arguments(counts, formats, layouts, max_pages)
    schema = schema or load_schema()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    master = random.Random(seed)
    plan = _plan(counts, layouts)
    master.shuffle(plan)
    jobs = [_Job(index, doc_type, layout, master.getrandbits(64), degrade, max_pages, formats, out_dir, schema)
            for index, (doc_type, layout) in enumerate(plan, 1)]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            written = list(pool.map(_make_document, jobs, chunksize=8))
    else:
        written = [_make_document(job) for job in jobs]
    rows = [row for doc_rows in written for row in doc_rows]
    return _write_ground_truth(out_dir / GROUND_TRUTH, sorted(rows, key=lambda r: r["image_file"]), schema)


@dataclass(frozen=True)
class _Job:
    index: int
    doc_type: str
    layout: str
    seed: int
    degrade: bool
    max_pages: int
    formats: tuple[str, ...]
    out_dir: Path
    schema: Schema


def _make_document(job: _Job) -> list[dict[str, str]]:
    """Render and save one document; its ground-truth rows (one per file written)."""
    rng = random.Random(job.seed)
    generator = GENERATORS[job.doc_type]
    pages = rng.randint(1, job.max_pages) if generator.multi_page else 1
    doc = generator.make(rng, job.layout, pages)
    if job.degrade:
        doc = SynthDoc(doc.doc_type, doc.layout, [degrade_page(p, rng) for p in doc.pages], doc.values)
    stem = f"doc-{job.index:04d}-{job.doc_type.lower().replace('_', '-')}-{job.layout.replace('_', '-')}"
    truth = render_fields(doc.values, job.doc_type, job.schema)
    return [{"image_file": name, **truth} for name in _write(doc, job.out_dir, stem, job.formats)]


def generate_samples(out_dir: Path, seed: int = 0) -> Path:
    """The small demo set: 2 invoices, 2 receipts, 3 bank statements (every layout once), PNG."""
    return generate_corpus(out_dir, counts=SAMPLE_COUNTS, seed=seed)


def prepare_folder(out_dir: Path, overwrite: bool = False) -> list[Path]:
    """The command lines write into a new or empty folder: documents already there would be mixed with
    the new ones, without ground truth. `overwrite`: an earlier sample set there (the files its
    ground_truth.csv lists, and the CSV) is removed first; files docvlm did not write are never deleted.
    Returns those (they stay beside the new set)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file: give a new or empty folder")
    present = sorted(p for p in out_dir.rglob("*") if p.is_file()) if out_dir.exists() else []
    if present and not overwrite:
        raise UserError(f"--out {out_dir} already holds {len(present)} files (e.g. {present[0].name}); new documents "
                        "would be mixed with them: give a new or empty folder, or --overwrite to replace an earlier "
                        "sample set there")
    earlier = _listed_in_ground_truth(out_dir)
    for path in earlier:
        path.unlink(missing_ok=True)
    return [p for p in present if p not in set(earlier)]


def _listed_in_ground_truth(out_dir: Path) -> list[Path]:
    """The files of an earlier sample set in out_dir: its ground_truth.csv and the files it lists."""
    truth = out_dir / GROUND_TRUTH
    if not truth.is_file():
        return []
    with truth.open(encoding="utf-8", newline="") as handle:
        names = {row.get("image_file", "").split("#page=")[0] for row in csv.DictReader(handle)}
    inside = [out_dir / name for name in sorted(names) if name and not Path(name).is_absolute() and ".." not in Path(name).parts]
    return [truth, *(p for p in inside if p.is_file())]


def _check_arguments(counts: dict[str, int], formats: tuple[str, ...], layouts: Sequence[str] | None,
                     max_pages: int) -> None:
    for doc_type, count in counts.items():
        if doc_type not in GENERATORS:
            raise ValueError(f"synth: unknown document type {doc_type!r} in counts; known: {sorted(GENERATORS)}")
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"synth: count for {doc_type} must be a non-negative integer, got {count!r}")
    if not formats or any(f not in FORMATS for f in formats):
        raise ValueError(f"synth: formats must be a non-empty subset of {FORMATS}, got {formats!r}")
    known = [name for names in all_layouts().values() for name in names]
    unknown = [name for name in layouts or () if name not in known]
    if unknown:
        raise ValueError(f"synth: unknown layouts {unknown}; known: {known}")
    if max_pages < 1:
        raise ValueError(f"synth: max_pages must be >= 1, got {max_pages}")
    if max_pages > 1 and "pdf" not in formats:
        raise ValueError("synth: max_pages > 1 makes multi-page statements, which need 'pdf' in formats")


def _plan(counts: dict[str, int], layouts: Sequence[str] | None) -> list[tuple[str, str]]:
    """(type, layout) for every document, layouts round-robin within each type."""
    plan = []
    for doc_type, generator in GENERATORS.items():
        allowed = [name for name in generator.layouts if layouts is None or name in layouts]
        count = counts.get(doc_type, 0)
        if count and not allowed:
            continue  # the layout filter excludes this type
        plan += [(doc_type, allowed[i % len(allowed)]) for i in range(count)]
    return plan


def _write(doc: SynthDoc, out_dir: Path, stem: str, formats: tuple[str, ...]) -> list[str]:
    """Save the document in each format; returns the file names written."""
    names = []
    if "png" in formats and len(doc.pages) == 1:
        names.append(f"{stem}.png")
        doc.pages[0].save(out_dir / names[-1], "PNG")
    if "pdf" in formats:
        names.append(f"{stem}.pdf")
        first, *rest = doc.pages
        first.save(out_dir / names[-1], "PDF", resolution=DPI, save_all=True, append_images=rest,
                   creationDate=PDF_DATE, modDate=PDF_DATE)  # not "now": identical bytes per seed
    return names


def _write_ground_truth(path: Path, rows: list[dict[str, str]], schema: Schema) -> Path:
    columns = ["image_file", *schema.all_field_names]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)
    return path
