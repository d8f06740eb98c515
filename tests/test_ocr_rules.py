"""The OCR engine's layout rules and grounding on hand-made text lines (no OCR model: fast)."""

from __future__ import annotations

import numpy as np
import pytest

from docvlm.ocr import TextLine, find_ungrounded, load_ocr_rules
from docvlm.ocr.classify import detect_type
from docvlm.ocr.fields import read_sale
from docvlm.ocr.page import Page
from docvlm.ocr.reader import Reading, default_threads, fix_confusions, merge_line_boxes, rotate, skew_angle, space_out
from docvlm.ocr.statement import read_statement
from docvlm.schema import load_schema

SCHEMA = load_schema()
RULES = load_ocr_rules()


def line(text: str, x: float, y: float, size: float = 22, right: bool = False) -> TextLine:
    """A line of `text` at (x, y); `right=True`: x is its right edge (right-aligned cells)."""
    width = len(text) * size * (0.62 if text.isupper() else 0.52)
    x0 = x - width if right else x
    return TextLine(text, (x0, y, x0 + width, y + size * 1.15), 0.99)


def page(*lines: TextLine) -> Page:
    return Page.from_lines(lines, RULES.row_overlap)


def invoice_page() -> Page:
    return page(
        line("Bluegum Plumbing Pty Ltd", 80, 80, size=34), line("TAX INVOICE", 1160, 80, size=40, right=True),
        line("12 George St", 80, 130),
        line("Invoice Date:", 900, 130, right=True), line("05/03/2024", 1160, 130, right=True),
        line("Parramatta NSW 2150", 80, 160),
        line("Due Date:", 900, 160, right=True), line("19/03/2024", 1160, 160, right=True),
        line("ABN 51 824 753 556", 80, 190),
        line("Bill To:", 80, 260, size=24), line("Olivia Smith", 80, 292), line("7 King Rd", 80, 320),
        line("Newtown NSW 2042", 80, 348),
        line("Description", 90, 420), line("Qty", 795, 420, right=True), line("Unit Price", 965, 420, right=True),
        line("Amount", 1150, 420, right=True),
        line("Replace kitchen mixer tap including removal and", 90, 470), line("1", 795, 470, right=True),
        line("$235.95", 965, 470, right=True), line("$235.95", 1150, 470, right=True),
        line("disposal of old fittings", 90, 500),
        line("Labour", 90, 550), line("1.5", 795, 550, right=True), line("$120.00", 965, 550, right=True),
        line("$180.00", 1150, 550, right=True),
        line("Subtotal", 900, 620, right=True), line("$415.95", 1150, 620, right=True),
        line("GST (10%)", 900, 655, right=True), line("$41.60", 1150, 655, right=True),
        line("Total (AUD)", 900, 690, right=True), line("$457.55", 1150, 690, right=True),
    )


def test_invoice_fields_by_labels_and_positions() -> None:
    p = invoice_page()
    doc_type, evidence = detect_type(p, RULES, SCHEMA)
    assert doc_type == "INVOICE", evidence
    fields, _ = read_sale(p, SCHEMA.type_spec("INVOICE"), RULES, SCHEMA)
    assert fields["BUSINESS_ABN"] == "51824753556"
    assert fields["SUPPLIER_NAME"] == "Bluegum Plumbing Pty Ltd"  # not the larger title
    assert fields["BUSINESS_ADDRESS"] == "12 George St, Parramatta NSW 2150"
    assert fields["INVOICE_DATE"] == "05/03/2024"  # not the due date
    assert fields["PAYER_NAME"] == "Olivia Smith"
    assert fields["PAYER_ADDRESS"] == "7 King Rd, Newtown NSW 2042"
    assert fields["LINE_ITEM_DESCRIPTIONS"] == (
        "Replace kitchen mixer tap including removal and disposal of old fittings | Labour")
    assert fields["LINE_ITEM_QUANTITIES"] == "1 | 1.5"
    assert fields["LINE_ITEM_PRICES"] == "$235.95 | $120.00"
    assert fields["LINE_ITEM_TOTAL_PRICES"] == "$235.95 | $180.00"
    assert (fields["GST_AMOUNT"], fields["TOTAL_AMOUNT"], fields["IS_GST_INCLUDED"]) == ("$41.60", "$457.55", "true")


def test_receipt_till_slip_items_and_gst_inside_total() -> None:
    p = page(
        line("CORNER HARDWARE", 150, 40, size=28), line("3 Bridge Rd", 230, 80), line("Glenelg SA 5045", 210, 110),
        line("ABN 51824753556", 210, 140), line("TAX INVOICE", 240, 190, size=26), line("09.07.2023 10:10", 35, 250),
        line("Trans 4729 Reg 7", 35, 280),
        line("Cordless drill 18V brushless", 35, 340), line("skin only", 35, 370),
        line("1 @ $139.95", 65, 400), line("$139.95", 606, 400, right=True),
        line("Masking tape 36mm", 35, 440), line("3 @ $10.51", 65, 470), line("$31.53", 606, 470, right=True),
        line("TOTAL", 35, 530, size=28), line("$171.48", 606, 530, size=28, right=True),
        line("GST INCLUDED IN TOTAL", 35, 570), line("$15.59", 606, 570, right=True),
        line("EFTPOS SAV ****9907", 35, 610), line("$171.48", 606, 610, right=True),
        line("APPROVED", 35, 640), line("AUTH 724972", 606, 640, right=True),
    )
    doc_type, evidence = detect_type(p, RULES, SCHEMA)
    assert doc_type == "RECEIPT", evidence  # "TAX INVOICE" on a paid till slip
    fields, details = read_sale(p, SCHEMA.type_spec("RECEIPT"), RULES, SCHEMA)
    assert details["items"] == "till_slip"
    assert fields["LINE_ITEM_DESCRIPTIONS"] == "Cordless drill 18V brushless skin only | Masking tape 36mm"
    assert fields["LINE_ITEM_QUANTITIES"] == "1 | 3"
    assert fields["LINE_ITEM_TOTAL_PRICES"] == "$139.95 | $31.53"
    assert (fields["TOTAL_AMOUNT"], fields["GST_AMOUNT"]) == ("$171.48", "$15.59")
    assert fields["INVOICE_DATE"] == "09/07/2023"
    assert fields["SUPPLIER_NAME"] == "CORNER HARDWARE"
    assert fields["PAYER_NAME"] == "NOT_FOUND"


def test_no_gst_supplier() -> None:
    p = page(line("Sunrise Catering Group", 80, 80, size=34), line("INVOICE", 1160, 80, size=40, right=True),
             line("Total", 900, 400, right=True), line("$120.00", 1150, 400, right=True),
             line("No GST has been charged.", 1150, 440, right=True))
    fields, _ = read_sale(p, SCHEMA.type_spec("INVOICE"), RULES, SCHEMA)
    found = (fields["TOTAL_AMOUNT"], fields["GST_AMOUNT"], fields["IS_GST_INCLUDED"])
    assert found == ("$120.00", "NOT_FOUND", "false")


def statement_rows(headers: list[tuple[str, float, bool]], rows: list[list[tuple]]) -> list[TextLine]:
    """Table lines: a row every 50 px under the headers; a cell (text, x, right, "wrapped") is the
    second line of the row above (31 px below its first line)."""
    lines = [line(text, x, 400, right=right) for text, x, right in headers]
    y = 400
    for cells in rows:
        y += 31 if cells[0][3:] == ("wrapped",) else 50
        lines += [line(text, x, y, right=right) for text, x, right, *_ in cells if text]
    return lines


def test_bank_table_by_header_columns_with_balance_correction() -> None:
    headers = [("Date", 90, False), ("Description", 240, False), ("Debit", 840, True), ("Credit", 1000, True),
               ("Balance", 1160, True)]
    cells = lambda date, text, debit, credit, balance: [  # noqa: E731
        (date, 90, False), (text, 240, False), (debit, 840, True), (credit, 1000, True), (balance, 1160, True)]
    p = page(line("Statement period: 01/03/2024 to 31/03/2024", 80, 300),
             *statement_rows(headers, [
                 cells("01 Mar", "OPENING BALANCE", "", "", "1,000.00 CR"),
                 cells("03 Mar", "COFFEE SHOP", "4.50", "", "995.50 CR"),
                 cells("05 Mar", "SALARY ACME", "", "2,000.00", "2,995.50 CR"),
                 cells("09 Mar", "RENT PAYMENT", "", "500.00", "2,495.50 CR"),  # misread column: the balance fell
                 cells("31 Mar", "CLOSING BALANCE", "", "", "2,495.50 CR"),
             ]))
    assert detect_type(p, RULES, SCHEMA)[0] == "BANK_STATEMENT"
    fields, details = read_statement(p, RULES, SCHEMA)
    assert details["strategy"] == "balance_debit_credit"
    assert fields["STATEMENT_DATE_RANGE"] == "01/03/2024 - 31/03/2024"
    assert fields["LINE_ITEM_DESCRIPTIONS"] == "COFFEE SHOP | RENT PAYMENT"
    assert fields["TRANSACTION_DATES"] == "03/03/2024 | 09/03/2024"
    assert fields["TRANSACTION_AMOUNTS_PAID"] == "$4.50 | $500.00"
    assert len(details["corrections"]) == 1


def test_bank_table_with_date_headings_and_wrapped_descriptions() -> None:
    headers = [("Transaction", 90, False), ("Money out", 840, True), ("Money in", 1000, True)]
    p = page(
        line("Statement period: 1 March 2024 to 31 March 2024", 80, 300),
        *statement_rows(headers, [
            [("Tuesday, 5 March 2024", 90, False)],
            [("EFTPOS PURCHASE WOOLWORTHS 1234", 90, False), ("$52.10", 840, True)],
            [("PARRAMATTA AU CARD XX1234", 90, False, "wrapped")],
            [("TRANSFER FROM JACK SMITH", 90, False), ("$20.00", 1000, True)],
            [("Friday, 8 March 2024", 90, False)],
            [("ATM WITHDRAWAL NEWTOWN", 90, False), ("$100.00", 840, True)],
        ]))
    fields, details = read_statement(p, RULES, SCHEMA)
    assert details["strategy"] == "debit_credit"
    assert fields["LINE_ITEM_DESCRIPTIONS"] == ("EFTPOS PURCHASE WOOLWORTHS 1234 PARRAMATTA AU CARD XX1234 | "
                                                "ATM WITHDRAWAL NEWTOWN")
    assert fields["TRANSACTION_DATES"] == "05/03/2024 | 08/03/2024"
    assert fields["TRANSACTION_AMOUNTS_PAID"] == "$52.10 | $100.00"


def test_signed_amounts_and_opening_balance_above_the_table() -> None:
    headers = [("Date", 90, False), ("Details", 270, False), ("Amount", 960, True), ("Balance", 1160, True)]
    rows = [[("02-04-2024", 90, False), ("VISA PURCHASE NETFLIX.COM", 270, False), ("-16.99", 960, True),
             ("483.01", 1160, True)],
            [("04-04-2024", 90, False), ("REFUND KMART", 270, False), ("+20.00", 960, True), ("503.01", 1160, True)]]
    p = page(line("Opening balance $500.00", 80, 350), *statement_rows(headers, rows))
    fields, details = read_statement(p, RULES, SCHEMA)
    assert details["strategy"] == "amount_balance"
    assert fields["TRANSACTION_AMOUNTS_PAID"] == "$16.99"
    assert fields["STATEMENT_DATE_RANGE"] == "02/04/2024 - 04/04/2024"  # no printed period: first - last row


# ----------------------------------------------------------------------------- grounding
def grounding_page() -> list[TextLine]:
    return invoice_page().lines


def test_grounding_passes_values_that_are_on_the_page() -> None:
    answer = {"DOCUMENT_TYPE": "INVOICE", "BUSINESS_ABN": "51 824 753 556", "SUPPLIER_NAME": "BLUEGUM PLUMBING",
              "BUSINESS_ADDRESS": "12 George Street, Parramatta NSW 2150", "PAYER_NAME": "Olivia Smith",
              "PAYER_ADDRESS": "NOT_FOUND", "INVOICE_DATE": "5 March 2024", "TOTAL_AMOUNT": "457.55",
              "GST_AMOUNT": "$41.60", "IS_GST_INCLUDED": "yes", "LINE_ITEM_PRICES": "$235.95 | $120",
              "LINE_ITEM_QUANTITIES": "1 | 1.5", "LINE_ITEM_DESCRIPTIONS": "Replace kitchen mixer tap | Labour"}
    assert find_ungrounded(answer, SCHEMA.type_spec("INVOICE"), grounding_page(), SCHEMA) == []


def test_grounding_flags_values_not_on_the_page() -> None:
    answer = {"BUSINESS_ABN": "98 765 432 109", "SUPPLIER_NAME": "Quantum Zebra Holdings",
              "BUSINESS_ADDRESS": "99 Nowhere Blvd, Darwin NT 0800", "PAYER_NAME": "Xavier Quincy",
              "INVOICE_DATE": "17/08/1999", "TOTAL_AMOUNT": "$9876.54", "GST_AMOUNT": "$41.70",
              "LINE_ITEM_PRICES": "$235.95 | $121.00",  # one item of two wrong: the list is flagged
              "LINE_ITEM_QUANTITIES": "13 | 1.5",
              "LINE_ITEM_DESCRIPTIONS": "Replace kitchen mixer tap | Wombat grooming",
              "IS_GST_INCLUDED": "false", "DOCUMENT_TYPE": "RECEIPT"}  # not checked: not read off the page
    flagged = find_ungrounded(answer, SCHEMA.type_spec("INVOICE"), grounding_page(), SCHEMA)
    assert flagged == ["BUSINESS_ABN", "SUPPLIER_NAME", "BUSINESS_ADDRESS", "PAYER_NAME", "INVOICE_DATE",
                       "LINE_ITEM_DESCRIPTIONS", "LINE_ITEM_QUANTITIES", "LINE_ITEM_PRICES", "GST_AMOUNT",
                       "TOTAL_AMOUNT"]


def test_grounding_of_a_statement_period_and_yearless_row_dates() -> None:
    lines = [line("Statement period: 1 Mar 2024 to 31 Mar 2024", 80, 100), line("03 Mar", 90, 200),
             line("COFFEE SHOP", 240, 200), line("4.50", 840, 200, right=True)]
    spec = SCHEMA.type_spec("BANK_STATEMENT")
    good = {"STATEMENT_DATE_RANGE": "01/03/2024 - 31/03/2024", "TRANSACTION_DATES": "03/03/2024",
            "TRANSACTION_AMOUNTS_PAID": "$4.50", "LINE_ITEM_DESCRIPTIONS": "COFFEE SHOP"}
    assert find_ungrounded(good, spec, lines, SCHEMA) == []
    bad = {**good, "STATEMENT_DATE_RANGE": "01/02/2024 - 29/02/2024", "TRANSACTION_DATES": "04/03/2024"}
    assert find_ungrounded(bad, spec, lines, SCHEMA) == ["STATEMENT_DATE_RANGE", "TRANSACTION_DATES"]


# ----------------------------------------------------------------------------- reader helpers
def test_fix_confusions() -> None:
    assert fix_confusions("06-0ct-2024") == "06-Oct-2024"
    assert fix_confusions("NORWO0D AU JB HI-FI O44") == "NORWOOD AU JB HI-FI 044"
    assert fix_confusions("SPF50+ 80gsm 27-05-202420:35") == "SPF50+ 80gsm 27-05-2024 20:35"


def test_split_boxes_of_one_line_are_merged_but_columns_are_not() -> None:
    box = lambda x0, x1, y=100: np.array([[x0, y], [x1, y], [x1, y + 24], [x0, y + 24]], np.float32)  # noqa: E731
    merged = merge_line_boxes([box(89, 153), box(143, 211), box(400, 600), box(89, 211, y=150)], max_gap=0.5)
    spans = sorted(tuple(round(float(v)) for v in (b[:, 0].min(), b[:, 0].max(), b[:, 1].min())) for b in merged)
    assert spans == [(89, 211, 100), (89, 211, 150), (400, 600, 100)]


def test_skew_is_measured_from_long_boxes() -> None:
    center = np.array([600, 800], np.float32)
    flat = [np.array([[100, y], [700, y], [700, y + 24], [100, y + 24]], np.float32) for y in (100, 200, 300, 400)]
    angle = np.radians(1.5)
    assert skew_angle([rotate(q, angle, center) for q in flat]) == pytest.approx(angle, abs=1e-4)
    assert skew_angle(flat[:2]) == 0.0


def test_spaces_go_back_where_the_model_or_the_pixels_show_a_gap() -> None:
    crop = np.full((24, 120, 3), 255, np.uint8)
    for x0, x1 in ((4, 14), (16, 26), (40, 50), (52, 62), (90, 100), (102, 112)):  # "AB" gap "CD" gap "12"
        crop[6:18, x0:x1] = 0
    reading = Reading("ABCD12", 0.99, [9, 21, 45, 57, 95, 107], [0.0, 0.0, 0.0, 0.0, 0.5, 0.0])
    settings = RULES.reader
    assert space_out(reading, crop, settings) == "AB CD 12"  # pixel gap; then model's space probability
    digits = Reading("1212", 0.99, [9, 21, 45, 57], [0.0] * 4)
    assert space_out(digits, crop, settings) == "1212"  # a blank gap alone never splits a number


def test_default_threads_share_the_cpus_among_local_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    alone = default_threads()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(alone * 4))
    assert alone >= 1 and default_threads() == 1


# ----------------------------------------------------------------------------- rules file
def test_rules_errors_name_the_file_and_problem(tmp_path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_ocr_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text((RULES_PATH := load_ocr_rules.__globals__["DEFAULT_RULES_PATH"]).read_text().replace(
        "merge_gap:", "merge_gaps:"))
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown reader settings \['merge_gaps'\]"):
        load_ocr_rules(bad)
    bad.write_text(RULES_PATH.read_text().replace("digits: 11", "digits: [11"))
    with pytest.raises(Exception):
        load_ocr_rules(bad)
    bad.write_text(RULES_PATH.read_text().replace("'^\\s*sub\\s*-*\\s*total'", "'^(sub'"))
    with pytest.raises(ValueError, match=r"bad\.yaml: bad pattern"):
        load_ocr_rules(bad)


def test_statement_words_make_a_bank_statement_when_no_table_header_was_read() -> None:
    p = page(line("Harbourside Bank", 80, 80, size=34), line("BSB 062-000", 900, 120),
             line("Statement period: 1 March 2024 to 31 March 2024", 80, 200),
             line("Opening balance $1,000.00", 80, 240), line("EFTPOS PURCHASE", 80, 300))
    doc_type, evidence = detect_type(p, RULES, SCHEMA)
    assert (doc_type, evidence["rule"]) == ("BANK_STATEMENT", "bank_words")
    fields, _ = read_statement(p, RULES, SCHEMA)
    assert fields["STATEMENT_DATE_RANGE"] == "01/03/2024 - 31/03/2024"
    assert fields["TRANSACTION_AMOUNTS_PAID"] == "NOT_FOUND"


def test_a_missed_quantity_is_derived_only_when_price_and_total_agree() -> None:
    header = [line("Description", 90, 420), line("Qty", 795, 420, right=True), line("Rate", 965, 420, right=True),
              line("Total", 1150, 420, right=True)]
    rows = [line("Wait staff", 90, 470), line("$59.00", 965, 470, right=True), line("$88.50", 1150, 470, right=True),
            line("Fruit platter", 90, 520), line("$55.00", 965, 520, right=True), line("$60.00", 1150, 520, right=True)]
    fields, details = read_sale(page(*header, *rows), SCHEMA.type_spec("INVOICE"), RULES, SCHEMA)
    assert fields["LINE_ITEM_QUANTITIES"] == "1.5 | NOT_FOUND"  # 60.00 / 55.00 is no quantity
    assert details["derived_quantities"] == 1


def test_a_date_cell_read_together_with_its_description_is_split() -> None:
    headers = [("Date", 90, False), ("Particulars", 240, False), ("Debits", 840, True), ("Credits", 1000, True),
               ("Balance", 1160, True)]
    rows = [[("02 Apr 2024 OPENING BALANCE", 90, False), ("3,526.63", 1160, True)],
            [("18 Apr 2024 ATM WITHDRAWAL SOUTHPORT 138", 90, False), ("118.64", 840, True),
             ("3,407.99", 1160, True)]]
    fields, _ = read_statement(page(*statement_rows(headers, rows)), RULES, SCHEMA)
    assert fields["LINE_ITEM_DESCRIPTIONS"] == "ATM WITHDRAWAL SOUTHPORT 138"
    assert (fields["TRANSACTION_DATES"], fields["TRANSACTION_AMOUNTS_PAID"]) == ("18/04/2024", "$118.64")
