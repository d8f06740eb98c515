"""A page as the layout rules see it: text lines grouped into rows, and text helpers shared by the rules.

OCR drops spaces now and then ("Statementperiod"), so phrases match with or without the spaces
between their words; whole words only ("card" does not match "cards").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Optional, Sequence

from docvlm.normalize import parse_number
from docvlm.ocr.lines import TextLine, group_rows, row_text

# Amounts as printed: "$1,020.22", "-133.91", "(12.50)", "2,182.51 CR", "€ 8.50", "1.234,56", "12,50",
# "1 234,56" (French, grouped by a no-break space);
# two decimals (a bare "3" is a quantity, not money), not part of a date ("18.04.2018") or a rate ("19,00%").
# Currency codes ("RM", "EUR") are left to the labels' cleaning (sale.py): "GST 6.00" is no currency.
_MONEY = re.compile(r"(?P<neg>-|\()?\s?(?:(?:[A-Z]?\$|[€£¥₹])\s?)?(?P<sign>-)?"
                    r"(?<![\d.,])(?P<num>\d{1,3}(?:,\d{3})+\.\d{2}|\d{1,3}(?:\.\d{3})+,\d{2}"
                    r"|\d{1,3}(?:[\u00a0\u202f]\d{3})+,\d{2}|\d+[.,]\d{2})"
                    r"(?!\d|[.,]\d|\s?%)")


@dataclass
class Page:
    lines: list[TextLine]
    rows: list[list[TextLine]] = field(default_factory=list)

    @classmethod
    def from_lines(cls, lines: Iterable[TextLine], row_overlap: float) -> "Page":
        lines = list(lines)
        return cls(lines, group_rows(lines, row_overlap))

    @property
    def text(self) -> str:
        return "\n".join(row_text(row) for row in self.rows)

    def line_height(self) -> float:
        heights = sorted(line.height for line in self.lines)
        return heights[len(heights) // 2] if heights else 1.0


@lru_cache(maxsize=1024)
def phrase_pattern(phrase: str) -> re.Pattern[str]:
    # "Beleg-Datum" is "beleg datum"; "*zeitraum" also ends a compound word ("Abrechnungszeitraum")
    start = r"(?<![a-z0-9])\w*" if phrase.startswith("*") else r"(?<![a-z0-9])"
    words = [re.escape(w) for w in re.split(r"[\s\-]+", phrase.lstrip("*")) if w]
    return re.compile(start + r"[\s\-]*".join(words) + r"(?![a-z0-9])", re.IGNORECASE)


def find_phrase(text: str, phrases: Sequence[str]) -> Optional[re.Match[str]]:
    """The earliest match of any of `phrases` in `text` (longest phrase first at one position)."""
    hits = [m for m in (phrase_pattern(p).search(text) for p in phrases) if m]
    return min(hits, key=lambda m: (m.start(), -len(m.group())), default=None)


def last_phrase(text: str, phrases: Sequence[str]) -> Optional[re.Match[str]]:
    """The match of any of `phrases` that ends last in `text` (the label nearest to what follows)."""
    hits = [m for p in phrases for m in phrase_pattern(p).finditer(text)]
    return max(hits, key=lambda m: (m.end(), len(m.group())), default=None)


def has_phrase(text: str, phrases: Sequence[str]) -> bool:
    return find_phrase(text, phrases) is not None


def starts_with_phrase(text: str, phrases: Sequence[str]) -> Optional[re.Match[str]]:
    match = find_phrase(text, phrases)
    return match if match and not text[: match.start()].strip(" :*-") else None


def date_text(text: str) -> str:
    """`text` with the separators OCR lost or misread around dates put back, so that the
    normaliser's date patterns find them: letters glued to digits ("to29 Feb", "Wednesday26
    February") and a full stop read for a comma ("Monday.2 October"). For finding dates only."""
    text = re.sub(r"(?<=[A-Za-z])\.(?=\s?\d)", ", ", text)
    return re.sub(r"(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z]{2})", " ", text)


def money_values(text: str) -> list[tuple[float, re.Match[str]]]:
    """Every amount in `text` with its match, in order; "(12.50)" and "-12.50" are negative."""
    found = []
    for match in _MONEY.finditer(text):
        value = parse_number(match["num"])
        found.append((-value if match["neg"] or match["sign"] else value, match))
    return found


def is_money(text: str) -> bool:
    """The whole text is one amount (a money cell), allowing a sign, a "$" and a CR/DR suffix."""
    found = money_values(text)
    if len(found) != 1:
        return False
    rest = text[: found[0][1].start()] + text[found[0][1].end():]
    return not re.sub(r"(?i)\b(?:cr|dr)\b|[+\s)$]", "", rest)
