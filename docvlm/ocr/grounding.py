"""Grounding check: which extracted values cannot be found on the page (issue 7 part 4).

Each value is normalised (the one normaliser) and looked for in the page's OCR text by its field
kind, the way the evaluation compares values:
  money      any number on the page equal within `money_tolerance` (absolute: the evaluation's
             relative tolerance is too loose to tell a right amount from a near one)
  number     any number on the page equal to it
  date       a date on the page with the same day and month (and year, when the page gives one)
  date_range both ends found as dates
  id         its digits, in order, in the digits of one page row (spaces and dashes ignored)
  text       most of its words found in the page text (letters and digits only, so OCR spacing and
             punctuation do not matter): `text_min_share` of its characters, in words of 2+ characters
A list field is grounded when `list_min_share` of its items are. NOT_FOUND values and the kinds in
`grounding.skip_kinds` (booleans, the document type) are not checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Optional, Sequence

from docvlm.normalize import find_dates, normalize_value, parse_money, parse_number, split_list
from docvlm.ocr.lines import TextLine, group_rows, row_text
from docvlm.ocr.page import date_text
from docvlm.ocr.rules import OcrRules, load_ocr_rules
from docvlm.schema import DocTypeSpec, Schema

# Numbers as printed in several countries ("1,234.56", "1.234,56", "12,50"), read by the normaliser.
_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?:\.\d{3})+(?:,\d+)?|\d+(?:[.,]\d+)?")


@dataclass(frozen=True)
class PageEvidence:
    numbers: tuple[float, ...]
    dates: frozenset[tuple[int, int, Optional[int]]]
    digit_rows: tuple[str, ...]
    letters: str  # the page's letters and digits, lower case, no spaces

    @classmethod
    def from_lines(cls, lines: Sequence[TextLine], schema: Schema, row_overlap: float) -> "PageEvidence":
        rows = [row_text(row) for row in group_rows(lines, row_overlap)]
        text = "\n".join(rows)
        numbers = tuple(parse_number(m.group()) for m in _NUMBER.finditer(text))
        dates = frozenset((d.day, d.month, d.year) for row in rows for d in find_dates(date_text(row), schema))
        return cls(numbers, dates, tuple(re.sub(r"\D", "", row) for row in rows), _letters(text))


def find_ungrounded(fields: Mapping[str, str], doc_type_spec: DocTypeSpec, page_lines: Sequence[TextLine],
                    schema: Schema, rules: OcrRules | None = None) -> list[str]:
    """Names of the fields of `doc_type_spec` whose values are not found on the page, in schema order."""
    rules = rules or _default_rules()
    evidence = PageEvidence.from_lines(page_lines, schema, rules.row_overlap)
    ungrounded = []
    for spec in doc_type_spec.fields:
        if spec.kind in rules.grounding_skip_kinds:
            continue
        value = normalize_value(fields.get(spec.name), spec.kind, schema, spec.is_list)
        items = [i for i in split_list(value, schema) if i != schema.not_found] if spec.is_list else [value]
        items = [i for i in items if i != schema.not_found]
        if not items:
            continue
        found = sum(is_grounded(item, spec.kind, evidence, schema, rules) for item in items)
        share = rules.list_min_share if spec.is_list else 1.0
        if found < share * len(items) - 1e-9:
            ungrounded.append(spec.name)
    return ungrounded


def is_grounded(item: str, kind: str, evidence: PageEvidence, schema: Schema, rules: OcrRules) -> bool:
    """One normalised value (a list item or a scalar) found on the page?"""
    if kind == "money":
        value = parse_money(item)  # the page's numbers carry no sign: "-$8.79" is grounded by "-8,79"
        tolerance = rules.money_tolerance + 1e-9
        return value is not None and any(abs(abs(value) - n) <= tolerance for n in evidence.numbers)
    if kind == "number":
        return _number_found(item, evidence)
    if kind == "date":
        return _date_found(item, evidence, schema)
    if kind == "date_range":
        ends = item.split(" - ")
        return len(ends) == 2 and all(_date_found(end, evidence, schema) for end in ends)
    if kind == "id":
        digits = re.sub(r"\D", "", item)
        return bool(digits) and any(digits in row for row in evidence.digit_rows)
    return _text_found(item, evidence, rules)


def _number_found(item: str, evidence: PageEvidence) -> bool:
    try:
        value = float(item)
    except ValueError:
        return False
    return any(abs(n - value) < 1e-9 for n in evidence.numbers)


def _date_found(item: str, evidence: PageEvidence, schema: Schema) -> bool:
    dates = find_dates(item, schema)
    if not dates:
        return False
    day, month, year = dates[0].day, dates[0].month, dates[0].year
    return (day, month, year) in evidence.dates or (day, month, None) in evidence.dates


def _text_found(item: str, evidence: PageEvidence, rules: OcrRules) -> bool:
    words = [w for w in re.findall(r"[a-z0-9]+", item.casefold()) if len(w) >= 2]
    if not words:
        return _letters(item) in evidence.letters if _letters(item) else False
    total = sum(len(w) for w in words)
    found = sum(len(w) for w in words if w in evidence.letters)
    return found >= rules.text_min_share * total


def _letters(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.casefold())


@lru_cache(maxsize=1)
def _default_rules() -> OcrRules:
    return load_ocr_rules()
