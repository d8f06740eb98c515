"""Strict per-field accuracy (the real-document metrics): each comparison on examples of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from docvlm.evaluate import evaluate
from docvlm.ground_truth import load_ground_truth
from docvlm.schema import load_schema
from docvlm.strict import similar_item, strict_accuracy, strict_item

SCHEMA = load_schema()


@pytest.mark.parametrize("pred, true, expected", [
    ("AEON CO. (M) BHD", "Aeon Co (M) Bhd", True),          # case and punctuation
    ("DOMINO'S PIZZA", "DOMINOS  PIZZA", True),             # apostrophe, spaces
    ("Lieferantenstraße 20, 80333 München", "LIEFERANTENSTRASSE 20 80333 MÜNCHEN", True),
    ("AEON CO. (M) SDN BHD", "AEON CO. (M) BHD", False),    # a word more is not exact
    ("NOT_FOUND", "NOT_FOUND", True),
    ("NOT_FOUND", "Acme", False),
])
def test_text_exact_after_case_spaces_punctuation(pred: str, true: str, expected: bool) -> None:
    assert strict_item(pred, true, "text", SCHEMA) is expected


@pytest.mark.parametrize("pred, true, expected", [
    ("TEO HENG STATIONARY & BOOKS", "TEO HENG STATIONERY & BOOKS", True),  # a typo: 1 edit in 26
    ("AEON CO. (M) SDN BHD", "AEON CO. (M) BHD", False),    # "aeon co m sdn bhd": 4 edits in 17, 0.76
    ("3RD FLR AEON TAMAN MALURI", "3RD FLR, AEON TAMAN MALURI SC JLN JEJAKA, CHERAS", False),
    ("abcde", "abxyz", False),
    ("NOT_FOUND", "x", False),
])
def test_text_similar_at_threshold(pred: str, true: str, expected: bool) -> None:
    assert similar_item(pred, true, SCHEMA) is expected


@pytest.mark.parametrize("kind, pred, true, expected", [
    ("money", "$10.01", "$10.00", True),       # one cent
    ("money", "$101.00", "$100.00", False),    # the project's 1% tolerance does not apply
    ("money", "-$1.73", "$1.73", False),
    ("date", "05/03/2024", "05/03/2024", True),
    ("date", "03/05/2024", "05/03/2024", False),
    ("date_range", "01/02/2024 - 29/02/2024", "01/02/2024 - 28/02/2024", False),
    ("doc_type", "RECEIPT", "RECEIPT", True),
    ("doc_type", "INVOICE", "RECEIPT", False),
])
def test_other_kinds_equal(kind: str, pred: str, true: str, expected: bool) -> None:
    assert strict_item(pred, true, kind, SCHEMA) is expected


def test_strict_accuracy_per_field_with_n(tmp_path: Path) -> None:
    (tmp_path / "gt.csv").write_text(
        "image_file,DOCUMENT_TYPE,SUPPLIER_NAME,INVOICE_DATE,TOTAL_AMOUNT,LINE_ITEM_DESCRIPTIONS\n"
        "a.jpg,RECEIPT,AEON CO. (M) BHD,18/04/2018,$1.75,\n"
        "b.jpg,RECEIPT,TEO HENG STATIONERY & BOOKS,,$10.20,\n"
        "c.jpg,RECEIPT,,22/04/2018,$98.35,\n"
        "d.pdf#page=1,INVOICE,Lieferant GmbH,13/06/2018,,Schweinesteak | Kalbsschnitzel\n")
    truth = load_ground_truth(tmp_path / "gt.csv", SCHEMA)
    records = [
        {"image": "a.jpg", "document_type": "RECEIPT",
         "fields": {"SUPPLIER_NAME": "Aeon Co (M) Bhd", "INVOICE_DATE": "18.04.2018", "TOTAL_AMOUNT": "RM 1.75"}},
        {"image": "b.jpg", "document_type": "INVOICE",
         "fields": {"SUPPLIER_NAME": "TEO HENG STATIONARY & BOOKS", "TOTAL_AMOUNT": "$10.21"}},
        {"image": "c.jpg", "document_type": None, "fields": {}, "error": {"kind": "X", "message": "failed"}},
        {"image": "d.pdf#page=1", "document_type": "INVOICE",
         "fields": {"SUPPLIER_NAME": "LIEFERANT GMBH", "INVOICE_DATE": "13/06/2018",
                    "LINE_ITEM_DESCRIPTIONS": "Schweinesteak"}},
        {"image": "e.jpg", "document_type": "RECEIPT", "fields": {}},  # no ground truth: left out
    ]
    acc = strict_accuracy(records, truth, SCHEMA)
    receipt = acc["RECEIPT"]
    assert list(receipt) == ["DOCUMENT_TYPE", "SUPPLIER_NAME", "INVOICE_DATE", "TOTAL_AMOUNT"]
    assert receipt["DOCUMENT_TYPE"]["n"] == 3 and receipt["DOCUMENT_TYPE"]["strict_correct"] == 1
    assert (receipt["SUPPLIER_NAME"]["n"], receipt["SUPPLIER_NAME"]["strict"]) == (2, 0.5)
    assert receipt["SUPPLIER_NAME"]["similar"] == 1.0  # the typo: similar, not exact
    assert (receipt["INVOICE_DATE"]["n"], receipt["INVOICE_DATE"]["strict"]) == (2, 0.5)  # the failed one
    assert receipt["TOTAL_AMOUNT"]["strict_correct"] == 2 and receipt["TOTAL_AMOUNT"]["similar"] is None
    assert receipt["TOTAL_AMOUNT"]["project_f1"] == pytest.approx(2 / 3)
    invoice = acc["INVOICE"]
    assert invoice["SUPPLIER_NAME"]["strict"] == 1.0
    assert invoice["LINE_ITEM_DESCRIPTIONS"]["strict"] == 0.0  # one of two items: a list is right whole
    assert "TOTAL_AMOUNT" not in invoice  # not labelled on that page
    assert records[0].get("evaluation") is None  # the records are not changed

    ev = evaluate(records, truth, SCHEMA)
    assert ev["strict"] == acc
