"""THE normaliser: one function turns any field value (model answer or ground truth) into canonical form.

Both sides of every comparison go through `normalize_value`, so a convention lives in one place:
dates DD/MM/YYYY (day first), money "$1020.22", ABN digits only, booleans true/false, bare
quantities, lists joined with " | ". A value that cannot be read in its kind is kept as cleaned
text rather than guessed, so the comparator sees what the model wrote.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Optional

from docvlm.schema import DocTypeSpec, Schema

_WRAPPERS = " \t\r\n*`\"'_"  # markdown bold/code and quotes a model wraps values in
# Numbers as printed in several countries: "1,234.56", "1.234,56" (decimal comma), "1'234.56", "1 234,56", "12,50";
# a lone comma before three digits ("1,234") groups thousands, a lone dot ("1.234") is a decimal point.
_NUMBER = (r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?:\.\d{3})+(?:,\d+)?|\d{1,3}(?:'\d{3})+(?:\.\d+)?"
           r"|\d{1,3}(?:[ \u00a0\u202f]\d{3})+,\d+|\d+(?:[.,]\d+)?|\.\d+")
# A currency mark or code next to an amount: "$", "€", "£", "RM", "EUR", "Rs." (before or after it).
_CURRENCY = r"(?:[$€£¥₹]|\b(?:[A-Z]{3}|RM|Rs\.?|[A-Z]{1,2}\$)(?![A-Za-z]))"
_MONEY_RE = re.compile(rf"(?P<neg>-|\()?\s*(?P<cur>{_CURRENCY})?\s*(?P<sign>-)?\s*(?P<num>{_NUMBER})"
                       rf"(?P<after>\s?{_CURRENCY})?")
_NUMBER_RE = re.compile(_NUMBER)


# ----------------------------------------------------------------------------- public API
def is_missing(value: object, schema: Schema) -> bool:
    """True for None and every spelling of "not found" (NOT_FOUND, N/A, null, empty, ...)."""
    if value is None:
        return True
    return _clean(str(value)).rstrip(".").lower() in schema.not_found_aliases


def normalize_value(value: object, kind: str, schema: Schema, is_list: bool = False,
                    year: Optional[int] = None) -> str:
    """Canonical form of one field value of `kind` (a schema field kind).

    `year` completes yearless dates ("05 Mar") when the caller knows the document's year.
    """
    if is_missing(value, schema):
        return schema.not_found
    text = str(value)
    if is_list:
        items = [normalize_value(item, kind, schema, year=year) for item in split_list(text, schema, kind)]
        if not items or all(item == schema.not_found for item in items):
            return schema.not_found
        return schema.list_separator.join(items)
    return _NORMALISERS[kind](_clean(text), schema, year)


def normalize_fields(fields: Mapping[str, object], doc_type: DocTypeSpec, schema: Schema) -> dict[str, str]:
    """Every field of `doc_type`, normalised; NOT_FOUND where missing; parallel lists aligned.

    All list fields of a type are parallel (line items, transactions): a shorter list is padded
    with NOT_FOUND so positions keep matching; a list missing entirely stays NOT_FOUND.
    """
    out = {
        spec.name: normalize_value(fields.get(spec.name), spec.kind, schema, spec.is_list)
        for spec in doc_type.fields
    }
    return align_lists(out, doc_type, schema)


def align_lists(fields: dict[str, str], doc_type: DocTypeSpec, schema: Schema) -> dict[str, str]:
    """Pad the type's present list fields with NOT_FOUND to the longest one's length."""
    lists = {f.name: split_list(fields[f.name], schema) for f in doc_type.fields
             if f.is_list and fields.get(f.name, schema.not_found) != schema.not_found}
    longest = max((len(items) for items in lists.values()), default=0)
    for name, items in lists.items():
        if len(items) == 1 and longest > 1 and len(re.split(r",\s+", items[0])) == longest:
            items = re.split(r",\s+", items[0])  # "Widget, Gadget, Gizmo" beside 3-item lists
        items = items + [schema.not_found] * (longest - len(items))
        fields[name] = schema.list_separator.join(items)
    return fields


def split_list(value: str, schema: Schema, kind: Optional[str] = None) -> list[str]:
    """Items of a list value.

    " | " (any spacing) separates items. Without a pipe, line breaks and semicolons separate items;
    for money/number/date lists a comma separates too, but only if every piece then reads as a
    value of that kind, and never the comma inside an amount ("$1,020.22").
    """
    if is_missing(value, schema):
        return []
    text = str(value).strip()
    if "|" in text:
        return [item.strip() for item in text.strip("|").split("|")]
    if "\n" in text or ";" in text:
        return [item.strip() for item in re.split(r"[\n;]", text) if item.strip()]
    if kind in ("money", "number", "date") and "," in text:
        pieces = [p.strip() for p in re.split(r"(?<!\d),|,(?!\d{3}(?!\d))", text) if p.strip()]
        if len(pieces) > 1 and all(_reads_as(p, kind, schema) for p in pieces):
            return pieces
    return [text]


# ----------------------------------------------------------------------------- money and numbers
def parse_money(text: str) -> Optional[float]:
    """The amount in `text` ("$1,020.22", "-5.00", "(12.50)", "AUD 7") or None; sign kept."""
    matches = list(_MONEY_RE.finditer(text))
    if not matches:
        return None
    # "2 items $15.00": the amount with a currency mark wins over a bare number.
    match = next((m for m in matches if m["cur"] or m["after"]), matches[0])
    amount = parse_number(match["num"])
    return -amount if match["neg"] or match["sign"] else amount


def parse_number(text: str) -> float:
    """A number as printed ("1,234.56", "1.234,56", "12,50", "1'234") as a float; the last of two
    different separators is the decimal one."""
    text = re.sub(r"['\s]", "", text)  # "1'234.50", "1 234,56"
    if "," in text and "." in text:
        decimal = "," if text.rfind(",") > text.rfind(".") else "."
        text = text.replace("." if decimal == "," else ",", "").replace(",", ".")
    elif "," in text:
        text = text.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+", text) else text.replace(",", ".")
    elif text.count(".") > 1:
        text = text.replace(".", "")
    return float(text)


def format_money(amount: float) -> str:
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):.2f}"


def _money(text: str, schema: Schema, year: Optional[int]) -> str:
    amount = parse_money(text)
    return text if amount is None else format_money(amount)


def _number(text: str, schema: Schema, year: Optional[int]) -> str:
    match = _NUMBER_RE.search(text)
    if not match:
        return text
    number = parse_number(match.group())
    if number.is_integer():
        return str(int(number))
    return f"{number:.6f}".rstrip("0").rstrip(".")


# ----------------------------------------------------------------------------- ids, booleans, text
def _id(text: str, schema: Schema, year: Optional[int]) -> str:
    # An ABN is written with spaces/dashes, and sometimes a label or a remark ("ABN: 12 345 678 901").
    match = re.search(r"\d[\d\s\-./]*\d|\d", text)
    return re.sub(r"\D", "", match.group()) if match else text


def parse_bool(text: str, schema: Schema) -> Optional[bool]:
    """True/False from yes/no/true/false/1/0/included... (false words first: "not included")."""
    lowered = _clean(text).lower()
    checks = ((schema.false_words, False), (schema.true_words, True))
    for find in (re.match, re.search):  # the first word decides; else a phrase anywhere ("GST not included")
        for words, result in checks:
            if any(find(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])", lowered) for word in words):
                return result
    return None


def _boolean(text: str, schema: Schema, year: Optional[int]) -> str:
    value = parse_bool(text, schema)
    return text if value is None else str(value).lower()


def _text(text: str, schema: Schema, year: Optional[int]) -> str:
    return re.sub(r"\s+", " ", text).strip(" ,;")


def _doc_type(text: str, schema: Schema, year: Optional[int]) -> str:
    return canonical_type(text, schema) or re.sub(r"[\s\-]+", "_", text.strip()).upper()


def canonical_type(text: str, schema: Schema) -> Optional[str]:
    """The schema's type name for "tax invoice", "Bank Statement", "RECEIPT"...; None if unknown."""
    key = re.sub(r"[\s_\-]+", " ", _clean(text)).strip(" .:").lower()
    if key.upper().replace(" ", "_") in schema.types:
        return key.upper().replace(" ", "_")
    return schema.type_aliases.get(key) or schema.type_aliases.get(key.replace(" ", "_"))


# ----------------------------------------------------------------------------- dates
@dataclass(frozen=True)
class DateParts:
    """A date as read from text; `year` is None when the text has no year ("05 Mar")."""

    day: int
    month: int
    year: Optional[int]
    start: int = 0  # position in the text it was found in
    end: int = 0

    def to_date(self, year: Optional[int] = None) -> Optional[dt.date]:
        try:
            return dt.date(self.year or year, self.month, self.day) if (self.year or year) else None
        except ValueError:
            return None


def find_dates(text: str, schema: Schema) -> list[DateParts]:
    """Every date written in `text`, in order: 05/03/2024, 5-3-24, 2024-03-05, 5th March 2024,
    Mar 5, 2024, Tue 05 Mar, 05-Mar-24... Numeric dates are day first; a numeric date that is
    only valid month first (03/25/2024) is read month first."""
    hits: list[DateParts] = []
    for kind, pattern in _date_patterns(tuple(sorted(schema.months, key=len, reverse=True))):
        for match in pattern.finditer(text):
            parts = _date_from_match(kind, match, schema)
            if parts and not any(h.start < parts.end and parts.start < h.end for h in hits):
                hits.append(parts)
    return sorted(hits, key=lambda h: h.start)


def parse_date(text: str, schema: Schema, year: Optional[int] = None) -> Optional[dt.date]:
    """The first full date in `text` (`year` completes a yearless one), or None."""
    for parts in find_dates(text, schema):
        found = parts.to_date(year)
        if found:
            return found
    return None


def format_date(date: dt.date) -> str:
    return date.strftime("%d/%m/%Y")


def _date(text: str, schema: Schema, year: Optional[int]) -> str:
    dates = find_dates(text, schema)
    if not dates:
        return text
    found = dates[0].to_date(year)
    if found:
        return format_date(found)
    return f"{dates[0].day:02d}/{dates[0].month:02d}" if dates[0].year is None else text


def _date_range(text: str, schema: Schema, year: Optional[int]) -> str:
    dates = find_dates(text, schema)
    if len(dates) < 2:
        return _date(text, schema, year) if dates else text
    last = dates[-1].to_date(year)
    # "1 Mar - 31 Mar 2024": the first date takes the last one's year (or the year before if later).
    first = dates[0].to_date(year or (last.year if last else None))
    if first and last and first > last and dates[0].year is None:
        first = dates[0].to_date(last.year - 1)
    if not (first and last):
        return text
    return f"{format_date(first)} - {format_date(last)}"


@lru_cache(maxsize=8)
def _date_patterns(month_names: tuple[str, ...]) -> list[tuple[str, re.Pattern[str]]]:
    names = "|".join(re.escape(m) for m in month_names) or "(?!)"  # no names in the schema: never matches
    month = "(?P<month>" + names + r")\.?"
    day = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
    # not the start of an amount ("10.00"); a four-digit year may run into a time ("18/04/201810:30")
    year = r"(?P<year>\d{4}(?=\d{1,2}:\d{2})|(?:\d{4}|\d{2})(?!\d|[.,]\d))"
    sep = r"(?:[\s\-/.,]*|\s+of\s+)"
    year_sep = r"(?:[\s,]+|[-/.]|)"  # not " - ": "1 Mar - 31 Mar" is a range, 31 is no year
    flags = re.IGNORECASE
    return [
        ("ymd", re.compile(r"(?<!\d)(?P<year>\d{4})[-/.](?P<month>\d{1,2})[-/.](?P<day>\d{1,2})(?!\d)")),
        ("ymd", re.compile(r"(?<!\d)(?P<year>(?:19|20)\d{2})(?P<month>0[1-9]|1[0-2])"  # "20180428"
                           r"(?P<day>0[1-9]|[12]\d|3[01])(?!\d)")),
        ("dmy", re.compile(r"(?<![\d.])(?P<day>\d{1,2})([-/.])(?P<month>\d{1,2})\2" + year + r"(?!/)")),
        ("d_name", re.compile(rf"(?<![\w.]){day}{sep}{month}(?![a-z])(?:{year_sep}{year})?", flags)),
        ("name_d", re.compile(rf"(?<![\w]){month}(?![a-z])\s*{day}(?![\d])(?:,?\s*{year})?", flags)),
        ("dm", re.compile(r"(?<![\d.$])(?P<day>\d{1,2})/(?P<month>\d{1,2})(?![\d/.])")),
    ]


def _date_from_match(kind: str, match: re.Match[str], schema: Schema) -> Optional[DateParts]:
    raw_month = match["month"]
    month = int(raw_month) if raw_month.isdigit() else schema.months[raw_month.lower()]
    day = int(match["day"])
    year = _full_year(match.groupdict().get("year"))
    if kind in ("dmy", "dm") and not _valid(day, month, year) and _valid(month, day, year):
        day, month = month, day  # only readable month first (03/25/2024)
    if not _valid(day, month, year) or (year is not None and year not in _PLAUSIBLE_YEARS):
        return None
    return DateParts(day, month, year, match.start(), match.end())


# A year outside is a misread ("3018") or another number read as a date (a product code "11-22-30").
_PLAUSIBLE_YEARS = range(1970, dt.date.today().year + 2)


def _full_year(text: Optional[str]) -> Optional[int]:
    if not text:
        return None
    year = int(text)
    return year if year >= 100 else (2000 + year if year < 70 else 1900 + year)


def _valid(day: int, month: int, year: Optional[int]) -> bool:
    try:
        dt.date(year or 2000, month, day)  # 2000 is a leap year: 29/02 without a year is fine
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- helpers
def _clean(text: str) -> str:
    """Strip whitespace, markdown emphasis/code and quotes around a value."""
    text = text.strip().strip(_WRAPPERS)
    return text.rstrip(",").strip(_WRAPPERS)


def _reads_as(text: str, kind: str, schema: Schema) -> bool:
    if kind == "money":
        return bool(re.fullmatch(rf"-?\(?\s*(?:{_CURRENCY})?\s*(?:{_NUMBER})\s?(?:{_CURRENCY})?\)?", text.strip()))
    if kind == "number":
        return bool(re.fullmatch(rf"(?:x\s*)?(?:{_NUMBER})\s*[a-z]*", text.strip(), re.IGNORECASE))
    dates = find_dates(text, schema)
    return len(dates) == 1 and dates[0].year is not None


_NORMALISERS = {
    "money": _money,
    "number": _number,
    "date": _date,
    "date_range": _date_range,
    "id": _id,
    "boolean": _boolean,
    "text": _text,
    "doc_type": _doc_type,
}
