"""Invoice and receipt header fields from a page: ABN, date, totals, tax.

Each rule reads the page the way a person does: the ABN after its label, the date next to the
nearest invoice-date label (else the first date not labelled as another date), amounts by the label
to their left on the same row (or their column header), in any of the languages and currencies of
conf/ocr/default.yaml. Who (supplier, payer, their addresses) is read by parties.py, line items by
items.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from docvlm.normalize import find_dates, format_date
from docvlm.ocr.lines import row_text
from docvlm.ocr.page import Page, date_text, has_phrase, last_phrase, money_values
from docvlm.ocr.rules import AMOUNT_KINDS, OcrRules
from docvlm.schema import Schema



@dataclass
class Amount:
    kind: str  # an amount kind of conf/ocr/default.yaml (total, due, rounding, tax_total, gst...)
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
    """The date next to the most preferred invoice-date label; else the first date not labelled as
    another kind of date (due, period, delivery...). The label nearest before a date is its label."""
    labelled: list[tuple[int, int, str]] = []
    unlabelled: list[str] = []
    preferred = rules.label("invoice_date") + rules.label("date_prepositions")
    for row_index, row in enumerate(page.rows):
        for position, line in enumerate(row):
            text = date_text(line.text)
            for found in find_dates(text, schema):
                date = found.to_date()
                if date is None:
                    continue
                context = _date_context(page, row_index, position, text[: found.start])
                label = last_phrase(context, preferred)
                other = last_phrase(context, rules.label("not_invoice_date"))
                weak = label is not None and has_phrase(label.group(), rules.label("date_prepositions"))
                if other and (label is None or weak or other.end() > label.end()):
                    continue
                if label:
                    preference = next(i for i, p in enumerate(preferred) if has_phrase(label.group(), (p,)))
                    labelled.append((preference, len(labelled), format_date(date)))
                else:
                    unlabelled.append(format_date(date))
    if labelled:
        return min(labelled)[2]
    return unlabelled[0] if unlabelled else None


def _date_context(page: Page, row_index: int, position: int, before: str) -> str:
    """The words that label a date: the text before it on its row (its line and the lines to its
    left), else the row just above (a label over its value)."""
    row = page.rows[row_index]
    context = " ".join([line.text for line in row[:position]] + [before]).strip()
    if context:
        return context
    return row_text(page.rows[row_index - 1]) if row_index > 0 else ""


# ----------------------------------------------------------------------------- amounts
TOTAL_KINDS = ("total_with_tax", "total", "due")


def find_amounts(page: Page, rules: OcrRules) -> list[Amount]:
    """Every labelled amount of the page that is a total, a rounding line, a subtotal or tax (counts
    and payments dropped). A tax row with several amounts ("MwSt. 19% 198,00 37,62") gives its last
    one; a row of bare amounts takes its labels from the column headers above it."""
    amounts = []
    for row_index, row in enumerate(page.rows):
        cells = [repair_amounts(line.text, rules) for line in row]
        text = " ".join(cells)
        found = money_values(text)
        labelled = []
        previous_end = 0
        for value, match in found:
            label = clean_label(text[previous_end: match.start()], rules)
            previous_end = match.end()
            labelled.append((amount_kind(label, rules) if label else None, label, value))
        if found and not any(re.search(r"[^\W\d_]", label) for _, label, _ in labelled):  # no words: "20% 100.00"
            labelled = _column_labels(page, row_index, cells, found, rules)
        elif len(found) > 1 and _names_tax(labelled[0], rules) and all(kind is None for kind, _, _ in labelled[1:]):
            labelled = [("gst", labelled[0][1], found[-1][0])]
        amounts.extend(Amount(kind, label, value, row_index) for kind, label, value in labelled
                       if kind not in (None, "skip"))
    return amounts


def _names_tax(labelled: tuple, rules: OcrRules) -> bool:
    """A row label that names a tax rate or base ("MwSt. 19%", "Steuerbasisbetrag USt. 19%")."""
    kind, label, _ = labelled
    return kind in ("gst", "subtotal") and any(p.search(label) for p in rules.amounts["gst"])


def repair_amounts(text: str, rules: OcrRules) -> str:
    """Amounts as OCR misreads them, put right: a letter for a digit after a currency mark or inside
    a number ("RMO.47", "RMI11.90"), a dot after the mark ("RM.34.80"), a space around the decimal
    point ("RM8 .35", "RM96. 20") and a dash for it ("28-90")."""
    fix = lambda m: m["pre"] + m["digits"].translate(_DIGIT_LOOKALIKES)  # noqa: E731
    text = _misread_digit_pattern(rules.currencies).sub(fix, text)
    text = _currency_dot_pattern(rules.currencies).sub(r"\g<1> ", text)  # "RM.34.80"
    text = re.sub(r"(?<=\d) (?=[.,]\d{2}(?!\d))|(?<=\d[.,]) (?=\d{2}(?!\d))", "", text)  # "RM8 .35", "RM96. 20"
    return re.sub(r"(?<![\d\-/.:])(\d+)-(\d{2})(?![\d\-/.:])", r"\1.\2", text)  # "TOTAL 28-90"


@lru_cache(maxsize=8)
def _currency_dot_pattern(currencies: tuple[str, ...]) -> re.Pattern[str]:
    marks = "|".join(re.escape(c) for c in sorted(currencies, key=len, reverse=True) if c[-1].isalpha())
    return re.compile(rf"(?<![a-z])({marks})\.(?=\d)", re.IGNORECASE)


_DIGIT_LOOKALIKES = str.maketrans("OoDIl|", "000111")


@lru_cache(maxsize=8)
def _misread_digit_pattern(currencies: tuple[str, ...]) -> re.Pattern[str]:
    marks = "|".join(re.escape(c) for c in sorted(currencies, key=len, reverse=True))
    return re.compile(rf"(?P<pre>(?<![a-z])(?:{marks})\s?-?|\d)(?P<digits>[OoDIl|]+)(?=\d*\s?[.,]\d{{2}}(?!\d))",
                      re.IGNORECASE)


def _column_labels(page: Page, row_index: int, cells: list[str], found: list, rules: OcrRules) -> list[tuple]:
    """Kinds for a row of bare amounts from the nearest header row above (a row without amounts
    naming two or more amount kinds), each amount under the header cell closest to it."""
    row = page.rows[row_index]
    for above in range(row_index - 1, max(-1, row_index - 1 - rules.column_header_rows), -1):
        header = [(line, amount_kind(clean_label(line.text, rules), rules)) for line in page.rows[above]]
        if money_values(row_text(page.rows[above])):
            continue
        if len({kind for _, kind in header if kind not in (None, "skip")}) < 2:
            continue
        labelled = []
        for value, match in found:
            cell = row[_cell_at(cells, match.start("num"))]
            line, kind = min(header, key=lambda pair: abs(pair[0].x1 - cell.x1))
            labelled.append((kind, clean_label(line.text, rules), value))
        return labelled
    return [(None, "", value) for value, _ in found]


def _cell_at(cells: list[str], position: int) -> int:
    """The index of the cell holding character `position` of " ".join(cells)."""
    end = -1
    for index, cell in enumerate(cells):
        end += len(cell) + 1
        if position < end:
            return index
    return len(cells) - 1


def clean_label(text: str, rules: OcrRules) -> str:
    """A label as the amount patterns read it: lower case, without currency marks and punctuation
    ("Total (RM):" -> "total", "Rechnungssumme Brutto (inkl. USt.)" -> "rechnungssumme brutto inkl ust")."""
    text = _currency_pattern(rules.currencies).sub(" ", text.lower())
    return " ".join(re.sub(r"[^\w%@&]+", " ", text).split())


def _rejoin_letters(label: str) -> str:
    """"tota l" -> "total": a letter that OCR set apart ends the word before it."""
    words: list[str] = []
    for word in label.split():
        if len(word) == 1 and word.isalpha() and words and len(words[-1]) >= 3 and words[-1].isalpha():
            words[-1] += word
        else:
            words.append(word)
    return " ".join(words)


@lru_cache(maxsize=8)
def _currency_pattern(currencies: tuple[str, ...]) -> re.Pattern[str]:
    marks = "|".join(re.escape(c) for c in sorted(currencies, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9])(?:{marks})(?![a-z])")


def amount_kind(label: str, rules: OcrRules) -> Optional[str]:
    """The first kind (rules.AMOUNT_KINDS order) whose patterns match the label, or the label read
    without spaces; a label that OCR split into letters ("GS T i n c luded") is read without them first."""
    squeezed = label.replace(" ", "")
    split = sum(len(word) == 1 and word.isalpha() for word in label.split()) >= 2
    for text in ((squeezed, label) if split else (label, _rejoin_letters(label), squeezed)):
        for kind in AMOUNT_KINDS:
            if any(pattern.search(text) for pattern in rules.amounts[kind]):
                return kind
    return None


def total_and_gst(amounts: list[Amount], rules: OcrRules) -> tuple[Optional[float], Optional[float]]:
    """TOTAL_AMOUNT: the largest total; after a rounding line, the first total below it that is
    within `rounding_max` of the largest before it (the rounded total); without any total the largest
    subtotal. GST_AMOUNT: the document's tax total, else its tax lines."""
    totals = [a for a in amounts if a.kind in TOTAL_KINDS] or [a for a in amounts if a.kind == "subtotal"]
    total = max((a.value for a in totals), key=abs, default=None)
    roundings = [a.row for a in amounts if a.kind == "rounding"]
    totals += [a for a in amounts if a.kind == "rounding" and abs(a.value) > rules.rounding_max]  # "Rounding 13.60"
    if roundings and total is not None:
        before = max((a.value for a in totals if a.row < roundings[-1]), key=abs, default=total)
        rounded = [a.value for a in totals if a.row >= roundings[-1] and abs(a.value - before) <= rules.rounding_max]
        total = rounded[0] if rounded else total
    return total, _tax(amounts)


def _tax(amounts: list[Amount]) -> Optional[float]:
    tax_total = max((a.value for a in amounts if a.kind == "tax_total"), key=abs, default=None)
    if tax_total is not None:
        return tax_total
    lines = [a for a in amounts if a.kind == "gst"]
    if len(lines) > 1 and all("%" in a.label for a in lines):
        return round(sum(a.value for a in lines), 2)  # one line per tax rate
    return lines[0].value if lines else None
