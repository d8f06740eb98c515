"""Bank statement column headers -> roles (date, description, debit, credit, balance, amount).

One keyword table (schema.bank_header_roles) serves detection (any debit/credit/balance column
means a bank statement) and the bank flow (which column holds what).
"""

from __future__ import annotations

import re
from typing import Optional

from docvlm.parse import answer_lines, canonical_key, cut_repetition, split_key_value, table_cells
from docvlm.schema import Schema

_MAX_HEADERS = 15  # a table wider than this is a loop or a misread
_HEADERS_LABEL = re.compile(r"(TABLE_)?(COLUMN|COL|HEADER)S?(_HEADERS?|_NAMES?)?(_\d+)?")


def header_role(header: str, schema: Schema) -> Optional[tuple[str, int]]:
    """(role, preference) of a column header: the longest matching keyword wins; a header naming
    both parts of a merged role ("Debits/Credits") gets that role. Preference = keyword position."""
    text = _words(header)
    hits = [(len(kw), role, index) for role, keywords in schema.bank_header_roles.items()
            for index, kw in enumerate(keywords) if re.search(rf"(?<!\w){re.escape(_words(kw))}(?!\w)", text)]
    if not hits:
        return None
    roles = {role for _, role, _ in hits}
    for merged, parts in schema.bank_merged_roles.items():
        if all(part in roles for part in parts):
            return merged, 0
    _, role, index = max(hits, key=lambda hit: hit[0])
    return role, index


def map_headers(headers: list[str], schema: Schema) -> dict[str, str]:
    """role -> header; among headers of one role the preferred keyword wins, then the leftmost."""
    best: dict[str, tuple[int, int, str]] = {}
    for position, header in enumerate(headers):
        found = header_role(header, schema)
        if found and (found[0] not in best or (found[1], position) < best[found[0]][:2]):
            best[found[0]] = (found[1], position, header)
    return {role: header for role, (_, _, header) in sorted(best.items(), key=lambda kv: kv[1][1])}


def marker_roles(headers: list[str], schema: Schema) -> list[str]:
    """The bank-marker roles (debit, credit, balance) among `headers`, in schema order."""
    roles = {found[0] for found in (header_role(h, schema) for h in headers) if found}
    return [role for role in schema.bank_marker_roles if role in roles]


def parse_headers(text: str) -> list[str]:
    """Column headers from the turn-0 answer: one a line, or a " | " / markdown row; commentary,
    duplicates (a loop) and sentence-like lines dropped."""
    text, _ = cut_repetition(text)
    headers: list[str] = []
    for line in answer_lines(text):
        for header in _line_headers(line):
            if header.lower() not in (h.lower() for h in headers):
                headers.append(header)
    return headers[:_MAX_HEADERS]


def _line_headers(line: str) -> list[str]:
    if not line or set(line) <= set("|-: "):
        return []
    pair = split_key_value(line)
    if pair and _HEADERS_LABEL.fullmatch(canonical_key(pair[0])):
        return [c for c in re.split(r"\s*[|,\t]\s*", pair[1].strip("| ")) if c]  # "Column 2: Details"
    cells = table_cells(line)
    if cells is None and ("|" in line or "\t" in line):
        cells = re.split(r"\s*[|\t]\s*", line.strip("| "))
    if cells is not None:
        return [c for c in cells if c]
    parts = [p.strip() for p in line.split(",")]
    if len(parts) >= 3 and all(0 < len(p.split()) <= 4 for p in parts):
        return parts  # "Date, Description, Debit, Credit, Balance"
    if pair or len(line.split()) > 5 or line[-1] in ".:!?":
        return []  # "Here are the headers:" and other prose
    return [line]


def _words(text: str) -> str:
    """Lower-case words only: "Debits ($)" -> "debits", "Dr/Cr" -> "dr cr"."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()
