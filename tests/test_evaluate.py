"""Comparators and metrics on hand-computed cases; perfect answers score 1.0 on every field."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from docvlm.evaluate import confusion_matrix, evaluate, main, summarize
from docvlm.scoring import (
    compare_item, levenshtein, restrict_to_debit_rows, score_document, score_field, text_similarity,
)
from docvlm.ground_truth import load_ground_truth
from docvlm.schema import DEFAULT_SCHEMA_PATH, load_schema

SCHEMA = load_schema()


# ---------------------------------------------------------------- comparators

@pytest.mark.parametrize("pred, true, expected", [
    ("$100.00", "$100.00", 1.0),
    ("$100.01", "$100.00", 1.0),   # within 0.01 absolute
    ("$1020.23", "$1020.22", 1.0),
    ("$101.00", "$100.00", 1.0),   # within 1% relative
    ("$101.50", "$100.00", 0.0),
    ("$0.52", "$0.50", 0.0),       # 2 cents off a small amount: neither tolerance
    ("-$5.00", "$5.00", 0.0),      # sign matters
    ("ten dollars", "ten dollars", 1.0),  # unreadable on both sides: exact text
    ("ten dollars", "$10.00", 0.0),
])
def test_money(pred: str, true: str, expected: float) -> None:
    assert compare_item(pred, true, "money", SCHEMA) == expected


@pytest.mark.parametrize("kind, pred, true, expected", [
    ("date", "05/03/2024", "05/03/2024", 1.0),
    ("date", "03/05/2024", "05/03/2024", 0.0),  # day first: a month/day swap is a different date
    ("date_range", "01/02/2024 - 29/02/2024", "01/02/2024 - 29/02/2024", 1.0),
    ("date_range", "01/02/2024 - 28/02/2024", "01/02/2024 - 29/02/2024", 0.0),
    ("id", "12345678901", "12 345 678 901", 1.0),
    ("id", "12345678902", "12345678901", 0.0),
    ("boolean", "true", "true", 1.0),
    ("boolean", "false", "true", 0.0),
    ("number", "2", "2.0", 1.0),
    ("number", "3", "2", 0.0),
    ("doc_type", "RECEIPT", "INVOICE", 0.0),
])
def test_exact_kinds(kind: str, pred: str, true: str, expected: float) -> None:
    assert compare_item(pred, true, kind, SCHEMA) == expected


def test_levenshtein() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("abc", "abc") == 0


@pytest.mark.parametrize("pred, true, expected", [
    ("Acme Pty Ltd", "ACME  pty ltd", 1.0),  # case and spacing are normalised away
    ("abcd", "abce", 0.75),
    ("abcdef", "abcxyz", 0.5),  # exactly at the threshold: kept
    ("abcde", "abxyz", 0.0),    # similarity 0.4 < 0.5: no credit
])
def test_text_anls(pred: str, true: str, expected: float) -> None:
    assert compare_item(pred, true, "text", SCHEMA) == pytest.approx(expected)


def test_text_similarity_unthresholded() -> None:
    assert text_similarity("abcde", "abxyz") == pytest.approx(0.4)


@pytest.mark.parametrize("kind", ["money", "date", "text", "id", "boolean", "number", "date_range", "doc_type"])
def test_not_found_rules(kind: str) -> None:
    assert compare_item("NOT_FOUND", "NOT_FOUND", kind, SCHEMA) == 1.0
    assert compare_item("NOT_FOUND", "x", kind, SCHEMA) == 0.0
    assert compare_item("x", "NOT_FOUND", kind, SCHEMA) == 0.0


# ---------------------------------------------------------------- fields

def field(name: str):
    return SCHEMA.fields[name]


def test_list_position_aware_f1() -> None:
    # 2 of 3 true items predicted, in place: P = 1, R = 2/3, F1 = 0.8
    s = score_field("$1.00 | $2.00", "$1.00 | $2.00 | $3.00", field("LINE_ITEM_PRICES"), SCHEMA)
    assert (s.matched, s.n_pred, s.n_true) == (2, 2, 3)
    assert s.f1 == pytest.approx(0.8)
    # the same items shifted by one position match nothing
    assert score_field("$9.00 | $1.00 | $2.00", "$1.00 | $2.00 | $3.00", field("LINE_ITEM_PRICES"), SCHEMA).f1 == 0.0


def test_list_text_items_use_similarity() -> None:
    # "Widgit" vs "Widget": 1 edit in 6 -> 5/6; "Gadget" exact; F1 = 2 * (5/6 + 1) / 4
    s = score_field("Widgit | Gadget", "Widget | Gadget", field("LINE_ITEM_DESCRIPTIONS"), SCHEMA)
    assert s.f1 == pytest.approx((5 / 6 + 1) / 2)


def test_list_not_found() -> None:
    spec = field("TRANSACTION_AMOUNTS_PAID")
    assert score_field("NOT_FOUND", "NOT_FOUND", spec, SCHEMA).f1 == 1.0
    assert score_field("NOT_FOUND", "$1.00 | $2.00", spec, SCHEMA).f1 == 0.0
    assert score_field("$1.00", "NOT_FOUND", spec, SCHEMA).f1 == 0.0
    # placeholders inside aligned lists are items: matched where both sides have them
    assert score_field("2 | NOT_FOUND", "2 | NOT_FOUND", field("LINE_ITEM_QUANTITIES"), SCHEMA).f1 == 1.0


def test_restrict_bank_truth_to_debit_rows() -> None:
    spec = SCHEMA.types["BANK_STATEMENT"]
    truth = {"DOCUMENT_TYPE": "BANK_STATEMENT", "STATEMENT_DATE_RANGE": "01/02/2024 - 29/02/2024",
             "LINE_ITEM_DESCRIPTIONS": "Coffee | Salary | Rent | Refund",
             "TRANSACTION_DATES": "01/02/2024 | 02/02/2024 | 03/02/2024 | 04/02/2024",
             "TRANSACTION_AMOUNTS_PAID": "$4.50 | NOT_FOUND | $1200.00 | NOT_FOUND"}
    debits = restrict_to_debit_rows(truth, spec, SCHEMA)
    assert debits["LINE_ITEM_DESCRIPTIONS"] == "Coffee | Rent"
    assert debits["TRANSACTION_DATES"] == "01/02/2024 | 03/02/2024"
    assert debits["TRANSACTION_AMOUNTS_PAID"] == "$4.50 | $1200.00"
    assert debits["STATEMENT_DATE_RANGE"] == truth["STATEMENT_DATE_RANGE"]
    credits_only = {**truth, "TRANSACTION_AMOUNTS_PAID": "NOT_FOUND"}
    none = restrict_to_debit_rows(credits_only, spec, SCHEMA)
    assert none["LINE_ITEM_DESCRIPTIONS"] == none["TRANSACTION_DATES"] == "NOT_FOUND"
    invoice = {"LINE_ITEM_PRICES": "$1.00 | NOT_FOUND"}
    assert restrict_to_debit_rows(invoice, SCHEMA.types["INVOICE"], SCHEMA) is invoice  # other flows untouched


# ---------------------------------------------------------------- documents

INVOICE = {
    "DOCUMENT_TYPE": "INVOICE", "BUSINESS_ABN": "12 345 678 901", "SUPPLIER_NAME": "Acme Pty Ltd",
    "BUSINESS_ADDRESS": "1 George St, Sydney NSW 2000", "PAYER_NAME": "Jane Citizen",
    "PAYER_ADDRESS": "2 Pitt St, Sydney NSW 2000", "INVOICE_DATE": "5 March 2024",
    "LINE_ITEM_DESCRIPTIONS": "Widget | Gadget, large | Service fee", "LINE_ITEM_QUANTITIES": "2 | 1 | NOT_FOUND",
    "LINE_ITEM_PRICES": "$1,010.00 | $5.50 | NOT_FOUND", "LINE_ITEM_TOTAL_PRICES": "$2,020.00 | $5.50 | $30.00",
    "IS_GST_INCLUDED": "yes", "GST_AMOUNT": "$186.87", "TOTAL_AMOUNT": "$2,055.50",
}
RECEIPT = {
    "DOCUMENT_TYPE": "receipt", "BUSINESS_ABN": "98-765-432-109", "SUPPLIER_NAME": "Corner Cafe",
    "BUSINESS_ADDRESS": "3 King St, Newtown NSW 2042", "PAYER_NAME": "NOT_FOUND", "PAYER_ADDRESS": "",
    "INVOICE_DATE": "2024-03-07", "LINE_ITEM_DESCRIPTIONS": "Flat white | Croissant",
    "LINE_ITEM_QUANTITIES": "2x | 1", "LINE_ITEM_PRICES": "4.50 | 5.00", "LINE_ITEM_TOTAL_PRICES": "$9.00 | $5.00",
    "IS_GST_INCLUDED": "true", "GST_AMOUNT": "$1.27", "TOTAL_AMOUNT": "$14.00",
}
BANK = {
    "DOCUMENT_TYPE": "BANK_STATEMENT", "STATEMENT_DATE_RANGE": "1 Feb 2024 to 29 Feb 2024",
    "LINE_ITEM_DESCRIPTIONS": "EFTPOS Coffee Club Sydney | Salary ACME | Rent February",
    "TRANSACTION_DATES": "01/02/2024 | 02/02/2024 | 03/02/2024",
    "TRANSACTION_AMOUNTS_PAID": "$4.50 | NOT_FOUND | $1,200.00",
}
BANK_DEBITS = {  # what the pipeline emits for BANK: debit rows only
    "DOCUMENT_TYPE": "BANK_STATEMENT", "STATEMENT_DATE_RANGE": "01/02/2024 - 29/02/2024",
    "LINE_ITEM_DESCRIPTIONS": "EFTPOS Coffee Club Sydney | Rent February",
    "TRANSACTION_DATES": "01/02/2024 | 03/02/2024", "TRANSACTION_AMOUNTS_PAID": "$4.50 | $1200.00",
}


def record(image: str, doc_type: str | None, fields: dict[str, str], total_s: float = 1.0) -> dict:
    return {"index": 0, "image": image, "document_type": doc_type, "fields": dict(fields), "error": None,
            "timings": {"total_s": total_s}, "rank": 0}


def test_perfect_answers_score_one_on_every_field() -> None:
    cases = [(INVOICE, record("i.png", "INVOICE", INVOICE)), (RECEIPT, record("r.png", "RECEIPT", RECEIPT)),
             (BANK, record("b.png", "BANK_STATEMENT", BANK_DEBITS))]
    for truth, rec in cases:
        score = score_document(rec, truth, SCHEMA)
        assert {name: s.f1 for name, s in score.fields.items()} == {name: 1.0 for name in score.fields}


def test_scored_on_true_type_fields() -> None:
    # a bank statement mistaken for an invoice: the bank fields are missing from the answer -> 0
    rec = record("b.png", "INVOICE", {"DOCUMENT_TYPE": "INVOICE", "LINE_ITEM_DESCRIPTIONS": "Coffee"})
    score = score_document(rec, BANK, SCHEMA)
    assert score.true_type == "BANK_STATEMENT" and score.predicted_type == "INVOICE"
    assert list(score.fields) == SCHEMA.types["BANK_STATEMENT"].field_names
    assert score.f1 == 0.0
    # a receipt called an invoice with every field right loses exactly the DOCUMENT_TYPE field
    score = score_document(record("r.png", "INVOICE", {**RECEIPT, "DOCUMENT_TYPE": "INVOICE"}), RECEIPT, SCHEMA)
    assert score.fields["DOCUMENT_TYPE"].f1 == 0.0
    assert score.f1 == pytest.approx(13 / 14)


def test_predicted_type_fills_document_type_field() -> None:
    fields = {k: v for k, v in INVOICE.items() if k != "DOCUMENT_TYPE"}
    assert score_document(record("i.png", "INVOICE", fields), INVOICE, SCHEMA).f1 == 1.0


def test_failed_document_scores_zero_where_truth_has_values() -> None:
    rec = {**record("i.png", None, {}), "error": {"kind": "OOM", "message": "out of memory"}}
    score = score_document(rec, INVOICE, SCHEMA)
    assert score.fields["TOTAL_AMOUNT"].f1 == 0.0
    assert score.f1 == 0.0


# ---------------------------------------------------------------- aggregates (a small schema, hand-computed)

def mini_schema():
    raw = OmegaConf.to_container(OmegaConf.load(DEFAULT_SCHEMA_PATH))
    raw["fields"] = {"DOCUMENT_TYPE": {"kind": "doc_type"}, "TOTAL": {"kind": "money"},
                     "ITEMS": {"kind": "text", "list": True}, "DATES": {"kind": "date", "list": True},
                     "PAID": {"kind": "money", "list": True}}
    raw["types"] = {"SLIP": {"fields": ["DOCUMENT_TYPE", "TOTAL", "ITEMS"]},
                    "BANK": {"flow": "bank", "fields": ["DOCUMENT_TYPE", "DATES", "PAID"]}}
    raw["type_aliases"], raw["field_aliases"], raw["default_type"] = {}, {}, "SLIP"
    raw["detection_types"] = {"bank_columns": "BANK"}
    return load_schema(raw)


def write_mini_truth(path: Path) -> None:
    rows = [
        ["image_file", "DOCUMENT_TYPE", "TOTAL", "ITEMS", "DATES", "PAID"],
        ["s1.png", "SLIP", "$10.00", "apple | pear | fig", "", ""],
        ["s2.png", "SLIP", "$5.00", "milk", "", ""],
        ["b1.png", "BANK", "", "", "01/02/2024 | 03/02/2024 | 05/02/2024", "$5.00 | NOT_FOUND | $7.00"],
        ["extra.png", "SLIP", "$1.00", "tea", "", ""],
    ]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def mini_records() -> list[dict]:
    return [
        record("s1.png", "SLIP", {"TOTAL": "$10.00", "ITEMS": "apple | pear"}, 1.0),            # 1, 1, 0.8
        record("s2.png", "BANK", {"DATES": "01/01/2024", "PAID": "$5.00"}, 3.0),                # 0, 0, 0
        record("b1.png", "BANK", {"DATES": "01/02/2024 | 05/02/2024", "PAID": "$5.00 | $7.50"}, 5.0),  # 1, 1, 0.5
        record("x.png", "SLIP", {"TOTAL": "$1.00"}, 2.0),                                        # no truth
    ]


def test_evaluate_hand_computed(tmp_path: Path) -> None:
    schema = mini_schema()
    write_mini_truth(tmp_path / "gt.csv")
    truth = load_ground_truth(tmp_path / "gt.csv", schema)
    records = mini_records()
    ev = evaluate(records, truth, schema, elapsed_s=2.0)

    slip = ev["per_field"]["SLIP"]
    assert slip["DOCUMENT_TYPE"]["mean"] == 0.5 and slip["DOCUMENT_TYPE"]["n"] == 2
    assert slip["DOCUMENT_TYPE"]["sd"] == pytest.approx(math.sqrt(0.5))
    assert slip["DOCUMENT_TYPE"]["ci95"] == [0.0, 1.0]  # 0.5 +- 12.706*0.707/1.414, clipped
    assert slip["ITEMS"]["mean"] == pytest.approx(0.4)
    bank = ev["per_field"]["BANK"]
    assert bank["DATES"]["mean"] == 1.0  # the credit row was dropped from the truth
    assert bank["PAID"]["mean"] == 0.5  # $7.50 vs $7.00 is outside both tolerances
    assert bank["PAID"]["sd"] is None and bank["PAID"]["ci95"] is None  # n = 1

    assert ev["per_type"]["SLIP"]["macro_f1"] == pytest.approx((0.5 + 0.5 + 0.4) / 3)
    assert ev["per_type"]["SLIP"]["micro_f1"] == pytest.approx(8 / 15)  # matched 1+1+2, items 2+2+5 + 2+2+2
    assert ev["per_type"]["BANK"]["macro_f1"] == pytest.approx(2.5 / 3)
    assert ev["per_type"]["BANK"]["micro_f1"] == pytest.approx(8 / 10)  # matched 1+2+1, items 2+4+4
    overall = ev["overall"]
    assert overall["macro_f1"] == pytest.approx(((1.4 / 3) + (2.5 / 3)) / 2)
    assert overall["micro_f1"] == pytest.approx(16 / 25)
    assert overall["document_f1_mean"] == pytest.approx((2.8 / 3 + 0 + 2.5 / 3) / 3)
    assert overall["document_f1_median"] == pytest.approx(2.5 / 3)
    assert overall["type_accuracy"] == pytest.approx(2 / 3)
    assert ev["documents_scored"] == 3

    assert ev["confusion_matrix"] == {"true": ["SLIP", "BANK"], "predicted": ["SLIP", "BANK"],
                                      "matrix": [[1, 1], [0, 1]]}
    assert ev["throughput"]["docs_per_s"] == 2.0
    assert ev["throughput"]["time_per_document_s"]["BANK"]["mean"] == 4.0
    assert ev["documents_without_ground_truth"] == ["x.png"]
    assert ev["ground_truth_without_results"] == ["extra.png"]

    assert records[0]["evaluation"]["f1"] == pytest.approx(2.8 / 3)
    assert records[0]["evaluation"]["fields"]["ITEMS"]["f1"] == pytest.approx(0.8)
    assert records[3]["evaluation"] is None
    json.dumps(ev, allow_nan=False)  # evaluation.json must be strict JSON


def test_confusion_matrix_keeps_unknown_and_missing_predictions() -> None:
    scores = [score_document(record("a.png", None, {}), INVOICE, SCHEMA),
              score_document(record("b.png", "POSTCARD", {}), INVOICE, SCHEMA)]
    cm = confusion_matrix(scores, SCHEMA)
    assert cm["predicted"] == ["INVOICE", "RECEIPT", "BANK_STATEMENT", "POSTCARD", "NONE"]
    assert cm["matrix"][0] == [0, 0, 0, 1, 1]


def test_summarize_ci_matches_t_interval() -> None:
    values = [0.2, 0.4, 0.6, 0.8, 1.0]
    s = summarize(values)
    half = 2.776 * s["sd"] / math.sqrt(5)  # t(0.975, 4)
    assert s["mean"] == pytest.approx(0.6) and s["median"] == 0.6
    assert s["ci95"] == pytest.approx([0.6 - half, 0.6 + half])
    big = summarize([0.0, 1.0] * 50)  # df = 99: t ~ 1.984
    assert big["ci95"][1] - 0.5 == pytest.approx(1.984 * big["sd"] / 10, abs=1e-3)
    assert summarize([])["mean"] is None


def test_missing_comparator_setting_is_a_clear_error() -> None:
    raw = OmegaConf.to_container(OmegaConf.load(DEFAULT_SCHEMA_PATH))
    raw["comparators"]["money"].pop("rel_tolerance")
    with pytest.raises(ValueError, match=r"comparators\.money needs rel_tolerance"):
        score_document(record("i.png", "INVOICE", INVOICE), INVOICE, load_schema(raw))


def test_evaluate_without_elapsed_time(tmp_path: Path) -> None:
    schema = mini_schema()
    write_mini_truth(tmp_path / "gt.csv")
    ev = evaluate(mini_records(), load_ground_truth(tmp_path / "gt.csv", schema), schema)
    assert ev["throughput"]["docs_per_s"] is None and ev["throughput"]["elapsed_s"] is None
    assert ev["throughput"]["documents"] == 4


# ---------------------------------------------------------------- CLI hook

def write_truth_csv(path: Path, rows: list[tuple[str, dict[str, str]]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_file", *SCHEMA.all_field_names])
        for name, fields in rows:
            writer.writerow([name, *(fields.get(f, "NOT_FOUND") for f in SCHEMA.all_field_names)])


def test_main_evaluates_results_file(tmp_path: Path) -> None:
    write_truth_csv(tmp_path / "gt.csv", [("i.png", INVOICE), ("r.png", RECEIPT), ("b.png", BANK)])
    records = [record("i.png", "INVOICE", INVOICE), record("r.png", "RECEIPT", RECEIPT),
               record("b.png", "BANK_STATEMENT", BANK_DEBITS)]
    results = tmp_path / "run" / "results.jsonl"
    results.parent.mkdir()
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    (results.parent / "summary.json").write_text(json.dumps({"elapsed_s": 1.5}))
    out = tmp_path / "eval"
    ev = main(results, tmp_path / "gt.csv", out)
    assert ev["throughput"]["docs_per_s"] == 2.0  # 3 documents in the run's 1.5 s
    assert json.loads((out / "evaluation.json").read_text()) == json.loads(json.dumps(ev))
    for per_type in ev["per_field"].values():
        assert all(s["mean"] == 1.0 for s in per_type.values())
    assert ev["overall"]["micro_f1"] == 1.0 and ev["overall"]["macro_f1"] == 1.0
    scored = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["evaluation"]["f1"] for r in scored] == [1.0, 1.0, 1.0]
    assert (out / "report.md").is_file()


def test_main_rejects_bad_truth_before_writing(tmp_path: Path) -> None:
    (tmp_path / "gt.csv").write_text("image_file,DOCUMENT_TYPE\na.png,postcard\n")
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"gt\.csv:2:.*postcard"):
        main(tmp_path / "results.jsonl", tmp_path / "gt.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_main_missing_results_file(tmp_path: Path) -> None:
    write_truth_csv(tmp_path / "gt.csv", [("i.png", INVOICE)])
    with pytest.raises(ValueError, match="results file not found"):
        main(tmp_path / "nope.jsonl", tmp_path / "gt.csv", tmp_path / "out")


# ---------------------------------------------------------------- generated documents

def debit_rows_only(truth: dict[str, str]) -> dict[str, str]:
    """What a perfect bank pipeline answers: the rows with a paid amount (the truth lists credits too)."""
    columns = ["LINE_ITEM_DESCRIPTIONS", "TRANSACTION_DATES", "TRANSACTION_AMOUNTS_PAID"]
    rows = list(zip(*(truth[c].split(" | ") for c in columns)))
    debits = [row for row in rows if row[2] != "NOT_FOUND"]
    answer = dict(truth)
    for i, column in enumerate(columns):
        answer[column] = " | ".join(row[i] for row in debits) or "NOT_FOUND"
    return answer


def test_generated_truth_as_answers_scores_one_everywhere(tmp_path: Path) -> None:
    from docvlm.synth import all_layouts, generate_corpus

    counts = {doc_type: 2 * len(layouts) for doc_type, layouts in all_layouts().items()}
    truth = load_ground_truth(generate_corpus(tmp_path, counts=counts, seed=7), SCHEMA)
    records = []
    for image, fields in truth.items():
        answer = debit_rows_only(fields) if fields["DOCUMENT_TYPE"] == "BANK_STATEMENT" else fields
        records.append(record(image, fields["DOCUMENT_TYPE"], answer))
    ev = evaluate(records, truth, SCHEMA)
    assert ev["documents_scored"] == sum(counts.values())
    assert set(ev["per_field"]) == set(SCHEMA.types)
    for doc_type, fields in ev["per_field"].items():
        assert {name: s["mean"] for name, s in fields.items()} == {name: 1.0 for name in fields}, doc_type
    assert all(r["evaluation"]["f1"] == 1.0 for r in records)
    # and the credit rows really were there to drop
    assert any("NOT_FOUND" in f["TRANSACTION_AMOUNTS_PAID"].split(" | ") for f in truth.values()
               if f["DOCUMENT_TYPE"] == "BANK_STATEMENT")


# ---------------------------------------------------------------- partial ground truth

def write_partial_truth(path: Path) -> None:
    path.write_text("image_file,DOCUMENT_TYPE,SUPPLIER_NAME,TOTAL_AMOUNT\n"
                    "r1.jpg,RECEIPT,Corner Cafe,$9.00\n"
                    "r2.jpg,RECEIPT,,$4.50\n"
                    "r3.jpg,RECEIPT,NOT_FOUND,$7.00\n"
                    "inv.pdf#page=1,INVOICE,Acme Pty Ltd,\n"
                    "inv.pdf#page=2,INVOICE,,$25.50\n")


def partial_records() -> list[dict]:
    return [
        record("r1.jpg", "RECEIPT", {"SUPPLIER_NAME": "Corner Cafe", "TOTAL_AMOUNT": "$9.00", "GST_AMOUNT": "$1"}),
        record("r2.jpg", "INVOICE", {"SUPPLIER_NAME": "Someone", "TOTAL_AMOUNT": "$4.50"}),
        record("r3.jpg", "RECEIPT", {"SUPPLIER_NAME": "Bakery", "TOTAL_AMOUNT": "$7.00"}),
        record("inv.pdf#page=1", "INVOICE", {"SUPPLIER_NAME": "Acme Pty Ltd", "TOTAL_AMOUNT": "$25.50"}),
        record("inv.pdf#page=2", "INVOICE", {"TOTAL_AMOUNT": "$25.50"}),
        record("inv.pdf#page=3", "INVOICE", {"TOTAL_AMOUNT": "$25.50"}),
    ]


def test_partial_truth_scored_on_labelled_fields_only(tmp_path: Path) -> None:
    write_partial_truth(tmp_path / "gt.csv")
    records = partial_records()
    ev = evaluate(records, load_ground_truth(tmp_path / "gt.csv", SCHEMA), SCHEMA)
    receipt = ev["per_field"]["RECEIPT"]
    assert list(receipt) == ["DOCUMENT_TYPE", "SUPPLIER_NAME", "TOTAL_AMOUNT"]  # nothing else is scored
    assert receipt["SUPPLIER_NAME"]["n"] == 2 and receipt["SUPPLIER_NAME"]["mean"] == 0.5  # r2 not labelled
    assert receipt["TOTAL_AMOUNT"]["n"] == 3 and receipt["TOTAL_AMOUNT"]["mean"] == 1.0
    assert receipt["DOCUMENT_TYPE"]["mean"] == pytest.approx(2 / 3)
    assert ev["per_type"]["RECEIPT"]["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert records[1]["evaluation"]["f1"] == pytest.approx(0.5)  # type wrong, total right: 2 fields only
    assert ev["scored_fields"]["RECEIPT"] == {
        "documents": 3, "scored": {"DOCUMENT_TYPE": 3, "SUPPLIER_NAME": 2, "TOTAL_AMOUNT": 3},
        "not_labelled": [f for f in SCHEMA.types["RECEIPT"].field_names
                         if f not in ("DOCUMENT_TYPE", "SUPPLIER_NAME", "TOTAL_AMOUNT")]}
    assert ev["ground_truth_partial"] is True
    invoice = ev["per_field"]["INVOICE"]
    assert invoice["SUPPLIER_NAME"]["n"] == 1 and invoice["TOTAL_AMOUNT"]["n"] == 1  # each on its own page
    assert ev["documents_without_ground_truth"] == ["inv.pdf#page=3"]  # never page 1's or 2's row
    assert ev["documents_scored"] == 5


def test_full_truth_is_not_partial(tmp_path: Path) -> None:
    receipt = {**RECEIPT, "PAYER_ADDRESS": "NOT_FOUND"}  # an empty cell would not be labelled
    write_truth_csv(tmp_path / "gt.csv", [("i.png", INVOICE), ("r.png", receipt)])
    ev = evaluate([record("i.png", "INVOICE", INVOICE), record("r.png", "RECEIPT", RECEIPT)],
                  load_ground_truth(tmp_path / "gt.csv", SCHEMA), SCHEMA)
    assert ev["ground_truth_partial"] is False
    assert list(ev["per_field"]["INVOICE"]) == SCHEMA.types["INVOICE"].field_names
    assert all(s["n"] == 1 for s in ev["per_field"]["RECEIPT"].values())


def test_bank_truth_without_amounts_keeps_its_rows() -> None:
    # only the descriptions labelled: no amounts to tell debits from credits, so every row is kept
    truth = {"DOCUMENT_TYPE": "BANK_STATEMENT", "LINE_ITEM_DESCRIPTIONS": "Coffee | Rent"}
    score = score_document(record("b.png", "BANK_STATEMENT", {"LINE_ITEM_DESCRIPTIONS": "Coffee | Rent"}),
                           truth, SCHEMA)
    assert list(score.fields) == ["DOCUMENT_TYPE", "LINE_ITEM_DESCRIPTIONS"]
    assert score.fields["LINE_ITEM_DESCRIPTIONS"].f1 == 1.0


# ---------------------------------------------------------------- figures (issue 20)

def test_confidence_intervals_of_seconds_are_not_clipped_to_one() -> None:
    records = [record(f"{i}.png", "INVOICE", {}, total_s=t) for i, t in enumerate([1.5, 2.5, 3.5, 2.0])]
    times = evaluate_times(records)
    low, high = times["INVOICE"]["ci95"]
    assert low < 2.375 < high and high > 2.0  # was [1.51, 1.0]: clipped like an F1
    assert summarize([0.0, 1.0, 1.0])["ci95"][1] == 1.0  # F1 figures still are
    assert summarize([0.01, 0.02, 2.0], clip=(0.0, None))["ci95"][0] == 0.0  # seconds are never negative


def evaluate_times(records: list[dict]) -> dict:
    from docvlm.evaluate import throughput

    return throughput(records, 10.0)["time_per_document_s"]


def test_throughput_counts_only_documents_this_run_processed(tmp_path: Path) -> None:
    write_truth_csv(tmp_path / "gt.csv", [("i.png", INVOICE)])
    truth = load_ground_truth(tmp_path / "gt.csv", SCHEMA)
    resumed = evaluate([record("i.png", "INVOICE", INVOICE)], truth, SCHEMA, elapsed_s=0.05, processed=0)
    assert resumed["throughput"]["docs_per_s"] == 0.0  # a resume that did nothing: not 20 documents/s
    assert resumed["throughput"]["processed_this_run"] == 0 and resumed["throughput"]["documents"] == 1


def test_main_takes_processed_documents_and_model_from_the_summary(tmp_path: Path) -> None:
    write_truth_csv(tmp_path / "gt.csv", [("i.png", INVOICE), ("r.png", RECEIPT)])
    results = tmp_path / "run" / "results.jsonl"
    results.parent.mkdir()
    results.write_text("".join(json.dumps(r) + "\n" for r in [record("i.png", "INVOICE", INVOICE),
                                                               record("r.png", "RECEIPT", RECEIPT)]))
    summary = {"elapsed_s": 0.5, "processed_this_run": 1, "documents_per_s": 2.0,
               "config": {"model": {"name": "tiny_internvl", "tiny": True, "random_weights": False}}}
    (results.parent / "summary.json").write_text(json.dumps(summary))
    ev = main(results, tmp_path / "gt.csv", tmp_path / "eval")
    assert ev["throughput"]["docs_per_s"] == summary["documents_per_s"]
    assert ev["model"] == {"name": "tiny_internvl", "random_weights": True}


def test_main_rejects_truth_that_matches_no_result_before_writing(tmp_path: Path) -> None:
    from docvlm.errors import UserError

    write_truth_csv(tmp_path / "gt.csv", [("other.png", INVOICE)])
    (tmp_path / "results.jsonl").write_text(json.dumps(record("i.png", "INVOICE", INVOICE)) + "\n")
    with pytest.raises(UserError, match="none of its 1 rows matches"):
        main(tmp_path / "results.jsonl", tmp_path / "gt.csv", tmp_path / "out")
    assert not (tmp_path / "out").exists()
