"""Invoice and receipt header fields from a page: ABN, date, supplier, payer, addresses, totals, GST.

Each rule reads the page the way a person does: the ABN after its label, the date next to an
invoice-date label (else the first date not labelled as another date), amounts by the label to
their left on the same row, the supplier as the largest text at the top, the payer under "Bill To".
Line items are read by docvlm/ocr/items.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional, Sequence

from docvlm.normalize import find_dates, format_date
from docvlm.ocr.lines import TextLine, font_size, row_text
from docvlm.ocr.page import (Page, date_text, find_phrase, has_phrase, last_phrase, money_values, phrase_pattern,
                             starts_with_phrase)
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
    a number ("RMO.47", "RMI11.90"), a dot after the mark ("RM.34.80") and a space before the
    decimals ("RM8 .35")."""
    fix = lambda m: m["pre"] + m["digits"].translate(_DIGIT_LOOKALIKES)  # noqa: E731
    text = _misread_digit_pattern(rules.currencies).sub(fix, text)
    text = _currency_dot_pattern(rules.currencies).sub(r"\g<1> ", text)  # "RM.34.80"
    return re.sub(r"(?<=\d) (?=[.,]\d{2}(?!\d))", "", text)


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
    words: list[str] = []
    for word in re.sub(r"[^\w%@&]+", " ", text).split():
        if len(word) == 1 and word.isalpha() and words and len(words[-1]) >= 3 and words[-1].isalpha():
            words[-1] += word  # "tota l": a letter that OCR set apart ends the word before it
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
    for text in ((squeezed, label) if split else (label, squeezed)):
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


# ----------------------------------------------------------------------------- supplier
def read_supplier(page: Page, rules: OcrRules, schema: Schema) -> tuple[Optional[str], list[TextLine]]:
    """The supplier's name and the lines it was read from: after a seller label, else the first line
    at the top naming a legal form, else the largest name at the top."""
    for finder in (_labelled_supplier, _legal_form_supplier, _largest_supplier):
        parts = finder(page, rules, schema)
        if parts:
            return tidy_name(" ".join(text for text, _ in parts)), [line for _, line in parts]
    return None, []


def name_text(text: str, rules: OcrRules) -> str:
    """A name line without the registration number printed after it ("AEON CO. (M) BHD (126926-H)")."""
    for pattern in rules.supplier_strip:
        text = pattern.sub("", text)
    return text.strip(" ,;-")


def _labelled_supplier(page: Page, rules: OcrRules, schema: Schema) -> list[tuple[str, TextLine]]:
    """"Seller: Name" on one line, or the seller block's first name below its label ("Verkäufer" /
    "Name: Lieferant GmbH")."""
    for line in sorted(page.lines, key=lambda item: (item.y0, item.x0)):
        label = starts_with_phrase(line.text, rules.label("supplier"))
        if not label:
            continue
        rest = line.text[label.end():]
        if rest.strip() and ":" not in rest[:3]:
            continue  # "Lieferant GmbH": a name that starts like a label
        rest = name_text(rest.strip(" :-"), rules)
        if rest:
            if is_name(rest, rules, schema):
                return [(rest, line)]
            continue
        for below in _column_below(page, line):
            if starts_with_phrase(below.text, rules.label("payer")):
                break
            right = _right_of(page, below)
            if right is not None and right.text.lstrip().startswith(":"):
                continue  # "Nummer" | ": 549910": a label whose colon went to the value's cell
            name_label = starts_with_phrase(below.text, rules.label("name"))
            text = below.text[name_label.end():].strip(" :-") if name_label else below.text
            if name_label and not text:  # "Name:" in one column, the name in the next
                below = _right_of(page, below) or below
                text = below.text if below.text != name_label.group() else ""
            text = name_text(text, rules)
            if is_name(text, rules, schema):
                return _complete_name(page, [(text, below)], rules, schema)
    return []


def _complete_name(page: Page, parts: list[tuple[str, TextLine]], rules: OcrRules,
                   schema: Schema) -> list[tuple[str, TextLine]]:
    """A name set on two lines: the line right above or below, alone on its row and set the same size,
    when only one of the two names the legal form ("MVM Musterhafter" / "Versicherungsverein
    Musterstadt a.G."; not a shop's brand over its company)."""
    text, line = parts[0]
    for other in page.lines:
        gap = other.y0 - line.y1 if other.y0 > line.y0 else line.y0 - other.y1
        if other is line or not (-0.3 * line.height < gap < 0.6 * line.height) or abs(other.x0 - line.x0) > line.height:
            continue
        row = next((r for r in page.rows if other in r), [other])
        other_text = name_text(other.text, rules)
        if len(row) > 1 or not _same_size(other, line) or not is_name(other_text, rules, schema):
            continue
        if has_legal_form(text, rules) == has_legal_form(other_text, rules):
            continue
        below = other.y0 > line.y0
        if below != has_legal_form(other_text, rules):
            continue  # the legal form ends a name
        return parts + [(other_text, other)] if below else [(other_text, other)] + parts
    return parts


def _column_below(page: Page, line: TextLine, limit: int = 6) -> list[TextLine]:
    """The lines under `line` that start in its column, nearest first, within a few lines."""
    below = [c for c in page.lines if c.y0 > line.y1 - 0.3 * line.height and c is not line
             and abs(c.x0 - line.x0) < 2 * line.height and c.y0 - line.y1 < 10 * line.height]
    return sorted(below, key=lambda item: item.y0)[:limit]


def _right_of(page: Page, line: TextLine) -> Optional[TextLine]:
    """The next line to the right of `line` on its row."""
    row = next((r for r in page.rows if line in r), [line])
    right = [c for c in row if c.x0 > line.x1]
    return right[0] if right else None


def has_legal_form(text: str, rules: OcrRules) -> bool:
    """"Sdn. Bhd.", "GmbH", "B.V.", "Pty Ltd", "a.G." (dots and commas ignored)."""
    return has_phrase(re.sub(r"[.,]", "", text), rules.legal_forms)


def _legal_form_supplier(page: Page, rules: OcrRules, schema: Schema) -> list[tuple[str, TextLine]]:
    """The first line at the top naming a legal form, with the first part of a name set on two lines
    (_complete_name); a legal form alone ("SDN BHD") completes the name line above it."""
    top = [line for row in page.rows[: rules.supplier_rows] for line in row]
    for line in top:
        text = name_text(line.text, rules)
        if not (has_legal_form(text, rules) and is_name(text, rules, schema)):
            continue
        only_form = not re.sub(r"[\W_]", "", _drop_legal_forms(text, rules))  # "SDN BHD" alone: the name is above
        above = _name_above(top, line, rules, schema)
        if above is not None and (only_form or re.search(r"(?:&|\band|-)\s*$", above[0])):
            return [above, (text, line)]
        if not only_form:
            return _complete_name(page, [(text, line)], rules, schema)
    return []


def _name_above(lines: list[TextLine], line: TextLine, rules: OcrRules,
                schema: Schema) -> Optional[tuple[str, TextLine]]:
    """The name line right above `line` (overlapping it across), without a legal form of its own."""
    above = [c for c in lines if c.y0 < line.y0 and -0.3 * line.height <= line.y0 - c.y1 <= 0.9 * line.height
             and c.x0 < line.x1 and line.x0 < c.x1]
    if not above:
        return None
    nearest = max(above, key=lambda c: c.y0)
    text = name_text(nearest.text, rules)
    if has_legal_form(text, rules) or not is_name(text, rules, schema):
        return None
    return text, nearest


def _drop_legal_forms(text: str, rules: OcrRules) -> str:
    text = re.sub(r"[.,]", "", text)
    for form in rules.legal_forms:
        text = phrase_pattern(form).sub("", text)
    return text


def _same_size(a: TextLine, b: TextLine) -> bool:
    return abs(font_size(a) - font_size(b)) <= 0.15 * max(font_size(a), font_size(b))


def _largest_supplier(page: Page, rules: OcrRules, schema: Schema) -> list[tuple[str, TextLine]]:
    """The largest name among the first rows (the topmost of the largest), with the lines of the same
    size right below it that continue it."""
    top = [line for row in page.rows[: rules.supplier_rows] for line in row]
    candidates = [line for line in top if is_name(name_text(line.text, rules), rules, schema)]
    if not candidates:
        return []
    largest = max(font_size(line) for line in candidates)
    first = next(line for line in candidates if font_size(line) >= 0.8 * largest)
    parts = [(name_text(first.text, rules), first)]
    below = first
    for candidate in sorted(page.lines, key=lambda item: item.y0):
        if candidate.y0 <= below.y0 or candidate is first:
            continue
        close = candidate.y0 - below.y1 <= 0.5 * below.height
        aligned = abs(candidate.cx - below.cx) < first.height or abs(candidate.x0 - below.x0) < first.height
        text = name_text(candidate.text, rules)
        if close and aligned and _same_size(candidate, first) and is_name(text, rules, schema):
            parts.append((text, candidate))
            below = candidate
        elif candidate.y0 > below.y1 + below.height:
            break
    return parts


def tidy_name(text: str) -> str:
    """An "&" that OCR read as "8" between words of a name ("Harbour Plumbing 8 Co")."""
    return re.sub(r"(?<=[A-Za-z]) 8 (?=[A-Za-z])", " & ", text)


def is_name(text: str, rules: OcrRules, schema: Schema) -> bool:
    """Reads as a business name: mostly letters; not a title, a label, contact details, a date or an
    address line."""
    words = re.sub(r"[^\w&' ]+", " ", text.lower()).split()
    letters = sum(c.isalpha() for c in text)
    if not words or letters < 3 or letters < 0.6 * len(text.replace(" ", "")):
        return False
    if _is_title(text, rules):
        return False
    if "@" in text or ":" in text or any(pattern.search(text) for pattern in rules.not_name):
        return False
    if rules.abn_label.search(text) or find_dates(text, schema):
        return False
    # a legal form outweighs a number first or a street word ("99 SPEED MART S/B"), not a postcode
    return not (has_postcode(text, rules) if has_legal_form(text, rules) else is_address_line(text, rules))


def has_postcode(text: str, rules: OcrRules) -> bool:
    return bool(rules.locality.search(text) or any(p.search(text) for p in rules.postcodes))


def is_address_line(text: str, rules: OcrRules) -> bool:
    """A postcode, a street number first, or a street word next to a number."""
    if has_postcode(text, rules) or rules.street.search(text):
        return True
    return bool(rules.street_words.search(text) and re.search(r"\d", text))


# ----------------------------------------------------------------------------- payer
def find_payer(page: Page, rules: OcrRules) -> tuple[Optional[str], list[TextLine]]:
    """The payer's name after a payer label ("Bill To:"), on its line or the line below, and the
    lines of its block: the label's line, the name's and those under it (where the payer's address is)."""
    for line in sorted(page.lines, key=lambda item: (item.y0, item.x0)):
        label = starts_with_phrase(line.text, rules.label("payer"))
        if not label:
            continue
        rest = line.text[label.end():].strip(" :-")
        block = block_below(page, line)
        if rest:
            return tidy_name(rest), [line] + block
        if block:
            return tidy_name(block[0].text), [line] + block
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
    street line right above it when there is one; else the lines from the first address line to the
    postcode line ("Kundenstraße 15, 69876 Frankfurt")."""
    for index, line in enumerate(lines):
        locality = tidy_locality(line.text, rules)
        if locality is None:
            continue
        street = lines[index - 1].text if index > 0 else ""
        if rules.street.search(street) and not rules.locality.search(street):
            locality = f"{street.strip(' ,')}, {locality}"
        return re.sub(r",(?=\S)", ", ", locality)  # "Unit 8,213 Wattle Parade": OCR drops the space
    start = next((i for i, line in enumerate(lines) if is_address_line(line.text, rules)), None)
    if start is None:
        return None
    end = next((i for i in range(start, len(lines)) if _ends_address(lines[i].text, rules)), None)
    return join_address([line.text for line in lines[start: end + 1]]) if end is not None else None


def tidy_locality(text: str, rules: OcrRules) -> Optional[str]:
    """The text up to the postcode, the state in capitals and a space before the postcode
    ("Parramatta Nsw2150" -> "Parramatta NSW 2150"); None if `text` has no locality."""
    match = rules.locality.search(text)
    if not match:
        return None
    place = text[: match.start()].rstrip(" ,")
    return f"{place} {match.group(1).upper()} {match.group(2)}".strip()


def supplier_address(page: Page, rules: OcrRules, schema: Schema, skip: list[TextLine],
                     supplier: Sequence[TextLine] = ()) -> Optional[str]:
    """The supplier's address: the block of address lines under its name; else the first Australian
    locality on the page outside the payer's block (the letterhead)."""
    block = address_block(page, rules, schema, supplier[-1], skip) if supplier else []
    if block:
        return join_address([tidy_locality(line.text, rules) or line.text for line in block])
    ordered = [line for line in sorted(page.lines, key=lambda item: (item.y0, item.x0)) if line not in skip]
    for index, line in enumerate(ordered):
        if rules.locality.search(line.text):
            above = _line_above(ordered, line)
            return address_from([above, line] if above else [line], rules)
    return None


def address_block(page: Page, rules: OcrRules, schema: Schema, name: TextLine, skip: list[TextLine]) -> list[TextLine]:
    """The lines under the supplier's name, in its column, from the first address line (a street word
    and number, a postcode) to the line with the postcode; contact lines before it are passed over,
    one after it ends it; empty without a postcode or a street."""
    block: list[TextLine] = []
    last, passed = name, 0
    for line in sorted(page.lines, key=lambda item: item.y0):
        if line.y0 < last.y1 - 0.3 * last.height or line is name or line in block:
            continue
        if line in skip:  # the payer's block inside the letterhead ("Herrn / Max Mustermann / ...")
            last = line
            continue
        if line.y0 - last.y1 > 2.5 * max(last.height, line.height):
            break
        if not (_aligned(line, name) or _aligned(line, last)):
            continue
        contact = ":" in line.text or any(p.search(line.text) for p in rules.not_name) \
            or any(d.year for d in find_dates(date_text(line.text), schema)) or _is_title(line.text, rules)
        if block and contact:
            break
        if block or (not contact and is_address_line(line.text, rules)):
            block.append(line)
            last = line
            if _ends_address(line.text, rules) or len(block) == rules.address_max_lines:
                break
        else:
            passed += 1
            last = line
            if passed > 3:
                break
    return block if any(is_address_line(line.text, rules) for line in block) else []


def _ends_address(text: str, rules: OcrRules) -> bool:
    """The postcode line ends an address, unless it is a street line that ends with the postcode and
    the town follows on the next line ("NO. 135, JALAN BANGI, 43500")."""
    patterns = rules.postcodes + (rules.locality,)
    ends = [m.end() for p in patterns for m in p.finditer(text)]
    if not ends:
        return False
    town_after = re.search(r"[A-Za-z]", text[max(ends):])
    return bool(town_after or rules.locality.search(text) or not rules.street_words.search(text))


def _is_title(text: str, rules: OcrRules) -> bool:
    words = re.sub(r"[^\w&' ]+", " ", text.lower()).split()
    squeezed = "".join(words)
    # "W A R E N R E C H N U N G", "Handelsrechnung": a title spaced out or compounded
    return " ".join(words) in rules.titles or any(squeezed.endswith(t.replace(" ", "")) for t in rules.titles
                                                  if len(t) > 5)


def _aligned(line: TextLine, other: TextLine) -> bool:
    """Left-aligned or centred with `other` (a letterhead's lines)."""
    tolerance = 2 * max(line.height, other.height)
    return abs(line.x0 - other.x0) < tolerance or abs(line.cx - other.cx) < tolerance


def join_address(lines: list[str]) -> str:
    """Address lines as one text, a comma between lines unless a line ends with one."""
    text = ""
    for part in (line.strip() for line in lines):
        text = f"{text}{' ' if text.endswith(',') or not text else ', '}{part}" if text else part
    return re.sub(r",(?=\S)", ", ", text)  # "Unit 8,213 Wattle Parade": OCR drops the space


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
