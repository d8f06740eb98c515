"""scripts/ocr_accuracy.py on real-document folders (--real): partial ground truth, strict and project
accuracy, speed by reading source, statement debits against the printed payments out, the OCR cache.

The tiny set is made here: two born-digital card statements (docvlm/synth/card.py), one born-digital
invoice page and the same page as a scanned PNG, with a ground_truth.csv that labels only some fields.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from docvlm.inputs import Document, load_image
from docvlm.ocr import OcrEngine
from docvlm.ocr.accuracy import run_real_folder, speed_by_source, statement_debit_check
from docvlm.schema import load_schema
from docvlm.synth.card import write_card_statements
from docvlm.synth.pdf import PdfText, write_text_pdf

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = load_schema()
INVOICE = [
    PdfText(80, 80, "Harbour Coffee Roasters Pty Ltd", 36, bold=True),
    PdfText(80, 200, "TAX INVOICE", 30, bold=True),
    PdfText(80, 260, "Invoice date: 14/03/2024", 22),
    PdfText(80, 340, "Coffee beans 1kg", 22), PdfText(1160, 340, "$55.00", 22, align="right"),
    PdfText(700, 420, "GST", 22), PdfText(1160, 420, "$5.00", 22, align="right"),
    PdfText(700, 460, "Total", 22, bold=True), PdfText(1160, 460, "$55.00", 22, bold=True, align="right"),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_card_statements(tmp_path_factory.mktemp("real"), 2, seed=9)
    with (folder / "statements.csv").open() as handle:
        statements = list(csv.DictReader(handle))
    statements[1]["payments_out"] = str(float(statements[1]["payments_out"]) + 1)  # this one cannot add up
    _write(folder / "statements.csv", statements)
    write_text_pdf(folder / "invoice.pdf", [INVOICE])
    load_image(Document(0, "invoice.pdf#page=1", folder / "invoice.pdf", 1, "pdf")).save(folder / "scan.png")
    with (folder / "ground_truth.csv").open() as handle:
        truth = list(csv.DictReader(handle))
    truth += [{"image_file": "invoice.pdf#page=1", "DOCUMENT_TYPE": "INVOICE", "STATEMENT_DATE_RANGE": "",
               "TOTAL_AMOUNT": "$55.00", "INVOICE_DATE": "14/03/2024"},
              {"image_file": "scan.png", "DOCUMENT_TYPE": "INVOICE", "STATEMENT_DATE_RANGE": "", "TOTAL_AMOUNT": "$55.00",
               "INVOICE_DATE": ""}]  # an empty cell: not labelled, not scored
    _write(folder / "ground_truth.csv", truth, ["image_file", "DOCUMENT_TYPE", "STATEMENT_DATE_RANGE", "TOTAL_AMOUNT",
                                               "INVOICE_DATE"])
    return folder


def _write(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns or list(rows[0]), restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_real_folder_scores_labelled_fields_reads_sources_and_checks_debits(folder: Path, tmp_path: Path) -> None:
    engine = OcrEngine(threads=2)
    run = run_real_folder(engine, folder, SCHEMA, cache=tmp_path / "cache")
    sources = {r["image"]: r["source"] for r in run.records}
    assert sources["scan.png"] == "ocr" and sources["invoice.pdf#page=1"] == "text_layer"
    strict = run.evaluation["strict"]
    assert strict["INVOICE"]["TOTAL_AMOUNT"] == {**strict["INVOICE"]["TOTAL_AMOUNT"], "n": 2, "strict": 1.0}
    assert strict["INVOICE"]["INVOICE_DATE"]["n"] == 1  # the empty cell is not scored
    assert strict["BANK_STATEMENT"]["STATEMENT_DATE_RANGE"]["n"] == 2
    check = statement_debit_check(run.records, folder / "statements.csv", SCHEMA)
    assert (check["right"], check["statements"]) == (1, 2) and [r["right"] for r in check["rows"]] == [True, False]
    speed = speed_by_source(run.records)
    assert speed["ocr"]["documents"] == 1 and speed["text_layer"]["documents"] == len(run.records) - 1
    # the OCR'd page's lines were cached: a second run does not OCR (nor time) it, and reads the same
    again = run_real_folder(engine, folder, SCHEMA, cache=tmp_path / "cache")
    assert (tmp_path / "cache" / "scan.pkl").exists()
    assert next(r for r in again.records if r["image"] == "scan.png")["seconds"] is None
    assert [r["fields"] for r in again.records] == [r["fields"] for r in run.records]


def test_the_script_prints_the_real_figures(folder: Path) -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "ocr_accuracy.py"), "--skip-generated", "--threads", "2",
                          "--real", str(folder)], capture_output=True, text=True, timeout=300, check=True).stdout
    assert " 1 OCR'd, " in out
    assert "statements whose debits add up to the printed payments out: 1/2 (0.50)" in out
    assert any(line.split()[:3] == ["INVOICE", "TOTAL_AMOUNT", "2"] for line in out.splitlines())
    assert "documents/s per core" in out and "born-digital (text layer)" in out and "scanned (OCR)" in out
