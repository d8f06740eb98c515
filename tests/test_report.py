"""report.md and plots: files exist, tables come in the right order, plots are real PNGs."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from PIL import Image

from docvlm.evaluate import evaluate
from docvlm.ground_truth import load_ground_truth
from docvlm.report import write_report
from docvlm.schema import load_schema

SCHEMA = load_schema()

TRUTH = {
    "inv.png": {"DOCUMENT_TYPE": "INVOICE", "BUSINESS_ABN": "12 345 678 901", "SUPPLIER_NAME": "Acme Pty Ltd",
                "INVOICE_DATE": "05/03/2024", "LINE_ITEM_DESCRIPTIONS": "Widget | Gadget",
                "LINE_ITEM_QUANTITIES": "2 | 1", "LINE_ITEM_PRICES": "$10.00 | $5.50",
                "LINE_ITEM_TOTAL_PRICES": "$20.00 | $5.50", "IS_GST_INCLUDED": "true", "GST_AMOUNT": "$2.32",
                "TOTAL_AMOUNT": "$25.50"},
    "rec.png": {"DOCUMENT_TYPE": "RECEIPT", "SUPPLIER_NAME": "Corner Cafe", "INVOICE_DATE": "07/03/2024",
                "LINE_ITEM_DESCRIPTIONS": "Flat white", "LINE_ITEM_QUANTITIES": "2", "LINE_ITEM_PRICES": "$4.50",
                "LINE_ITEM_TOTAL_PRICES": "$9.00", "IS_GST_INCLUDED": "true", "GST_AMOUNT": "$0.82",
                "TOTAL_AMOUNT": "$9.00"},
    "bank.png": {"DOCUMENT_TYPE": "BANK_STATEMENT", "STATEMENT_DATE_RANGE": "01/02/2024 - 29/02/2024",
                 "LINE_ITEM_DESCRIPTIONS": "Coffee | Salary | Rent",
                 "TRANSACTION_DATES": "01/02/2024 | 02/02/2024 | 03/02/2024",
                 "TRANSACTION_AMOUNTS_PAID": "$4.50 | NOT_FOUND | $1200.00"},
}


def make_evaluation(tmp_path: Path, with_timings: bool = True) -> tuple[dict, list[dict]]:
    path = tmp_path / "gt.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_file", *SCHEMA.all_field_names])
        for name, fields in TRUTH.items():
            writer.writerow([name, *(fields.get(k, "NOT_FOUND") for k in SCHEMA.all_field_names)])
    records = [
        {"image": "inv.png", "document_type": "INVOICE", "fields": {**TRUTH["inv.png"], "TOTAL_AMOUNT": "$30.00"}},
        {"image": "rec.png", "document_type": "INVOICE", "fields": {**TRUTH["rec.png"], "DOCUMENT_TYPE": "INVOICE"}},
        {"image": "bank.png", "document_type": "BANK_STATEMENT",
         "fields": {"STATEMENT_DATE_RANGE": "01/02/2024 - 29/02/2024", "LINE_ITEM_DESCRIPTIONS": "Coffee | Rent",
                    "TRANSACTION_DATES": "01/02/2024 | 03/02/2024", "TRANSACTION_AMOUNTS_PAID": "$4.50 | $1200.00"}},
        {"image": "lost.png", "document_type": None, "fields": {},
         "error": {"kind": "DecodeError", "message": "cannot read image"}},
    ]
    for i, r in enumerate(records):
        r.update(index=i, rank=0, error=r.get("error"), timings={"total_s": 1.5 + i} if with_timings else {})
    evaluation = evaluate(records, load_ground_truth(path, SCHEMA), SCHEMA, elapsed_s=8.0)
    return evaluation, records


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.width > 200 and image.height > 100
        darkest, lightest = image.convert("L").getextrema()
        assert darkest < 100 < lightest  # something was drawn on a light background


def test_report_and_plots_written(tmp_path: Path) -> None:
    evaluation, records = make_evaluation(tmp_path)
    out = tmp_path / "out"
    path = write_report(evaluation, records, out)
    assert path == out / "report.md"
    text = path.read_text()
    plots = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert sorted(plots) == ["plots/confusion_matrix.png", "plots/field_f1.png", "plots/time_per_document.png"]
    for plot in plots:
        assert_png(out / plot)
    assert not [p for p in out.rglob(".*")], "temporary files left behind"


def test_report_tables(tmp_path: Path) -> None:
    evaluation, records = make_evaluation(tmp_path)
    text = write_report(evaluation, records, tmp_path / "out").read_text()
    # per-field tables come before any per-document or per-type average
    assert text.index("## Field F1 by document type") < text.index("## By document type")
    assert "| TOTAL_AMOUNT | 0.000 | – | – | 1 |" in text  # invoice total wrong, n = 1
    assert "| TRANSACTION_AMOUNTS_PAID | 1.000 |" in text
    assert "| DOCUMENT_TYPE | 1.000 |" in text
    assert re.search(r"\| RECEIPT \| 1 \| 0\.929 \|", text)  # 13 of 14 fields right: macro 0.929
    assert "| RECEIPT | 1 | 0 | 0 |" in text  # confusion row: the receipt was called an invoice
    assert "0.500 documents/s" in text  # 4 documents in 8 s
    assert "## Documents without ground truth (1)" in text and "- `lost.png`" in text
    assert "## Documents with errors (1)" in text


def test_report_without_timings_has_no_timing_plot(tmp_path: Path) -> None:
    evaluation, records = make_evaluation(tmp_path, with_timings=False)
    out = tmp_path / "out"
    text = write_report(evaluation, records, out).read_text()
    assert "time_per_document.png" not in text
    assert not (out / "plots" / "time_per_document.png").exists()
    assert_png(out / "plots" / "field_f1.png")


def test_report_overwrites_previous_run(tmp_path: Path) -> None:
    evaluation, records = make_evaluation(tmp_path)
    out = tmp_path / "out"
    write_report(evaluation, records, out)
    (out / "report.md").write_text("stale")
    write_report(evaluation, records, out)
    assert (out / "report.md").read_text().startswith("# Evaluation report")


@pytest.mark.parametrize("name", ["field_f1.png", "confusion_matrix.png"])
def test_plots_with_a_single_type(tmp_path: Path, name: str) -> None:
    evaluation, records = make_evaluation(tmp_path)
    only_bank = [r for r in records if r["image"] == "bank.png"]
    truth = load_ground_truth(tmp_path / "gt.csv", SCHEMA)
    evaluation = evaluate(only_bank, truth, SCHEMA)
    write_report(evaluation, only_bank, tmp_path / "out")
    assert_png(tmp_path / "out" / "plots" / name)


def test_report_says_which_fields_were_scored_on_partial_truth(tmp_path: Path) -> None:
    (tmp_path / "gt.csv").write_text("image_file,DOCUMENT_TYPE,SUPPLIER_NAME,TOTAL_AMOUNT\n"
                                     "r1.jpg,RECEIPT,Corner Cafe,$9.00\n"
                                     "r2.jpg,RECEIPT,,$4.50\n")
    records = [{"image": "r1.jpg", "document_type": "RECEIPT", "fields": {"SUPPLIER_NAME": "CORNER CAFE.",
                                                                          "TOTAL_AMOUNT": "$9.00"}},
               {"image": "r2.jpg", "document_type": "RECEIPT", "fields": {"TOTAL_AMOUNT": "$4.60"}}]
    evaluation = evaluate(records, load_ground_truth(tmp_path / "gt.csv", SCHEMA), SCHEMA)
    out = tmp_path / "out"
    text = write_report(evaluation, records, out).read_text()
    assert "The ground truth is partial" in text
    assert "### RECEIPT (2 documents)" in text
    assert "| SUPPLIER_NAME | 0.917 | – | – | 1 | 1.000 | 1.000 |" in text  # n = 1; strict ignores the dot
    assert "| TOTAL_AMOUNT | 0.500 | 0.707 |" in text and "| 2 | 0.500 | – |" in text  # $4.60: 10 cents off
    assert "Not labelled in the ground truth (not scored): BUSINESS_ABN, " in text
    assert "| GST_AMOUNT |" not in text
    assert_png(out / "plots" / "field_f1.png")


def test_report_throughput_after_a_resume_that_did_nothing(tmp_path: Path) -> None:
    """summary.json says 0.0 documents/s (this run processed nothing); report.md said 167.853."""
    _, records = make_evaluation(tmp_path)
    truth = load_ground_truth(tmp_path / "gt.csv", SCHEMA)
    evaluation = evaluate(records, truth, SCHEMA, elapsed_s=0.0238, processed=0)
    text = write_report(evaluation, records, tmp_path / "out").read_text()
    assert "0 documents processed by this run in 0.0 s: 0.000 documents/s" in text
    assert "4 more documents were recorded by an earlier run" in text


def test_report_of_a_random_weights_model_says_its_answers_are_meaningless(tmp_path: Path) -> None:
    _, records = make_evaluation(tmp_path)
    truth = load_ground_truth(tmp_path / "gt.csv", SCHEMA)
    text = write_report(evaluate(records, truth, SCHEMA, model="tiny_internvl", random_weights=True),
                        records, tmp_path / "out").read_text()
    assert "`tiny_internvl` has random weights: its answers are meaningless" in text.split("## ")[0]
    real = write_report(evaluate(records, truth, SCHEMA, model="ocr"), records, tmp_path / "out2").read_text()
    assert "Model: `ocr`." in real and "meaningless" not in real


def test_report_time_intervals_are_seconds_not_f1(tmp_path: Path) -> None:
    """evaluation.json clipped the interval of seconds to [0, 1] (`"ci95": [1.51, 1.0]`)."""
    _, records = make_evaluation(tmp_path)
    for r, t in zip(records, [1.5, 2.5, 3.5, 2.0]):
        r["document_type"], r["timings"] = "INVOICE", {"total_s": t}
    evaluation = evaluate(records, load_ground_truth(tmp_path / "gt.csv", SCHEMA), SCHEMA, elapsed_s=8.0)
    low, high = evaluation["throughput"]["time_per_document_s"]["INVOICE"]["ci95"]
    assert low <= 2.375 <= high and high > 1.0
