"""THE normaliser: every kind, lists, alignment; used for predictions and ground truth alike."""

import pytest

from docvlm.normalize import find_dates, normalize_fields, normalize_value, parse_money, split_list
from docvlm.schema import load_schema

SCHEMA = load_schema()


@pytest.mark.parametrize("raw, expected", [
    ("05/03/2024", "05/03/2024"),
    ("5/3/24", "05/03/2024"),
    ("05-03-2024", "05/03/2024"),
    ("05.03.2024", "05/03/2024"),
    ("2024-03-05", "05/03/2024"),
    ("5th March 2024", "05/03/2024"),
    ("5 March, 2024", "05/03/2024"),
    ("March 5, 2024", "05/03/2024"),
    ("Tue 05 Mar 2024", "05/03/2024"),
    ("05-Mar-24", "05/03/2024"),
    ("05MAR2024", "05/03/2024"),
    ("Date: 05/03/2024", "05/03/2024"),
    ("03/25/2024", "25/03/2024"),      # only readable month first
    ("29/02/2024", "29/02/2024"),
    ("31/02/2024", "31/02/2024"),      # impossible: kept as written, never guessed
    ("sometime in March", "sometime in March"),
])
def test_dates_day_first(raw, expected):
    assert normalize_value(raw, "date", SCHEMA) == expected


def test_yearless_date_takes_the_given_year():
    assert normalize_value("05 Mar", "date", SCHEMA, year=2023) == "05/03/2023"
    assert normalize_value("5/3", "date", SCHEMA, year=2023) == "05/03/2023"
    assert normalize_value("05 Mar", "date", SCHEMA) == "05/03"  # no year known: not invented


@pytest.mark.parametrize("raw, expected", [
    ("01/03/2024 - 31/03/2024", "01/03/2024 - 31/03/2024"),
    ("1 March 2024 to 31 March 2024", "01/03/2024 - 31/03/2024"),
    ("01-03-2024 - 31-03-2024", "01/03/2024 - 31/03/2024"),
    ("Statement period: 1 Mar - 31 Mar 2024", "01/03/2024 - 31/03/2024"),
    ("15 Dec - 14 Jan 2024", "15/12/2023 - 14/01/2024"),
    ("2024-03-01 – 2024-03-31", "01/03/2024 - 31/03/2024"),
])
def test_date_ranges(raw, expected):
    assert normalize_value(raw, "date_range", SCHEMA) == expected


@pytest.mark.parametrize("raw, expected", [
    ("$1,020.22", "$1020.22"), ("1020.2", "$1020.20"), ("AUD 7", "$7.00"), ("$ 12", "$12.00"),
    ("-5", "-$5.00"), ("(12.50)", "-$12.50"), (".50", "$0.50"), ("2 items $15.00", "$15.00"),
    ("$1,234,567.891", "$1234567.89"), ("Free", "Free"),
])
def test_money(raw, expected):
    assert normalize_value(raw, "money", SCHEMA) == expected


def test_parse_money_keeps_sign_and_ignores_text():
    assert parse_money("-$1,000.00") == -1000.0
    assert parse_money("no amount") is None


@pytest.mark.parametrize("raw, expected", [
    ("12 345 678 901", "12345678901"), ("ABN: 12-345-678-901", "12345678901"),
    ("ABN 12345678901", "12345678901"), ("unreadable", "unreadable"),
])
def test_ids(raw, expected):
    assert normalize_value(raw, "id", SCHEMA) == expected


@pytest.mark.parametrize("raw, expected", [
    ("Yes", "true"), ("TRUE", "true"), ("1", "true"), ("Included", "true"), ("GST included", "true"),
    ("no", "false"), ("False", "false"), ("0", "false"), ("not included", "false"),
    ("GST not included", "false"), ("maybe", "maybe"),
])
def test_booleans(raw, expected):
    assert normalize_value(raw, "boolean", SCHEMA) == expected


@pytest.mark.parametrize("raw, expected", [
    ("3", "3"), ("3x", "3"), ("x3", "3"), ("3 EACH", "3"), ("2.50", "2.5"), ("1,000", "1000"), ("3.0", "3"),
])
def test_quantities(raw, expected):
    assert normalize_value(raw, "number", SCHEMA) == expected


@pytest.mark.parametrize("raw", [None, "", "NOT_FOUND", "Not Found", "none", "null", "N/A", "**NOT_FOUND**", " n/a. "])
def test_missing_spellings(raw):
    for kind in ("text", "money", "date", "id", "boolean"):
        assert normalize_value(raw, kind, SCHEMA) == "NOT_FOUND"


def test_text_and_type():
    assert normalize_value("  **Acme   Pty Ltd** ", "text", SCHEMA) == "Acme Pty Ltd"
    assert normalize_value('"Bob Smith",', "text", SCHEMA) == "Bob Smith"
    assert normalize_value("tax invoice", "doc_type", SCHEMA) == "INVOICE"
    assert normalize_value("Bank Statement", "doc_type", SCHEMA) == "BANK_STATEMENT"
    assert normalize_value("receipt", "doc_type", SCHEMA) == "RECEIPT"


def test_lists_money_comma_is_never_a_separator_inside_an_amount():
    assert normalize_value("$1,020.22", "money", SCHEMA, is_list=True) == "$1020.22"
    assert normalize_value("$5.00, $1,020.22", "money", SCHEMA, is_list=True) == "$5.00 | $1020.22"
    assert normalize_value("$5.00|$1,020.22 |  $3", "money", SCHEMA, is_list=True) == "$5.00 | $1020.22 | $3.00"
    assert split_list("$1,020.22 | $5", SCHEMA) == ["$1,020.22", "$5"]


def test_lists_other_kinds():
    assert normalize_value("1, 2, 3", "number", SCHEMA, is_list=True) == "1 | 2 | 3"
    assert normalize_value("Cable, HDMI 2m | Mouse", "text", SCHEMA, is_list=True) == "Cable, HDMI 2m | Mouse"
    assert normalize_value("Cable, HDMI 2m", "text", SCHEMA, is_list=True) == "Cable, HDMI 2m"  # text: no comma split
    assert normalize_value("05/03/2024, 06/03/2024", "date", SCHEMA, is_list=True) == "05/03/2024 | 06/03/2024"
    assert normalize_value("March 5, 2024", "date", SCHEMA, is_list=True) == "05/03/2024"
    assert normalize_value("Widget\nGadget", "text", SCHEMA, is_list=True) == "Widget | Gadget"
    assert normalize_value("$4 | N/A | $5", "money", SCHEMA, is_list=True) == "$4.00 | NOT_FOUND | $5.00"
    assert normalize_value("N/A | none", "money", SCHEMA, is_list=True) == "NOT_FOUND"


def test_normalize_fields_all_fields_and_aligned_lists():
    fields = normalize_fields({"LINE_ITEM_DESCRIPTIONS": "A | B | C", "LINE_ITEM_PRICES": "$1 | $2",
                               "TOTAL_AMOUNT": "$3", "EXTRA": "dropped"}, SCHEMA.type_spec("INVOICE"), SCHEMA)
    assert list(fields) == SCHEMA.type_spec("INVOICE").field_names
    assert fields["LINE_ITEM_PRICES"] == "$1.00 | $2.00 | NOT_FOUND"
    assert fields["LINE_ITEM_QUANTITIES"] == "NOT_FOUND"  # absent as a whole: stays NOT_FOUND
    assert fields["TOTAL_AMOUNT"] == "$3.00" and fields["SUPPLIER_NAME"] == "NOT_FOUND"


def test_normaliser_is_idempotent_on_canonical_values():
    canonical = {"BUSINESS_ABN": "12345678901", "INVOICE_DATE": "05/03/2024", "LINE_ITEM_DESCRIPTIONS": "A | B",
                 "LINE_ITEM_QUANTITIES": "2 | 1", "LINE_ITEM_PRICES": "$1020.22 | $0.50", "IS_GST_INCLUDED": "true",
                 "GST_AMOUNT": "$92.75", "SUPPLIER_NAME": "Acme Pty Ltd", "DOCUMENT_TYPE": "INVOICE"}
    once = normalize_fields(canonical, SCHEMA.type_spec("INVOICE"), SCHEMA)
    assert normalize_fields(once, SCHEMA.type_spec("INVOICE"), SCHEMA) == once
    for name, value in canonical.items():
        assert once[name] == value


def test_find_dates_in_order_and_not_in_amounts():
    found = find_dates("from 1 Mar to 31/03/2024, paid $10.00 on 2024-03-05", SCHEMA)
    assert [(d.day, d.month, d.year) for d in found] == [(1, 3, None), (31, 3, 2024), (5, 3, 2024)]
    assert find_dates("4.50 and 1,230.06", SCHEMA) == []
