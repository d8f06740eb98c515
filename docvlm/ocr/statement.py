"""Bank statements from a page: the transaction table by the x positions of its column headers, then
the same post-processing as the VLM path (docvlm/bank_rows.py: dates, order, balance correction;
docvlm/bank.py: debit rows only, equal-length lists, the statement period).

The header row is the row whose cells name bank roles (the schema's bank_header_roles, the table the
VLM path and detection use). Under it, each line goes by its content and position: a date to the
date column, an amount to the money column it lines up with, other text to the description. A row
with amounts is a transaction; a row holding only a date is a date heading for the rows under it;
a text-only row set tightly under a transaction continues its description (wrapped text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

from docvlm import bank, bank_rows
from docvlm.bank_headers import header_role, map_headers
from docvlm.normalize import find_dates
from docvlm.ocr.lines import TextLine, row_text
from docvlm.ocr.page import Page, date_text, find_phrase, has_phrase, is_money, money_values, starts_with_phrase
from docvlm.ocr.rules import OcrRules
from docvlm.schema import Schema

MONEY_ROLES = ("debit", "credit", "amount", "balance")


@dataclass(frozen=True)
class BankColumn:
    role: str
    header: TextLine


def find_bank_header(page: Page, rules: OcrRules, schema: Schema) -> Optional[tuple[int, list[BankColumn]]]:
    """The first row of column headers naming `bank_min_roles` bank roles, one a marker role."""
    for index, row in enumerate(page.rows):
        columns = [BankColumn(found[0], line) for line in row
                   if not re.search(r"\d", line.text) and (found := header_role(line.text, schema))]
        roles = {c.role for c in columns}
        if len(roles) >= rules.bank_min_roles and roles & set(schema.bank_marker_roles):
            return index, columns
    return None


def card_words(page: Page, rules: OcrRules) -> list[str]:
    """The credit-card statement cues the page prints."""
    text = page.text
    return sorted({w for w in rules.card_words if has_phrase(text, (w,))})


def find_card_header(page: Page, rules: OcrRules, schema: Schema) -> Optional[tuple[int, list[BankColumn]]]:
    """A credit-card statement's table header (no balance column): on a page with `card_min_words`
    card cues, the first row naming a date column and an amount column."""
    if len(card_words(page, rules)) < rules.card_min_words:
        return None
    for index, row in enumerate(page.rows):
        columns = [BankColumn(found[0], line) for line in row
                   if not re.search(r"\d", line.text) and (found := header_role(line.text, schema))]
        if {"date", "amount"} <= {c.role for c in columns}:
            return index, columns
    return None


def read_statement(page: Page, rules: OcrRules, schema: Schema) -> tuple[dict[str, str], dict[str, Any]]:
    """Normalised BANK_STATEMENT fields and details (headers, strategy, rows, corrections)."""
    card = len(card_words(page, rules)) >= rules.card_min_words  # a credit-card statement
    header = find_bank_header(page, rules, schema) or (find_card_header(page, rules, schema) if card else None)
    period = find_period(page, rules, schema)
    if header is None:
        statement = bank_rows.statement_from_rows([], period, "direct", schema)
        return bank.statement_fields(statement, schema), {"headers": [], "strategy": None, "period_printed": period}
    row_index, columns = header
    mapping = map_headers([c.header.text for c in columns], schema)
    strategy = bank.choose_strategy(mapping)
    rows = _opening_row(page, row_index, rules) + table_rows(page, row_index, columns, schema, carry_dates=not card)
    if card:  # purchases are the unsigned amounts: the amount column is split into debits and credits
        rows = [_card_row(row) for row in rows if not starts_with_phrase(row.get("description", ""), rules.card_skip_rows)]
        strategy = "debit_credit" if strategy == "signed_amount" else strategy
    statement = bank_rows.statement_from_rows(rows, period, strategy, schema)
    details = {"headers": [c.header.text for c in columns], "mapping": mapping, "strategy": strategy,
               **statement.details()}
    return bank.statement_fields(statement, schema), details


# ----------------------------------------------------------------------------- the table
def table_rows(page: Page, header_row: int, columns: list[BankColumn], schema: Schema,
               carry_dates: bool = True) -> list[dict[str, str]]:
    """Rows under the header as role -> cell text, dates carried down from the row or a heading.
    Without `carry_dates` (card statements print a date on every transaction) a row with amounts but
    no date of its own is not a transaction (a summary line under the table)."""
    description = next((c.header for c in columns if c.role == "description"), None)
    rows: list[dict[str, str]] = []
    current_date = ""
    last: Optional[list[TextLine]] = None
    for row in page.rows[header_row + 1:]:
        cells = _cells(row, columns, schema)
        if any(cells.get(role) for role in MONEY_ROLES):
            if not carry_dates and not cells.get("date"):
                last = None
                continue
            cells["date"] = cells.get("date") or current_date
            current_date = cells["date"]
            rows.append(cells)
            last = row
        elif _is_date_heading(cells, schema):
            current_date = date_text(cells.get("date") or cells.get("description", ""))
            last = None
        elif rows and last is not None and cells.get("description") and _continues(row, last, description):
            rows[-1]["description"] = f"{rows[-1].get('description', '')} {cells['description']}".strip()
            last = row
        else:
            last = None
    return rows


def _cells(row: list[TextLine], columns: list[BankColumn], schema: Schema) -> dict[str, str]:
    """role -> text for one visual row: amounts to the money column they line up with, a date to
    the date column (a date cell may read "03 Jan"), other text to the description."""
    money_columns = [c for c in columns if c.role in MONEY_ROLES]
    has_date_column = any(c.role == "date" for c in columns)
    cells: dict[str, list[str]] = {}
    for line in row:
        if is_money(line.text) and money_columns:
            role = min(money_columns, key=lambda c: _misalignment(line, c.header)).role
        elif has_date_column and "date" not in cells and _is_date_cell(date_text(line.text), schema):
            role = "date"
        elif has_date_column and "date" not in cells and (split := _leading_date(line.text, schema)):
            cells["date"], line_text = [split[0]], split[1]  # a date cell read together with the text
            cells.setdefault("description", []).append(line_text)
            continue
        else:
            role = "description"
        cells.setdefault(role, []).append(date_text(line.text) if role == "date" else line.text)
    return {role: " ".join(parts) for role, parts in cells.items()}


def _leading_date(text: str, schema: Schema) -> Optional[tuple[str, str]]:
    """("18 Apr 2024", "ATM WITHDRAWAL") from "18 Apr 2024 ATM WITHDRAWAL": a line that starts with a
    date and goes on in words."""
    text = date_text(text)
    dates = find_dates(text, schema)
    if not dates or dates[0].start > 1 or not re.search(r"[A-Za-z]{2}", text[dates[0].end:]):
        return None
    return text[: dates[0].end].strip(), text[dates[0].end:].strip(" -:")


def _misalignment(line: TextLine, header: TextLine) -> float:
    return min(abs(line.x0 - header.x0), abs(line.x1 - header.x1), abs(line.cx - header.cx))


def _is_date_cell(text: str, schema: Schema) -> bool:
    """The text is a date and little else ("03/01/2024", "03 Jan", "Tue 05 Mar")."""
    dates = find_dates(text, schema)
    if len(dates) != 1:
        return False
    rest = text[: dates[0].start] + text[dates[0].end:]
    return not re.search(r"\d", rest) and len(rest.split()) <= 1


def _is_date_heading(cells: dict[str, str], schema: Schema) -> bool:
    """A row holding one date and nothing else (a heading such as "Tuesday, 5 March 2024")."""
    text = date_text(" ".join(cells.values()))
    dates = find_dates(text, schema)
    if len(dates) != 1:
        return False
    rest = text[: dates[0].start] + text[dates[0].end:]
    return not re.search(r"\d", rest) and len(rest.split()) <= 2


def _continues(row: list[TextLine], last: list[TextLine], description: Optional[TextLine]) -> bool:
    """A text-only row set tightly under the previous row, in the description column."""
    height = max(line.height for line in last)
    gap = min(line.y0 for line in row) - max(line.y1 for line in last)
    if gap > 0.8 * height:
        return False
    if description is None:
        return True
    return any(abs(line.x0 - description.x0) < 2 * height for line in row)


def _card_row(row: dict[str, str]) -> dict[str, str]:
    """A card statement's amount cell as a debit (unsigned: a purchase, fee or interest) or a credit
    ("-500.00", "(500.00)", "500.00 CR": a payment or refund)."""
    cell = row.pop("amount", "").strip()
    if not cell:
        return row
    credit = cell.startswith(("-", "(")) or re.search(r"(?i)\bcr\b", cell) is not None
    row["credit" if credit else "debit"] = re.sub(r"(?i)\b(?:cr|dr)\b|[-()+]", "", cell).strip()
    return row


# ----------------------------------------------------------------------------- around the table
def find_period(page: Page, rules: OcrRules, schema: Schema) -> Optional[str]:
    """The printed statement period: the text after a period label, if it holds two dates; else
    the first row holding exactly two dates joined by "to" or a dash."""
    for row in page.rows:
        text = date_text(row_text(row))
        label = find_phrase(text, rules.label("period"))
        if label and len(find_dates(text[label.end():], schema)) >= 2:
            return text[label.end():].strip(" :")
    for row in page.rows:
        text = date_text(row_text(row))
        dates = find_dates(text, schema)
        if len(dates) == 2 and re.fullmatch(r"\s*(?:to|-|–|until)\s*", text[dates[0].end: dates[1].start], re.I):
            return text[dates[0].start: dates[1].end]
    return None


def _opening_row(page: Page, header_row: int, rules: OcrRules) -> list[dict[str, str]]:
    """An opening balance printed above the table ("Opening balance $2,316.42") as a row, so that
    balance correction can check the first transaction too."""
    for row in page.rows[:header_row]:
        text = row_text(row)
        previous_end = 0
        for value, match in money_values(text):
            label = text[previous_end: match.start()]
            previous_end = match.end()
            found = find_phrase(label, rules.label("opening_balance"))
            if found and not label[found.end():].strip(" :$"):
                return [{"description": found.group(), "balance": match.group().strip()}]
    return []
