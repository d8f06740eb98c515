"""Who a sale is between: the supplier's name and address, the payer's name and address.

The supplier is named after a seller label ("Verkäufer", "Seller: ..."), else on the first line at
the top that names a legal form (Sdn Bhd, GmbH, SARL, B.V., Pty Ltd...), else by the largest text at
the top; its address is the block of address lines under its name (street words, numbers, postcodes
of several countries). The payer is named after a payer label ("Bill To", "Käufer", "Herrn").
All words and patterns come from conf/ocr/default.yaml.
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

from docvlm.normalize import find_dates
from docvlm.ocr.lines import TextLine, font_size
from docvlm.ocr.page import Page, date_text, has_phrase, phrase_pattern, starts_with_phrase
from docvlm.ocr.rules import OcrRules
from docvlm.schema import Schema


# ----------------------------------------------------------------------------- supplier
def read_supplier(page: Page, rules: OcrRules, schema: Schema,
                  payer: Sequence[TextLine] = ()) -> tuple[Optional[str], list[TextLine]]:
    """The supplier's name and the lines it was read from: after a seller label, else the first line
    at the top naming a legal form, else the largest name at the top; never a line of the payer's
    block (`payer`: "Bill To / Kunden AG" above the seller's name)."""
    for finder in (_labelled_supplier, _legal_form_supplier, _largest_supplier):
        parts = finder(page, rules, schema)
        parts = [] if any(line in payer for _, line in parts) else parts
        if not parts and finder is not _labelled_supplier and payer:
            parts = finder(_without(page, payer, rules), rules, schema)
        if parts:
            return tidy_name(" ".join(text for text, _ in parts)), [line for _, line in parts]
    return None, []


def _without(page: Page, lines: Sequence[TextLine], rules: OcrRules) -> Page:
    return Page.from_lines([line for line in page.lines if line not in lines], rules.row_overlap)


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
        near = -0.3 * line.height < gap < 0.6 * line.height and abs(other.x0 - line.x0) <= line.height
        if other is line or not near:
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
    text = _without_country_code(text, rules)  # "F-13002 Marseille": the dash would hide the postcode
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
        end = next((i for i, below in enumerate(block) if _ends_address(below.text, rules)), None)
        block = block if end is None else block[: end + 1]  # the postcode line ends the payer's address
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
    return join_address([line.text for line in lines[start: end + 1]], rules) if end is not None else None


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
        return join_address([tidy_locality(line.text, rules) or line.text for line in block], rules)
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
    text = _without_country_code(text, rules)
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


def join_address(lines: list[str], rules: OcrRules) -> str:
    """Address lines as one text, a comma between lines unless a line ends with one; a country code
    printed before a postcode ("DE 80333 München", "F-75001 Paris") is left out, like a country line."""
    text = ""
    for part in (_without_country_code(line.strip(), rules) for line in lines):
        text = f"{text}{' ' if text.endswith(',') or not text else ', '}{part}" if text else part
    return re.sub(r",(?=\S)", ", ", text)  # "Unit 8,213 Wattle Parade": OCR drops the space


def _without_country_code(text: str, rules: OcrRules) -> str:
    """`text` without a leading country code when a postcode follows it right away."""
    match = rules.country_code.match(text)
    rest = text[match.end():] if match else ""
    return rest if rest and any(p.match(rest) for p in rules.postcodes) else text


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
