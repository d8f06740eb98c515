"""Document type from the page's words: a bank table header (or enough statement words), else
receipt cues against invoice cues.

The same evidence the VLM detection rule weighs (docvlm/detection.py): bank columns first, then
whether the document shows it was paid.
"""

from __future__ import annotations

from typing import Any

from docvlm.ocr.page import Page, has_phrase
from docvlm.ocr.rules import OcrRules
from docvlm.ocr.statement import card_words, find_bank_header
from docvlm.schema import Schema


def detect_type(page: Page, rules: OcrRules, schema: Schema) -> tuple[str, dict[str, Any]]:
    """(document type, evidence). Outcomes map to types through the schema's detection_types."""
    header = find_bank_header(page, rules, schema)
    if header is not None:
        headers = [column.header.text for column in header[1]]
        return _type_for("bank_columns", schema), {"rule": "bank_columns", "headers": headers}
    text = page.text
    bank_words = sorted({w for w in rules.bank_words if has_phrase(text, (w,))})
    if len(bank_words) >= rules.bank_min_words:
        return _type_for("bank_columns", schema), {"rule": "bank_words", "bank_words": bank_words}
    cues = card_words(page, rules)  # a credit-card statement: no balance column, its own words
    if len(cues) >= rules.card_min_words:
        return _type_for("bank_columns", schema), {"rule": "card_words", "card_words": cues}
    receipt = sorted({w for w in schema.paid_cues + rules.receipt_words if has_phrase(text, (w,))})
    invoice = sorted({w for w in rules.invoice_words if w not in rules.invoice_titles and has_phrase(text, (w,))})
    rule = "paid" if len(receipt) > len(invoice) else "not_paid"  # a title ("TAX INVOICE") decides nothing
    return _type_for(rule, schema), {"rule": rule, "receipt_cues": receipt, "invoice_cues": invoice}


def _type_for(rule: str, schema: Schema) -> str:
    return schema.detection_types.get(rule, schema.default_type)
