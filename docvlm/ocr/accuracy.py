"""Run the OCR engine over a folder of documents and score it with docvlm.evaluate.

Generated corpora (`run_folder`: the accuracy floors of the tests) and folders of real documents with
partial ground truth (`run_real_folder`: strict and project per-field accuracy, speed by reading source,
and for statements whether the debits add up to the printed "payments out"). Used by
scripts/ocr_accuracy.py (the benchmark tables) and by the tests.
"""

from __future__ import annotations

import csv
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from docvlm.evaluate import evaluate
from docvlm.ground_truth import load_ground_truth, split_page
from docvlm.inputs import Document, discover, load_image, safe_name
from docvlm.normalize import parse_money, split_list
from docvlm.ocr.engine import OcrEngine
from docvlm.schema import Schema
from docvlm.synth import GROUND_TRUTH

# One layout per type held out while the rules were written (reported separately).
HELD_OUT = {"INVOICE": "service", "RECEIPT": "tax_receipt", "BANK_STATEMENT": "date_grouped"}


@dataclass
class EngineRun:
    evaluation: dict[str, Any]
    records: list[dict[str, Any]]
    wall_s: float  # OCR + rules, summed over documents (image decoding excluded)
    cpu_s: float  # process CPU time over the same spans (all threads)


def run_folder(engine: OcrEngine, folder: Path, schema: Schema) -> EngineRun:
    """Process every PNG of `folder` (a generated corpus) and evaluate against its ground truth."""
    records: list[dict[str, Any]] = []
    wall = cpu = 0.0
    for path in sorted(Path(folder).glob("*.png")):
        with Image.open(path) as image:
            image.load()
            start, start_cpu = time.perf_counter(), time.process_time()
            result = engine.process(image, schema)
            wall += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
        records.append({"image": path.name, "document_type": result.document_type, "fields": result.fields,
                        "details": result.details})
    truth = load_ground_truth(Path(folder) / GROUND_TRUTH, schema)
    return EngineRun(evaluate(records, truth, schema, elapsed_s=wall), records, wall, cpu)


def mean_document_f1(run: EngineRun, doc_type: str) -> float:
    return run.evaluation["per_type"][doc_type]["document_f1_mean"]


# ----------------------------------------------------------------------------- real documents
REAL_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".pdf")


@dataclass
class RealRun:
    """The engine over a folder of real documents: records, the evaluation against the folder's
    (partial) ground truth, and each document's reading source and seconds (None: lines from the cache)."""

    folder: Path
    records: list[dict[str, Any]]
    evaluation: dict[str, Any] | None


def run_real_folder(engine: OcrEngine, folder: Path, schema: Schema, cache: Path | None = None) -> RealRun:
    """Read every document of `folder` as `model=ocr` does (a PDF page from its text layer when it has
    one, else OCR) and evaluate against `folder/ground_truth.csv` when present.

    `cache`: a folder of OCR lines (`<stem>.pkl`, a pickled list of TextLine per document, as
    /tmp/ocr-cache/README.txt describes): OCR'd documents found there are not read again (their time
    is then not measured), the others are read and stored. Text layers are always read."""
    records = []
    for doc in discover(folder, REAL_EXTENSIONS):
        records.append(_read_document(engine, doc, schema, cache))
    truth_path = Path(folder) / "ground_truth.csv"
    evaluation = None
    if truth_path.exists():
        evaluation = evaluate(records, load_ground_truth(truth_path, schema), schema)
    return RealRun(Path(folder), records, evaluation)


def _read_document(engine: OcrEngine, doc: Document, schema: Schema, cache: Path | None) -> dict[str, Any]:
    start, start_cpu = time.perf_counter(), time.process_time()
    lines, source, cached = None, "text_layer", False
    if doc.format == "pdf" and doc.page:
        lines = engine.read_pdf_page(doc.path, doc.page - 1)
    if lines is None:
        source = "ocr"
        stored = cache / f"{safe_name(Path(doc.id.split('#page=')[0]).stem + _page_suffix(doc))}.pkl" if cache else None
        if stored is not None and stored.exists():
            lines, cached = pickle.loads(stored.read_bytes()), True
        else:
            lines = engine.read(load_image(doc))
            if stored is not None:
                stored.parent.mkdir(parents=True, exist_ok=True)
                stored.write_bytes(pickle.dumps(lines))
    read_s = time.perf_counter() - start
    result = engine.process_lines(lines, schema, source, read_s)
    return {"image": doc.id, "document_type": result.document_type, "fields": result.fields,
            "details": result.details, "source": source,
            "seconds": None if cached else time.perf_counter() - start,
            "cpu_s": None if cached else time.process_time() - start_cpu}


def _page_suffix(doc: Document) -> str:
    return f"-page{doc.page}" if doc.page else ""


def speed_by_source(records: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per reading source ("ocr": scanned pages, "text_layer": born-digital ones): documents timed,
    documents per second of wall time and per CPU second (one core's work: documents/s per core)."""
    out = {}
    for source in ("ocr", "text_layer"):
        timed = [r for r in records if r["source"] == source and r["seconds"] is not None]
        if timed:
            wall, cpu = sum(r["seconds"] for r in timed), sum(r["cpu_s"] for r in timed)
            out[source] = {"documents": len(timed), "docs_per_s": len(timed) / wall,
                           "docs_per_cpu_s": len(timed) / cpu if cpu else float("inf")}
    return out


def statement_debit_check(records: list[dict[str, Any]], statements_csv: Path, schema: Schema) -> dict[str, Any]:
    """Whether the debits read from all pages of each statement add up to its printed "payments out"
    (statements.csv: `file`, `payments_out`; within 0.01). Only pages typed BANK_STATEMENT give debits."""
    with Path(statements_csv).open(newline="", encoding="utf-8") as handle:
        expected = {row["file"]: float(row["payments_out"]) for row in csv.DictReader(handle)}
    debits: dict[str, list[float]] = {name: [] for name in expected}
    pages: dict[str, list[str]] = {name: [] for name in expected}
    for record in records:
        name = split_page(record["image"])[0]
        if name not in expected:
            continue
        pages[name].append(record["document_type"])
        if record["document_type"] == "BANK_STATEMENT":
            for item in split_list(record["fields"].get("TRANSACTION_AMOUNTS_PAID", ""), schema):
                value = parse_money(item)
                if value is not None:
                    debits[name].append(abs(value))
    rows = [{"file": name, "payments_out": out, "debits": round(sum(debits[name]), 2), "n_debits": len(debits[name]),
             "right": abs(sum(debits[name]) - out) <= 0.01 + 1e-9,
             "pages_typed_statement": f"{pages[name].count('BANK_STATEMENT')}/{len(pages[name])}"}
            for name, out in expected.items()]
    return {"statements": len(rows), "right": sum(r["right"] for r in rows),
            "share": sum(r["right"] for r in rows) / len(rows) if rows else None, "rows": rows}
