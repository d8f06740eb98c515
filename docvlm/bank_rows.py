"""Turn-1 answer of a bank statement -> transactions: rows, dates, order, balance correction.

Row shapes read (models write all of them whatever the prompt asks):
  03/01/2024 | Coffee | 4.50 | NOT_FOUND | 1,230.06      the requested pipe format (or a markdown table)
  | Coffee | 4.50 | | 1,230.06 |                        no date: the date heading above it applies
  **Wednesday 3 January 2024**                           a date heading
  Date: 03/01/2024 | Description: Coffee | Debit: 4.50   labelled cells
  Date: 03/01/2024 / Description: Coffee / ...           one labelled cell a line (a block per row)
  03 Jan Coffee Shop 4.50 1,230.06                        free text: date, description, amounts
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

from docvlm.bank_headers import header_role
from docvlm.normalize import find_dates, format_date, is_missing, normalize_value, parse_money
from docvlm.parse import answer_lines, is_table_rule, resolve_field, split_key_value
from docvlm.schema import Schema

SIGNED_STRATEGIES = ("signed_amount", "amount_balance")  # an unsigned amount there is money in
BALANCE_STRATEGIES = ("balance_debit_credit", "amount_balance")
_MONEY_TAIL = re.compile(r"(?:\s+[-+]?\(?\$?\d{1,3}(?:,?\d{3})*\.\d{2}\)?(?:\s*(?:CR|DR))?)+\s*$", re.IGNORECASE)
_MONEY_TOKEN = re.compile(r"[-+]?\(?\$?\d{1,3}(?:,?\d{3})*\.\d{2}\)?(?:\s*(?:CR|DR))?", re.IGNORECASE)
_DR_CR = re.compile(r"(?<![a-z])(dr|cr)(?![a-z])", re.IGNORECASE)
_NEAR_PERIOD = dt.timedelta(days=7)  # a yearless row date may sit just outside the printed period


@dataclass
class Transaction:
    date_text: str
    description: str
    debit: Optional[float] = None
    credit: Optional[float] = None
    balance: Optional[float] = None
    kind: str = "transaction"  # "opening" (gives the starting balance) | "skip" | "transaction"
    date: Optional[dt.date] = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["date"] = format_date(self.date) if self.date else None
        return data


@dataclass
class Statement:
    transactions: list[Transaction]
    period_text: Optional[str]
    schema: Schema
    order: str = "chronological"
    corrections: list[dict[str, Any]] = field(default_factory=list)
    dropped_last_row: bool = False

    def debits(self) -> list[Transaction]:
        tol = self.schema.bank_balance_tolerance
        return [t for t in self.transactions if t.kind == "transaction" and (t.debit or 0) > tol]

    def date_range(self) -> Optional[str]:
        """The printed period if it reads as two dates, else first - last row date."""
        if self.period_text:
            printed = normalize_value(self.period_text, "date_range", self.schema)
            if " - " in printed and len(find_dates(printed, self.schema)) == 2:
                return printed
        dates = [t.date for t in self.transactions if t.date]
        return f"{format_date(min(dates))} - {format_date(max(dates))}" if dates else None

    def details(self) -> dict[str, Any]:
        return {"period_printed": self.period_text, "order": self.order, "corrections": self.corrections,
                "dropped_last_row": self.dropped_last_row,
                "skipped_rows": sum(t.kind != "transaction" for t in self.transactions),
                "rows": [t.to_json() for t in self.transactions]}


def read_statement(text: str, columns: list[str], headers: list[str], strategy: str, schema: Schema,
                   finished: bool = True) -> Statement:
    """All steps after turn 1: rows -> transactions -> dates -> chronological -> balance correction."""
    reader = _RowReader(columns, headers, schema)
    for line in answer_lines(text):
        reader.feed(line)
    rows = reader.finish()
    dropped = not finished and bool(rows)
    if dropped:
        rows = rows[:-1]  # the budget ran out: the last row may be half written
    return statement_from_rows(rows, reader.period, strategy, schema, dropped_last_row=dropped)


def statement_from_rows(rows: list[dict[str, str]], period_text: Optional[str], strategy: str, schema: Schema,
                        dropped_last_row: bool = False) -> Statement:
    """Rows already split into cells (role -> text, the date carried down) -> a Statement: dates,
    chronological order, balance correction. The turn-1 reader above ends here, and so does the OCR
    engine's table reader (docvlm/ocr/statement.py)."""
    transactions = [to_transaction(row, strategy, schema) for row in rows]
    resolve_dates(transactions, _period(period_text, schema), schema)
    transactions, order = chronological(transactions)
    statement = Statement(transactions, period_text, schema, order, dropped_last_row=dropped_last_row)
    if strategy in BALANCE_STRATEGIES:
        statement.corrections = correct_balances(transactions, schema.bank_balance_tolerance)
    return statement


# ----------------------------------------------------------------------------- reading rows
class _RowReader:
    """Reads answer lines one by one into rows (role -> cell text), carrying dates down."""

    def __init__(self, columns: list[str], headers: list[str], schema: Schema):
        self.columns = columns
        self.header_roles = [(header_role(h, schema) or (None,))[0] for h in headers]
        self.header_names = {h.lower(): role for h, role in zip(headers, self.header_roles) if role}
        self.schema = schema
        self.rows: list[dict[str, str]] = []
        self.period: Optional[str] = None
        self.current_date = ""
        self.block: Optional[dict[str, str]] = None

    def feed(self, line: str) -> None:
        if not line or is_table_rule(line):
            return self._end_block() if not line else None
        pair = split_key_value(line)
        if pair and resolve_field(pair[0], self.schema.type_spec("BANK_STATEMENT"), self.schema) == "STATEMENT_DATE_RANGE":
            self.period = None if is_missing(pair[1], self.schema) else pair[1]
            return None
        kind = _row_kind(pair[0], self.schema) if pair else "transaction"
        if kind != "transaction":  # "Opening balance: $1,000.00", "Total debits: 120.00" as labels
            self._end_block()
            return self._add({"description": pair[0], "balance": pair[1]}) if kind == "opening" else None
        if "|" in line:
            self._end_block()
            return self._cells([c.strip() for c in line.strip().strip("|").split("|")])
        role = self._label_role(pair[0]) if pair else None
        if role:
            if self.block is not None and role in self.block:
                self._end_block()
            self.block = {**(self.block or {}), role: pair[1]}
            return None
        self._end_block()
        if self._is_date_heading(line):
            self.current_date = line
            return None
        free = self._free_text_row(line)
        if free:
            self._add(free)
        return None

    def finish(self) -> list[dict[str, str]]:
        self._end_block()
        return self.rows

    def _cells(self, cells: list[str]) -> None:
        cells = ["" if is_missing(c, self.schema) else c for c in cells]
        if not any(cells) or self._is_header_row(cells):
            return
        labelled = [split_key_value(c) for c in cells if c]
        if all(p and self._label_role(p[0]) for p in labelled):
            return self._add({self._label_role(k): v for k, v in labelled})
        filled = [c for c in cells if c]
        if len(filled) == 1 and self._is_date_heading(filled[0]):
            self.current_date = filled[0]
            return None
        return self._add(self._positional(cells))

    def _positional(self, cells: list[str]) -> dict[str, str]:
        if len(cells) == len(self.columns):
            return dict(zip(self.columns, cells))
        if len(cells) == len(self.header_roles) and any(self.header_roles):
            row: dict[str, str] = {}
            for role, cell in zip(self.header_roles, cells):
                if role and not row.get(role):
                    row[role] = cell  # "Date" before "Value Date": the first filled one
            return row
        if len(cells) == len(self.columns) - 1 and self.columns[0] == "date" and not find_dates(cells[0], self.schema):
            return dict(zip(self.columns[1:], cells))  # the date column left out under a date heading
        return dict(zip(self.columns, cells))

    def _add(self, row: dict[str, str]) -> None:
        row = {role: "" if is_missing(value, self.schema) else value.strip() for role, value in row.items()}
        if not any(row.get(role) for role in ("debit", "credit", "amount", "balance", "description")):
            return
        if row.get("date") and find_dates(row["date"], self.schema):
            self.current_date = row["date"]
        else:
            row["date"] = self.current_date
        self.rows.append(row)

    def _end_block(self) -> None:
        if self.block:
            self._add(self.block)
        self.block = None

    def _label_role(self, label: str) -> Optional[str]:
        if label.lower() in self.header_names:
            return self.header_names[label.lower()]
        found = header_role(label, self.schema)
        return found[0] if found else None

    def _is_header_row(self, cells: list[str]) -> bool:
        if any(re.search(r"\d", c) for c in cells):
            return False
        named = [c for c in cells if c and (c.lower() in self.header_names or header_role(c, self.schema))]
        return len(named) * 2 >= len([c for c in cells if c])

    def _is_date_heading(self, text: str) -> bool:
        dates = find_dates(text, self.schema)
        if len(dates) != 1:
            return False
        rest = text[: dates[0].start] + text[dates[0].end:]
        return not re.search(r"\d", rest) and len(rest.split()) <= 2

    def _free_text_row(self, line: str) -> Optional[dict[str, str]]:
        """"03 Jan Coffee Shop 4.50 1,230.06": leading date (or the heading's), text, amounts."""
        tail = _MONEY_TAIL.search(line)
        if not tail:
            return None
        dates = find_dates(line[: tail.start()], self.schema)
        date_text, body = ("", line[: tail.start()])
        if dates and dates[0].start <= 1:
            date_text, body = line[: dates[0].end], line[dates[0].end: tail.start()]
        if not re.search(r"[A-Za-z]{2}", body):
            return None
        amounts = _MONEY_TOKEN.findall(tail.group())
        description = body.strip(" -–:")
        if _row_kind(description, self.schema) != "transaction":
            return {"date": date_text, "description": description, "balance": amounts[-1]}  # opening/closing
        row = {"date": date_text, "description": description, "amount": amounts[0]}
        if len(amounts) >= 2 and "balance" in self.columns:
            row["balance"] = amounts[-1]
        return row


# ----------------------------------------------------------------------------- rows -> transactions
def to_transaction(row: dict[str, str], strategy: str, schema: Schema) -> Transaction:
    description = re.sub(r"\s+", " ", row.get("description", "")).strip()
    debit, credit = _magnitude(row.get("debit")), _magnitude(row.get("credit"))
    amount = _signed(row.get("amount"), unsigned_is_credit=strategy in SIGNED_STRATEGIES)
    if amount is not None and debit is None and credit is None:
        debit, credit = (-amount, None) if amount < 0 else (None, amount)
    balance = _signed(row.get("balance"), unsigned_is_credit=True)
    kind = _row_kind(description, schema)
    if kind == "opening" and balance is None:
        balance = credit if credit is not None else debit  # the opening amount printed in a money column
    return Transaction(row.get("date", ""), description, debit, credit, balance, kind)


def _row_kind(description: str, schema: Schema) -> str:
    text = re.sub(r"\s+", " ", description.lower()).strip(" *:")
    for kind, phrases in (("opening", schema.bank_opening_rows), ("skip", schema.bank_skip_rows)):
        if any(re.match(rf"{re.escape(p)}(?![a-z0-9])", text) for p in phrases):
            return kind
    return "transaction"


def _magnitude(cell: Optional[str]) -> Optional[float]:
    amount = parse_money(cell) if cell else None
    return abs(amount) if amount is not None else None


def _signed(cell: Optional[str], unsigned_is_credit: bool) -> Optional[float]:
    """A signed amount: "-4.50", "(4.50)", "4.50 DR" are money out; "+4.50", "4.50 CR" money in."""
    amount = parse_money(cell) if cell else None
    if amount is None:
        return None
    marker = _DR_CR.search(cell or "")
    if marker:
        return -abs(amount) if marker.group(1).lower() == "dr" else abs(amount)
    if amount < 0 or cell.strip().startswith("+"):
        return amount
    return amount if unsigned_is_credit else -amount


# ----------------------------------------------------------------------------- dates and order
def _period(text: Optional[str], schema: Schema) -> Optional[tuple[dt.date, dt.date]]:
    if not text:
        return None
    found = normalize_value(text, "date_range", schema).split(" - ")
    dates = [find_dates(part, schema) for part in found]
    if len(dates) != 2 or not all(dates):
        return None
    start, end = dates[0][0].to_date(), dates[1][0].to_date()
    return (start, end) if start and end else None


def resolve_dates(transactions: list[Transaction], period: Optional[tuple[dt.date, dt.date]], schema: Schema) -> None:
    """Each row's date; a yearless one ("03 Jan") takes the year that puts it in the printed period,
    else the year of the other rows."""
    parts = [find_dates(t.date_text, schema) for t in transactions]
    years = [p[0].year for p in parts if p and p[0].year]
    context_year = period[1].year if period else (years[0] if years else None)
    for transaction, found in zip(transactions, parts):
        if not found:
            continue
        date = found[0]
        if date.year or not period:
            transaction.date = date.to_date(context_year)
            continue
        candidates = [date.to_date(year) for year in (period[0].year, period[1].year)]
        inside = [d for d in candidates if d and period[0] - _NEAR_PERIOD <= d <= period[1] + _NEAR_PERIOD]
        transaction.date = inside[0] if inside else candidates[-1]


def chronological(transactions: list[Transaction]) -> tuple[list[Transaction], str]:
    """Oldest first: a newest-first statement is reversed (keeping its balance chain); a mixed one
    is sorted stably by date (rows without a date keep the date of the row above)."""
    dates = [t.date for t in transactions if t.date]
    if all(a <= b for a, b in zip(dates, dates[1:])):
        return transactions, "chronological"
    if all(a >= b for a, b in zip(dates, dates[1:])):
        return transactions[::-1], "reversed"
    keys, last = [], dt.date.min
    for t in transactions:
        last = t.date or last
        keys.append(last)
    order = sorted(range(len(transactions)), key=lambda i: keys[i])
    return [transactions[i] for i in order], "sorted"


# ----------------------------------------------------------------------------- balance correction
def correct_balances(transactions: list[Transaction], tolerance: float) -> list[dict[str, Any]]:
    """Let the running balance decide each row's debit/credit (in place); returns the corrections.

    A row whose amounts do not explain the change from the previous balance gets that change as
    its debit (fall) or credit (rise). Opening/brought-forward rows set the starting balance;
    closing and total rows are skipped. If the row's printed balance looks misread (the next row
    follows from the stated amounts, not from it), the amounts are kept instead.
    """
    corrections: list[dict[str, Any]] = []
    previous: Optional[float] = None
    for index, row in enumerate(transactions):
        if row.kind != "transaction":
            if row.kind == "opening" and row.balance is not None:
                previous = row.balance
            continue
        stated = (row.credit or 0.0) - (row.debit or 0.0)
        if row.balance is None or previous is None:
            previous = row.balance if row.balance is not None else (previous + stated if previous is not None else None)
            continue
        change = round(row.balance - previous, 2)
        if abs(change - stated) <= tolerance:
            previous = row.balance
        elif _balance_misread(transactions, index, previous + stated, tolerance):
            corrections.append({"row": index, "description": row.description, "balance_misread": row.balance})
            previous = round(previous + stated, 2)
        else:
            now = (round(-change, 2), None) if change < 0 else (None, round(change, 2) if change else None)
            corrections.append({"row": index, "description": row.description, "date": row.date_text,
                                "was": {"debit": row.debit, "credit": row.credit},
                                "now": {"debit": now[0], "credit": now[1]}})
            row.debit, row.credit = now
            previous = row.balance
    return corrections


def _balance_misread(transactions: list[Transaction], index: int, expected: float, tolerance: float) -> bool:
    following = next((t for t in transactions[index + 1:] if t.kind == "transaction"), None)
    if following is None or following.balance is None:
        return False
    step = (following.credit or 0.0) - (following.debit or 0.0)
    printed = transactions[index].balance or 0.0
    return abs(following.balance - (expected + step)) <= tolerance < abs(following.balance - (printed + step))
