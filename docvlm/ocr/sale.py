"""Invoice and receipt header fields from a page: ABN, date, supplier, payer, addresses, totals, GST.

Each rule reads the page the way a person does: the ABN after its label, the date next to an
invoice-date label (else the first date not labelled as another date), amounts by the label to
their left on the same row, the supplier as the largest text at the top, the payer under "Bill To".
Line items are read by docvlm/ocr/items.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from docvlm.normalize import find_dates, format_date
from docvlm.ocr.lines import TextLine, font_size, row_text
from docvlm.ocr.page import Page, date_text, find_phrase, has_phrase, money_values, starts_with_phrase
from docvlm.ocr.rules import OcrRules
from docvlm.schema import Schema

AMOUNT_KINDS = ("subtotal", "total", "gst")


@dataclass
class Amount:
    kind: str  # "total" or "gst"
    label: str
    value: float
    row: int


# ----------------------------------------------------------------------------- ABN
def find_abn(page: Page, rules: OcrRules) -> Optional[str]:
    """The first run of `abn_digits` digits (spaces allowed between them) after an ABN label."""
    for row in page.rows:
        text = row_text(row)
        for label in rules.abn_label.finditer(text):
            digits = _digits_after(text[label.end():], rules.abn_digits)
            if digits:
                return digits
    return None


def _digits_after(text: str, count: int) -> Optional[str]:
    match = re.match(rf"\s*[:#.\-]?\s*((?:\d[\s\-]?){{{count}}})(?!\d)", text)
    return re.sub(r"\D", "", match.group(1)) if match else None


# ----------------------------------------------------------------------------- date
def find_document_date(page: Page, rules: OcrRules, schema: Schema) -> Optional[str]:
    """The date next to the most preferred invoice-date label; else the first date whose label is
    not another kind of date (due, period...)."""
    labelled: list[tuple[int, int, str]] = []
    unlabelled: list[str] = []
    for row_index, row in enumerate(page.rows):
        for position, line in enumerate(row):
            text = date_text(line.text)
            for found in find_dates(text, schema):
                date = found.to_date()
                if date is None:
                    continue
                context = _date_context(page, row_index, position, text[: found.start])
                if has_phrase(context, rules.label("not_invoice_date")):
                    continue
                label = find_phrase(context, rules.label("invoice_date"))
                if label:
                    preference = next(i for i, p in enumerate(rules.label("invoice_date"))
                                      if has_phrase(label.group(), (p,)))
                    labelled.append((preference, len(labelled), format_date(date)))
                else:
                    unlabelled.append(format_date(date))
    if labelled:
        return min(labelled)[2]
    return unlabelled[0] if unlabelled else None


def _date_context(page: Page, row_index: int, position: int, before: str) -> str:
    """The words that label a date: the text before it on its line, else the line to its left,
    else the row just above (a label over its value)."""
    if before.strip():
        return before
    row = page.rows[row_index]
    if position > 0:
        return row[position - 1].text
    return row_text(page.rows[row_index - 1]) if row_index > 0 else ""


# ----------------------------------------------------------------------------- amounts
def find_amounts(page: Page, rules: OcrRules) -> list[Amount]:
    """Every labelled amount of the page that is a total or GST (subtotals dropped)."""
    amounts = []
    for row_index, row in enumerate(page.rows):
        text = row_text(row)
        previous_end = 0
        for value, match in money_values(text):
            label = text[previous_end: match.start()].strip(" :$")
            previous_end = match.end()
            kind = amount_kind(label, rules)
            if kind in ("total", "gst"):
                amounts.append(Amount(kind, label, abs(value), row_index))
    return amounts


def amount_kind(label: str, rules: OcrRules) -> Optional[str]:
    for kind in AMOUNT_KINDS:
        if any(pattern.search(label) for pattern in rules.amounts[kind]):
            return kind
    return None


def total_and_gst(amounts: list[Amount]) -> tuple[Optional[float], Optional[float]]:
    totals = [a.value for a in amounts if a.kind == "total"]
    gst = next((a.value for a in amounts if a.kind == "gst"), None)
    return (max(totals) if totals else None), gst


# ----------------------------------------------------------------------------- supplier
def find_supplier(page: Page, rules: OcrRules, schema: Schema) -> Optional[TextLine]:
    """The largest line among the first rows that reads as a name (not a title, label, date, number)."""
    top = [line for row in page.rows[: rules.supplier_rows] for line in row]
    candidates = [line for line in top if _is_name(line.text, rules, schema)]
    if not candidates:
        return None
    largest = max(font_size(line) for line in candidates)
    return next(line for line in candidates if font_size(line) >= 0.9 * largest)  # the topmost of the largest


def supplier_name(page: Page, line: TextLine, rules: OcrRules, schema: Schema) -> str:
    """The supplier line plus name-like lines of the same size right below it (a wrapped name)."""
    parts = [line.text]
    below = line
    for candidate in sorted(page.lines, key=lambda item: item.y0):
        if candidate.y0 <= below.y0 or candidate is line:
            continue
        close = candidate.y0 - below.y1 <= 0.5 * below.height
        same_size = abs(font_size(candidate) - font_size(line)) <= 0.12 * font_size(line)
        aligned = abs(candidate.cx - below.cx) < line.height or abs(candidate.x0 - below.x0) < line.height
        name_like = _is_name(candidate.text, rules, schema) and not rules.street.search(candidate.text)
        if close and same_size and aligned and name_like:
            parts.append(candidate.text)
            below = candidate
        elif candidate.y0 > below.y1 + below.height:
            break
    return tidy_name(" ".join(parts))


def tidy_name(text: str) -> str:
    """An "&" that OCR read as "8" between words of a name ("Harbour Plumbing 8 Co")."""
    return re.sub(r"(?<=[A-Za-z]) 8 (?=[A-Za-z])", " & ", text)


def _is_name(text: str, rules: OcrRules, schema: Schema) -> bool:
    words = re.sub(r"[^a-z0-9&' ]+", " ", text.lower()).split()
    letters = sum(c.isalpha() for c in text)
    if not words or letters < 3 or letters < 0.6 * len(text.replace(" ", "")):
        return False
    if " ".join(words) in rules.titles or "@" in text or ":" in text:
        return False
    return not (rules.abn_label.search(text) or find_dates(text, schema) or rules.locality.search(text))


# ----------------------------------------------------------------------------- payer
def find_payer(page: Page, rules: OcrRules) -> tuple[Optional[str], list[TextLine]]:
    """The payer's name after a payer label ("Bill To:"), on its line or the line below, and the
    lines of the block under the name (where the payer's address is)."""
    for line in sorted(page.lines, key=lambda item: (item.y0, item.x0)):
        label = starts_with_phrase(line.text, rules.label("payer"))
        if not label:
            continue
        rest = line.text[label.end():].strip(" :-")
        block = block_below(page, line)
        if rest:
            return tidy_name(rest), block
        if block:
            return tidy_name(block[0].text), block[1:]
    return None, []


def block_below(page: Page, line: TextLine, limit: int = 4) -> list[TextLine]:
    """The lines set directly under `line`, left-aligned or centred with it, each close below the last."""
    block: list[TextLine] = []
    last = line
    for candidate in sorted(page.lines, key=lambda item: item.y0):
        if candidate.y0 < last.y1 - 0.3 * last.height or candidate is last or candidate in block:
            continue
        if candidate.y0 - last.y1 > 0.9 * max(last.height, candidate.height):
            break
        aligned = abs(candidate.x0 - line.x0) < line.height or abs(candidate.cx - line.cx) < line.height
        if aligned:
            block.append(candidate)
            last = candidate
            if len(block) == limit:
                break
    return block


# ----------------------------------------------------------------------------- addresses
def address_from(lines: list[TextLine], rules: OcrRules) -> Optional[str]:
    """"street, locality" from the first locality line ("Subiaco WA 6008") among `lines`, with the
    street line right above it when there is one."""
    for index, line in enumerate(lines):
        locality = tidy_locality(line.text, rules)
        if locality is None:
            continue
        street = lines[index - 1].text if index > 0 else ""
        if rules.street.search(street) and not rules.locality.search(street):
            locality = f"{street.strip(' ,')}, {locality}"
        return re.sub(r",(?=\S)", ", ", locality)  # "Unit 8,213 Wattle Parade": OCR drops the space
    return None


def tidy_locality(text: str, rules: OcrRules) -> Optional[str]:
    """The text up to the postcode, the state in capitals and a space before the postcode
    ("Parramatta Nsw2150" -> "Parramatta NSW 2150"); None if `text` has no locality."""
    match = rules.locality.search(text)
    if not match:
        return None
    place = text[: match.start()].rstrip(" ,")
    return f"{place} {match.group(1).upper()} {match.group(2)}".strip()


def supplier_address(page: Page, rules: OcrRules, skip: list[TextLine]) -> Optional[str]:
    """The first address on the page outside the payer's block: the supplier's letterhead."""
    ordered = [line for line in sorted(page.lines, key=lambda item: (item.y0, item.x0)) if line not in skip]
    for index, line in enumerate(ordered):
        if rules.locality.search(line.text):
            above = _line_above(ordered, line)
            return address_from([above, line] if above else [line], rules)
    return None


def _line_above(lines: list[TextLine], line: TextLine) -> Optional[TextLine]:
    """The line right above `line` in its column (left-aligned or centred), if close."""
    best = None
    for candidate in lines:
        gap = line.y0 - candidate.y1
        aligned = abs(candidate.x0 - line.x0) < line.height or abs(candidate.cx - line.cx) < line.height
        if -0.3 * line.height <= gap <= 0.9 * line.height and aligned and candidate.y0 < line.y0:
            if best is None or candidate.y0 > best.y0:
                best = candidate
    return best
