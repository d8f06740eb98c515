"""Ground-truth loading: CSV and JSONL, matching by path/name/stem, and clear errors on malformed files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from docvlm.ground_truth import load_ground_truth
from docvlm.schema import load_schema

SCHEMA = load_schema()

INVOICE_FIELDS = SCHEMA.types["INVOICE"].field_names
BANK_FIELDS = SCHEMA.types["BANK_STATEMENT"].field_names
ALL_FIELDS = SCHEMA.all_field_names

INVOICE = {
    "DOCUMENT_TYPE": "tax invoice", "BUSINESS_ABN": "12 345 678 901", "SUPPLIER_NAME": "Acme Pty Ltd",
    "BUSINESS_ADDRESS": "1 George St, Sydney NSW 2000", "PAYER_NAME": "Jane Citizen",
    "PAYER_ADDRESS": "2 Pitt St, Sydney NSW 2000", "INVOICE_DATE": "05/03/2024",
    "LINE_ITEM_DESCRIPTIONS": "Widget | Gadget", "LINE_ITEM_QUANTITIES": "2 | 1",
    "LINE_ITEM_PRICES": "$10.00 | $5.50", "LINE_ITEM_TOTAL_PRICES": "$20.00 | $5.50",
    "IS_GST_INCLUDED": "true", "GST_AMOUNT": "$2.32", "TOTAL_AMOUNT": "$25.50",
}
BANK = {
    "DOCUMENT_TYPE": "BANK_STATEMENT", "STATEMENT_DATE_RANGE": "01/02/2024 - 29/02/2024",
    "LINE_ITEM_DESCRIPTIONS": "Coffee | Salary | Rent", "TRANSACTION_DATES": "01/02/2024 | 02/02/2024 | 03/02/2024",
    "TRANSACTION_AMOUNTS_PAID": "$4.50 | NOT_FOUND | $1200.00",
}


def csv_text(rows: list[tuple[str, dict[str, str]]], key: str = "image_file") -> str:
    """A CSV in the evaluator's format: every field a column, NOT_FOUND where a field does not apply."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([key, *ALL_FIELDS])
    for name, fields in rows:
        writer.writerow([name, *(fields.get(f, "NOT_FOUND") for f in ALL_FIELDS)])
    return buf.getvalue()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_loads_true_type_fields_only(tmp_path: Path) -> None:
    path = write(tmp_path, "gt.csv", csv_text([("docs/inv_001.png", INVOICE), ("bank_001.png", BANK)]))
    truth = load_ground_truth(path, SCHEMA)
    assert len(truth) == 2
    inv = truth["docs/inv_001.png"]
    assert inv["DOCUMENT_TYPE"] == "INVOICE"  # alias mapped to the canonical type
    assert sorted(inv) == sorted(INVOICE_FIELDS)
    assert inv["TOTAL_AMOUNT"] == "$25.50"  # kept as written; scoring normalises both sides
    assert sorted(truth["bank_001.png"]) == sorted(BANK_FIELDS)


@pytest.mark.parametrize("key", ["filename", "image_name", "file", "Image_File"])
def test_csv_accepts_every_key_column(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, "gt.csv", csv_text([("a.png", INVOICE)], key=key))
    assert list(load_ground_truth(path, SCHEMA)) == ["a.png"]


def test_csv_with_bom_and_blank_lines(tmp_path: Path) -> None:
    text = "\ufeff" + csv_text([("a.png", INVOICE)]) + "\n\n"
    assert list(load_ground_truth(write(tmp_path, "gt.csv", text), SCHEMA)) == ["a.png"]


def test_jsonl_with_arrays_and_nulls(tmp_path: Path) -> None:
    record = {"image": "b.png", "DOCUMENT_TYPE": "statement", "STATEMENT_DATE_RANGE": "01/02/2024 - 29/02/2024",
              "LINE_ITEM_DESCRIPTIONS": ["Coffee", "Salary"], "TRANSACTION_DATES": ["01/02/2024", "02/02/2024"],
              "TRANSACTION_AMOUNTS_PAID": ["$4.50", None]}
    path = write(tmp_path, "gt.jsonl", json.dumps(record) + "\n\n")
    truth = load_ground_truth(path, SCHEMA)["b.png"]
    assert truth["DOCUMENT_TYPE"] == "BANK_STATEMENT"
    assert truth["LINE_ITEM_DESCRIPTIONS"] == "Coffee | Salary"
    assert truth["TRANSACTION_AMOUNTS_PAID"] == "$4.50 | NOT_FOUND"


def test_match_by_path_then_name_then_stem(tmp_path: Path) -> None:
    rows = [("set1/a.png", INVOICE), ("b.jpg", INVOICE), ("c.pdf", INVOICE), ("x/d.png", INVOICE), ("y/d.png", INVOICE)]
    truth = load_ground_truth(write(tmp_path, "gt.csv", csv_text(rows)), SCHEMA)
    assert truth.match("set1/a.png") == "set1/a.png"
    assert truth.match("./set1/a.png") == "set1/a.png"
    assert truth.match("other/a.png") == "set1/a.png"  # by base name
    assert truth.match("b.jpg") == "b.jpg"
    assert truth.match("scans/c.png") == "c.pdf"  # by stem
    assert truth.match("x/d.png") == "x/d.png"  # exact path wins over an ambiguous name
    assert truth.match("z/d.png") is None  # two rows share the name: not guessed
    assert truth.match("missing.png") is None


def test_match_windows_separators(tmp_path: Path) -> None:
    truth = load_ground_truth(write(tmp_path, "gt.csv", csv_text([("set1\\a.png", INVOICE)])), SCHEMA)
    assert truth.match("set1/a.png") == "set1/a.png"


# ---------------------------------------------------------------- malformed files

def expect_error(path: Path, *fragments: str) -> None:
    with pytest.raises(ValueError) as info:
        load_ground_truth(path, SCHEMA)
    message = str(info.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file(tmp_path: Path) -> None:
    expect_error(tmp_path / "nope.csv", "not found")


def test_unsupported_format(tmp_path: Path) -> None:
    expect_error(write(tmp_path, "gt.xlsx", "x"), "unsupported", ".xlsx")


def test_empty_csv(tmp_path: Path) -> None:
    expect_error(write(tmp_path, "gt.csv", ""), ":1:", "header")


def test_header_only_csv(tmp_path: Path) -> None:
    expect_error(write(tmp_path, "gt.csv", csv_text([])), "no ground-truth rows")


def test_csv_repeated_column(tmp_path: Path) -> None:
    text = csv_text([("a.png", INVOICE)]).replace("TOTAL_AMOUNT", "GST_AMOUNT", 1)
    expect_error(write(tmp_path, "gt.csv", text), ":1:", "GST_AMOUNT appear more than once")


def test_csv_unterminated_quote(tmp_path: Path) -> None:
    text = csv_text([("a.png", INVOICE)]) + 'b.png,"INVOICE\n'
    expect_error(write(tmp_path, "gt.csv", text), "malformed CSV")


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "gt.csv"
    path.write_bytes(csv_text([("caf\u00e9.png", INVOICE)]).encode("latin-1"))
    expect_error(path, "not UTF-8")


def test_csv_without_key_column(tmp_path: Path) -> None:
    text = csv_text([("a.png", INVOICE)]).replace("image_file", "picture", 1)
    expect_error(write(tmp_path, "gt.csv", text), ":2:", "file-name column", "image_file")


def test_csv_row_with_wrong_cell_count(tmp_path: Path) -> None:
    lines = csv_text([("a.png", INVOICE), ("b.png", INVOICE)]).splitlines()
    lines[2] = lines[2] + ",extra"
    expect_error(write(tmp_path, "gt.csv", "\n".join(lines) + "\n"), ":3:", "cells")


def test_csv_unknown_type(tmp_path: Path) -> None:
    rows = [("a.png", INVOICE), ("b.png", {**INVOICE, "DOCUMENT_TYPE": "postcard"})]
    expect_error(write(tmp_path, "gt.csv", csv_text(rows)), ":3:", "'postcard'", "not a known type")


def test_csv_without_type_column(tmp_path: Path) -> None:
    text = csv_text([("a.png", INVOICE)]).replace("DOCUMENT_TYPE", "KIND", 1)
    expect_error(write(tmp_path, "gt.csv", text), ":2:", "DOCUMENT_TYPE")


def test_csv_misspelt_field_column_is_a_warning_with_a_suggestion(tmp_path: Path, caplog) -> None:
    text = csv_text([("a.png", INVOICE)]).replace("TOTAL_AMOUNT", "TOTAL", 1)
    truth = load_ground_truth(write(tmp_path, "gt.csv", text), SCHEMA)
    assert "TOTAL_AMOUNT" not in truth["a.png"]  # partial truth: not labelled, not scored
    assert "column 'TOTAL' is not a schema field (did you mean TOTAL_AMOUNT?)" in caplog.text


def test_csv_empty_type_is_an_error(tmp_path: Path) -> None:
    expect_error(write(tmp_path, "gt.csv", "image_file,DOCUMENT_TYPE,TOTAL_AMOUNT\na.png,,$1.00\n"),
                 ":2:", "empty DOCUMENT_TYPE")


def test_csv_duplicate_image(tmp_path: Path) -> None:
    text = csv_text([("a.png", INVOICE), ("b.png", INVOICE), ("./a.png", INVOICE)])
    expect_error(write(tmp_path, "gt.csv", text), ":4:", "duplicate", "line 2")


def test_csv_empty_key(tmp_path: Path) -> None:
    expect_error(write(tmp_path, "gt.csv", csv_text([(" ", INVOICE)])), ":2:", "empty")


def test_bank_lists_of_different_lengths(tmp_path: Path) -> None:
    bad = {**BANK, "TRANSACTION_AMOUNTS_PAID": "$4.50 | $1200.00"}  # credit row dropped instead of NOT_FOUND
    expect_error(write(tmp_path, "gt.csv", csv_text([("b.png", bad)])), ":2:", "differ in length",
                 "TRANSACTION_AMOUNTS_PAID 2")


def test_jsonl_invalid_json(tmp_path: Path) -> None:
    good = json.dumps({"image": "a.png", **INVOICE})
    expect_error(write(tmp_path, "gt.jsonl", good + "\n" + good.replace("a.png", "b.png")[:-5] + "\n"),
                 ":2:", "invalid JSON")


def test_jsonl_not_an_object(tmp_path: Path) -> None:
    expect_error(write(tmp_path, "gt.jsonl", '["a.png", "INVOICE"]\n'), ":1:", "JSON object")


def test_errors_are_user_errors() -> None:
    from docvlm.errors import UserError
    from docvlm.ground_truth import GroundTruthError

    assert issubclass(GroundTruthError, UserError) and issubclass(GroundTruthError, ValueError)


# ---------------------------------------------------------------- partial ground truth (real-world files)

def test_partial_csv_keeps_only_labelled_fields(tmp_path: Path) -> None:
    text = ("image_file,DOCUMENT_TYPE,SUPPLIER_NAME,TOTAL_AMOUNT\n"
            "r1.jpg,RECEIPT,Corner Cafe,$9.00\n"
            "r2.jpg,RECEIPT,,$4.50\n"          # empty cell: not labelled
            "r3.jpg,RECEIPT,NOT_FOUND,\n")     # NOT_FOUND: the field does not apply (a label)
    truth = load_ground_truth(write(tmp_path, "gt.csv", text), SCHEMA)
    assert truth["r1.jpg"] == {"DOCUMENT_TYPE": "RECEIPT", "SUPPLIER_NAME": "Corner Cafe", "TOTAL_AMOUNT": "$9.00"}
    assert truth["r2.jpg"] == {"DOCUMENT_TYPE": "RECEIPT", "TOTAL_AMOUNT": "$4.50"}
    assert truth["r3.jpg"] == {"DOCUMENT_TYPE": "RECEIPT", "SUPPLIER_NAME": "NOT_FOUND"}


def test_full_csv_labels_every_field(tmp_path: Path) -> None:
    truth = load_ground_truth(write(tmp_path, "gt.csv", csv_text([("a.png", INVOICE)])), SCHEMA)
    assert sorted(truth["a.png"]) == sorted(INVOICE_FIELDS)


def test_partial_jsonl(tmp_path: Path) -> None:
    record = {"file": "b.png", "DOCUMENT_TYPE": "BANK_STATEMENT", "STATEMENT_DATE_RANGE": "",
              "TRANSACTION_AMOUNTS_PAID": None}  # "" not labelled, null = NOT_FOUND, the rest absent
    truth = load_ground_truth(write(tmp_path, "gt.jsonl", json.dumps(record) + "\n"), SCHEMA)
    assert truth["b.png"] == {"DOCUMENT_TYPE": "BANK_STATEMENT", "TRANSACTION_AMOUNTS_PAID": "NOT_FOUND"}


def test_bank_lists_checked_only_where_labelled(tmp_path: Path) -> None:
    record = {"file": "b.png", "DOCUMENT_TYPE": "BANK_STATEMENT", "TRANSACTION_DATES": ["01/02/2024", "02/02/2024"],
              "TRANSACTION_AMOUNTS_PAID": ["$4.50", "$1.00"]}
    truth = load_ground_truth(write(tmp_path, "gt.jsonl", json.dumps(record) + "\n"), SCHEMA)
    assert "LINE_ITEM_DESCRIPTIONS" not in truth["b.png"]
    record["TRANSACTION_DATES"] = ["01/02/2024"]
    expect_error(write(tmp_path, "gt2.jsonl", json.dumps(record) + "\n"), ":1:", "differ in length")


# ---------------------------------------------------------------- PDF pages

def test_a_page_matches_only_its_own_row(tmp_path: Path) -> None:
    rows = [("inv.pdf#page=1", INVOICE), ("set/two.pdf#page=2", INVOICE), ("whole.pdf", INVOICE)]
    truth = load_ground_truth(write(tmp_path, "gt.csv", csv_text(rows)), SCHEMA)
    assert truth.match("inv.pdf#page=1") == "inv.pdf#page=1"
    assert truth.match("inv.pdf#page=2") is None  # page 1's row is not page 2's (no stem fallback)
    assert truth.match("inv.pdf#page=12") is None
    assert truth.match("scans/inv.pdf#page=1") == "inv.pdf#page=1"  # by name, same page
    assert truth.match("two.pdf#page=2") == "set/two.pdf#page=2"
    assert truth.match("two.pdf#page=1") is None
    assert truth.match("two.png") is None  # an image is page 1 of nothing but itself
    assert truth.match("whole.pdf#page=1") == "whole.pdf"  # a row keyed by the file alone is page 1's
    assert truth.match("whole.pdf#page=2") is None
    assert truth.match("whole.png") == "whole.pdf"  # by stem, as before


# ---------------------------------------------------------------- rows against the documents found

def test_rows_matching_no_document_is_one_clear_error(tmp_path: Path) -> None:
    from docvlm.ground_truth import GroundTruthError

    path = write(tmp_path, "gt.csv", csv_text([("a.png", INVOICE), ("b.png", INVOICE)]))
    truth = load_ground_truth(path, SCHEMA)
    with pytest.raises(GroundTruthError) as info:
        truth.check_documents(["x.png", "y.pdf#page=1"], "/data/docs")
    message = str(info.value)
    assert "\n" not in message
    for fragment in (str(path), "none of its 2 rows", "2 documents in /data/docs", "'a.png'", "'x.png'"):
        assert fragment in message


def test_rows_matching_some_documents_warn_how_many_did_not(tmp_path: Path, caplog) -> None:
    truth = load_ground_truth(write(tmp_path, "gt.csv", csv_text([("a.png", INVOICE), ("b.png", INVOICE),
                                                                  ("c.png", INVOICE)])), SCHEMA)
    assert truth.check_documents(["a.png", "z.png"], "/data/docs") == ["b.png", "c.png"]
    assert "2 of 3 ground-truth rows match no document in /data/docs (e.g. b.png, c.png)" in caplog.text
    caplog.clear()
    assert truth.check_documents(["a.png", "b.png", "c.png", "extra.png"], "/data/docs") == []
    assert truth.check_documents(["a.png"], "/data/docs", warn=False) == ["b.png", "c.png"]
    assert not caplog.text
