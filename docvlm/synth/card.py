"""Synthetic credit-card statements, born-digital PDFs (text objects, docvlm/synth/pdf.py).

A card statement is a statement without a balance column: purchases, fees and interest are money out
(debits), payments and refunds money in; it prints a statement date and a payment due date, a credit
limit and a minimum payment, and a summary whose "purchases and charges" figure the debits add up to.
Layouts (the transaction table's columns):
  signed      Date | Transaction details | Amount       payments printed "-500.00"
  cr_suffix   Trans. date | Posted | Description | Amount ($)   payments printed "500.00 CR"
  two_column  Date | Description | Debits | Credits      (no balance column)
Page 1: header, account summary (the signed layout prints it under the table on the last page, its
figures in the amount column), the table's first rows; later pages repeat a slim header (card number,
statement date, page n of m) above the table's continuation; the table ends with a total row.

`write_card_statements(folder, count, seed)` writes the PDFs, a ground_truth.csv (page 1: type and
period) and a statements.csv like the real development set's (payments_out = the debits' total).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Sequence

from docvlm.synth import fake
from docvlm.synth.fmt import show_date
from docvlm.synth.pdf import PdfText, write_text_pdf

LAYOUTS = ("signed", "cr_suffix", "two_column")
ISSUERS = ("Harbourside Bank Visa", "Southern Cross Mastercard", "Wattle Platinum Card", "Coastline Rewards Visa")
MERCHANTS = ("WOOLWORTHS METRO SYDNEY", "COLES EXPRESS 4412", "UBER *TRIP HELP.UBER.COM", "NETFLIX.COM MELBOURNE",
             "QANTAS AIRWAYS MASCOT", "JB HI-FI ONLINE", "AMAZON AU MARKETPLACE", "BUNNINGS WAREHOUSE 6620",
             "SPOTIFY P1B2C3 STOCKHOLM", "CALTEX STARMART 218", "DAN MURPHYS 5521", "KMART AUSTRALIA 1187",
             "OFFICEWORKS 0447", "APPLE.COM/BILL SYDNEY", "CHEMIST WAREHOUSE 318", "THE GOOD GUYS ONLINE")
CHARGES = ("INTEREST CHARGED ON PURCHASES", "ANNUAL CARD FEE", "LATE PAYMENT FEE", "FOREIGN TRANSACTION FEE")
CREDITS = ("PAYMENT RECEIVED - THANK YOU", "BPAY PAYMENT RECEIVED", "REFUND JB HI-FI ONLINE", "DIRECT DEBIT PAYMENT")
COLUMNS = {  # per layout: (x, header, alignment) of each column, pixels at 150 dpi
    "signed": ((80, "Date", "left"), (260, "Transaction details", "left"), (1160, "Amount", "right")),
    "cr_suffix": ((80, "Trans. date", "left"), (240, "Posted", "left"), (400, "Description", "left"),
                  (1160, "Amount ($)", "right")),
    "two_column": ((80, "Date", "left"), (260, "Description", "left"), (980, "Debits", "right"),
                   (1160, "Credits", "right")),
}
SUMMARY_BELOW = ("signed",)  # layouts that print the account summary under the table, not on top
ROWS_PER_PAGE = 26
FIRST_PAGE_ROWS = 12


@dataclass(frozen=True)
class CardTransaction:
    day: date
    description: str
    amount: Decimal  # positive: a purchase or charge (money out); negative: a payment or refund


@dataclass(frozen=True)
class CardStatement:
    layout: str
    issuer: str
    holder: str
    card: str
    start: date
    end: date
    due: date
    limit: Decimal
    previous: Decimal
    transactions: list[CardTransaction]

    @property
    def debits(self) -> Decimal:
        return sum((t.amount for t in self.transactions if t.amount > 0), Decimal("0"))

    @property
    def credits(self) -> Decimal:
        return sum((-t.amount for t in self.transactions if t.amount < 0), Decimal("0"))

    @property
    def closing(self) -> Decimal:
        return self.previous + self.debits - self.credits


def make_card_statement(rng: random.Random, layout: str, count: int | None = None) -> CardStatement:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown card statement layout {layout!r}; known: {LAYOUTS}")
    end = fake.document_date(rng)
    start = end - timedelta(days=rng.choice((27, 29, 30)))
    previous = fake.money(rng, 150, 2500)
    count = count or rng.randint(6, 45)
    items = []
    for _ in range(count):
        day = fake.day_between(rng, start, end)
        roll = rng.random()
        if roll < 0.12:
            items.append(CardTransaction(day, rng.choice(CREDITS), -fake.money(rng, 50, 900)))
        elif roll < 0.2:
            items.append(CardTransaction(day, rng.choice(CHARGES), fake.money(rng, 2, 60)))
        else:
            items.append(CardTransaction(day, rng.choice(MERCHANTS), fake.money(rng, 3, 450)))
    items.sort(key=lambda t: t.day)
    return CardStatement(layout, rng.choice(ISSUERS), fake.person_name(rng), f"{rng.randint(1000, 9999)}", start, end,
                         end + timedelta(days=rng.choice((21, 25, 28))), Decimal(rng.choice((3000, 6000, 10000, 15000))),
                         previous, items)


def card_pages(s: CardStatement) -> list[list[PdfText]]:
    """The statement's pages as text placed on A4 (pixels at 150 dpi)."""
    rows = s.transactions
    chunks = [rows[:FIRST_PAGE_ROWS]] + [rows[i:i + ROWS_PER_PAGE] for i in range(FIRST_PAGE_ROWS, len(rows), ROWS_PER_PAGE)]
    pages = []
    for number, chunk in enumerate(chunks, start=1):
        texts, y = (_first_page_top(s) if number == 1 else _slim_top(s, number, len(chunks)))
        if number > 1:
            texts.append(PdfText(1160, 60, f"Page {number} of {len(chunks)}", 18, align="right"))
        table, y = _table(s, chunk, y, last=number == len(chunks))
        texts += table
        if number == len(chunks) and s.layout in SUMMARY_BELOW:
            texts += _summary(s, y + 50, 1160, minimum=True)[0]
        pages.append(texts)
    return pages


def _money(amount: Decimal) -> str:
    return f"{abs(amount):,.2f}"


def _first_page_top(s: CardStatement) -> tuple[list[PdfText], float]:
    period = f"{s.start.day} {s.start:%B %Y} to {s.end.day} {s.end:%B %Y}"
    left = [(s.issuer, 36, True), ("Credit card statement", 26, False), (s.holder, 22, False),
            (f"Card number XXXX XXXX XXXX {s.card}", 22, False), (f"Statement period {period}", 22, False)]
    texts, y = [], 80.0
    for text, size, bold in left:
        texts.append(PdfText(80, y, text, size, bold=bold))
        y += size * 1.7
    right = [("Statement date", show_date(s.end, "d_month_y")), ("Payment due date", show_date(s.due, "d_month_y")),
             ("Credit limit", f"${_money(s.limit)}"), ("Minimum payment due", f"${_money(max(s.closing * Decimal('0.02'), Decimal('25')))}")]
    for k, (label, value) in enumerate(right):
        texts += [PdfText(700, 150 + 36 * k, label, 20), PdfText(1160, 150 + 36 * k, value, 20, align="right")]
    y = max(y, 150 + 36 * len(right)) + 30
    if s.layout in SUMMARY_BELOW:
        return texts, y + 20
    summary, y = _summary(s, y, 560)
    return texts + summary, y + 40


def _summary(s: CardStatement, y: float, value_x: float, minimum: bool = False) -> tuple[list[PdfText], float]:
    """The account summary; printed below the table (`value_x` in the amount column), its figures
    line up with the transactions' amounts without being transactions."""
    texts = [PdfText(80, y, "Account summary", 24, bold=True)]
    y += 44
    summary = [("Previous balance", f"${_money(s.previous)}"), ("Payments and credits", f"-${_money(s.credits)}"),
               ("Purchases and charges", f"+${_money(s.debits)}"), ("Closing balance", f"${_money(s.closing)}")]
    if minimum:
        summary.append(("Minimum payment due", f"${_money(max(s.closing * Decimal('0.02'), Decimal('25')))}"))
    for label, value in summary:
        texts += [PdfText(80, y, label, 20), PdfText(value_x, y, value, 20, align="right")]
        y += 34
    return texts, y


def _slim_top(s: CardStatement, number: int, pages: int) -> tuple[list[PdfText], float]:
    texts = [PdfText(80, 60, f"{s.issuer} - Credit card statement", 22, bold=True),
             PdfText(80, 100, f"Card number XXXX XXXX XXXX {s.card}", 20),
             PdfText(80, 134, f"Statement date {show_date(s.end, 'd_month_y')}", 20)]
    return texts, 200.0


def _table(s: CardStatement, chunk: Sequence[CardTransaction], y: float, last: bool) -> tuple[list[PdfText], float]:
    """The transaction table (its rows of this page); on the last page a closing total row, in the
    debit column: a row with an amount that is not a transaction."""
    columns = COLUMNS[s.layout]
    texts = [PdfText(x, y, header, 20, bold=True, align=align) for x, header, align in columns]
    y += 44
    for t in chunk:
        day = show_date(t.day, "d_mon")
        money = _money(t.amount)
        if s.layout == "signed":
            cells = [(80, day, "left"), (260, t.description, "left"), (1160, money if t.amount > 0 else f"-{money}", "right")]
        elif s.layout == "cr_suffix":
            posted = show_date(t.day + timedelta(days=1), "d_mon")
            cells = [(80, day, "left"), (240, posted, "left"), (400, t.description, "left"),
                     (1160, money if t.amount > 0 else f"{money} CR", "right")]
        else:
            cells = [(80, day, "left"), (260, t.description, "left"), (980 if t.amount > 0 else 1160, money, "right")]
        texts += [PdfText(x, y, text, 20, align=align) for x, text, align in cells]
        y += 34
    if last:
        x = 980 if s.layout == "two_column" else 1160
        texts += [PdfText(columns[-2 if s.layout == "cr_suffix" else 1][0], y + 10, "Total purchases and charges", 20, bold=True),
                  PdfText(x, y + 10, _money(s.debits), 20, bold=True, align="right")]
        y += 44
    return texts, y


def write_card_statements(folder: str | Path, count: int, seed: int = 0) -> Path:
    """`count` statements (layouts in turn) as PDFs, ground_truth.csv and statements.csv."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    truth, sums = [], []
    for index in range(count):
        statement = make_card_statement(rng, LAYOUTS[index % len(LAYOUTS)])
        name = f"card-{index:03d}-{statement.layout}.pdf"
        pages = card_pages(statement)
        write_text_pdf(folder / name, pages)
        period = f"{statement.start:%d/%m/%Y} - {statement.end:%d/%m/%Y}"
        truth.append({"image_file": f"{name}#page=1", "DOCUMENT_TYPE": "BANK_STATEMENT", "STATEMENT_DATE_RANGE": period})
        sums.append({"file": name, "layout": statement.layout, "period_start": f"{statement.start:%d/%m/%Y}",
                     "period_end": f"{statement.end:%d/%m/%Y}", "opening_balance": str(statement.previous),
                     "payments_in": str(statement.credits), "payments_out": str(statement.debits),
                     "closing_balance": str(statement.closing), "n_debits": sum(t.amount > 0 for t in statement.transactions),
                     "pages": len(pages)})
    _write_csv(folder / "ground_truth.csv", truth)
    _write_csv(folder / "statements.csv", sums)
    return folder


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
