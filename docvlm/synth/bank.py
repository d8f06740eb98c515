"""Synthetic bank statements: opening and closing balances, debits and credits, a statement period.

Layouts (header words vary per document but always come from the schema's bank_header_roles table):
  debit_credit   Date | Description | Debit | Credit | Balance. OPENING BALANCE and CLOSING BALANCE are
                 rows of the table (not transactions); row dates may omit the year ("05 Mar");
                 balances may carry a "CR" suffix; multi-page statements carry the balance forward.
  signed_amount  Date | Description | Amount | Balance, debits printed with a minus sign, credits
                 bare or with "+"; opening and closing balances printed above and below the table.
  date_grouped   No date column: transactions grouped under date headings ("Tuesday, 5 March 2024"),
                 columns Description | Money out | Money in [| Balance] (the balance column is
                 optional, so this layout also covers debit/credit-only tables), and a summary box
                 with opening balance, money in, money out and closing balance.
Descriptions are long enough to wrap over two or three lines in the description column.

Ground truth lists ALL transactions (descriptions and dates, in chronological order as printed);
TRANSACTION_AMOUNTS_PAID holds the debit amount, NOT_FOUND on credit rows; STATEMENT_DATE_RANGE is
the printed statement period.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any, Callable

from PIL import Image

from docvlm.synth import fake
from docvlm.synth.document import SynthDoc
from docvlm.synth.draw import MUTED, SHADE, Column, Heading, Page, Row, table
from docvlm.synth.fmt import long_weekday_date, show_date, show_money

LAYOUTS = ("debit_credit", "signed_amount", "date_grouped")
BANKS = ("Harbourside Bank", "Southern Cross Credit Union", "Wattle Mutual Bank", "Coastline Savings Bank",
         "Great Dividing Bank")
ACCOUNTS = ("Everyday Transaction Account", "Smart Access Account", "Business Cheque Account")
HEADERS = {  # per layout, column header wordings (each word is a keyword of bank_header_roles)
    "debit_credit": (("Date", "Transaction Details", "Withdrawals", "Deposits", "Balance"),
                     ("Date", "Description", "Debit", "Credit", "Balance"),
                     ("Date", "Particulars", "Debits", "Credits", "Balance")),
    "signed_amount": (("Date", "Description", "Amount", "Balance"),
                      ("Posted", "Transaction Details", "Amount", "Balance"),
                      ("Date", "Details", "Amount ($)", "Balance ($)")),
    "date_grouped": (("Transaction", "Money out", "Money in", "Balance"),
                     ("Description", "Withdrawals", "Deposits", "Balance"),
                     ("Details", "Debits", "Credits", "Balance")),
}
ROW_DATE_STYLES = {  # fmt date styles; "weekday" = "Tuesday, 5 March 2024" headings
    "debit_credit": ("dmy_slash", "d_mon", "d_mon_y"),
    "signed_amount": ("d_mon_y", "dmy_dash", "dmy_slash"),
    "date_grouped": ("weekday", "d_mon_y"),
}
MERCHANTS = ("WOOLWORTHS 1234", "COLES 0456", "ALDI STORES 72", "BUNNINGS 6620", "KMART 1187", "JB HI-FI 044",
             "CHEMIST WAREHOUSE 318", "7-ELEVEN 2231", "BP CONNECT", "AMPOL FOODARY", "DAN MURPHYS 5521")
BILLERS = ("AGL ENERGY", "ORIGIN ENERGY", "TELSTRA", "OPTUS BILLING", "NRMA INSURANCE", "MEDIBANK PRIVATE",
           "ANYTIME FITNESS", "SYDNEY WATER", "CITY COUNCIL RATES")
FEE = ("MONTHLY ACCOUNT KEEPING FEE", (4.0, 10.0))
INTEREST = ("INTEREST CREDIT", (0.5, 12.0))
HEADING_FILL = (222, 232, 244)  # date headings of grouped statements, distinct from the column header
EMPLOYERS = ("ACME LOGISTICS PTY LTD", "BLUEGUM HEALTH SERVICES", "STATE EDUCATION DEPT", "IRONBARK CIVIL PTY LTD")


@dataclass(frozen=True)
class Transaction:
    day: date
    description: str
    amount: Decimal  # negative: debit (money out); positive: credit
    balance: Decimal  # after this transaction


@dataclass(frozen=True)
class Statement:
    bank: str
    holder: fake.Party
    bsb: str
    account: str
    start: date
    end: date
    opening: Decimal
    transactions: list[Transaction]

    @property
    def closing(self) -> Decimal:
        return self.transactions[-1].balance if self.transactions else self.opening

    def truth(self) -> dict[str, Any]:
        return {
            "DOCUMENT_TYPE": "BANK_STATEMENT",
            "STATEMENT_DATE_RANGE": (self.start, self.end),
            "LINE_ITEM_DESCRIPTIONS": [t.description for t in self.transactions],
            "TRANSACTION_DATES": [t.day for t in self.transactions],
            "TRANSACTION_AMOUNTS_PAID": [-t.amount if t.amount < 0 else None for t in self.transactions],
        }


@dataclass(frozen=True)
class Style:
    """Per-document choices of wording and formatting."""

    headers: tuple[str, ...]
    row_date: str  # ROW_DATE_STYLES: the date column or the date headings
    period_date: str
    title: str
    cr_suffix: bool  # "1,234.56 CR" balances (debit_credit)
    plus_sign: bool  # "+1,200.00" credits (signed_amount)
    balance_column: bool  # date_grouped only; the others always have one
    title_case: bool  # "Eftpos Purchase ..." instead of upper case descriptions


def make_statement(rng: random.Random, layout: str, pages: int = 1) -> SynthDoc:
    """A statement of `pages` pages (about 8-17 transactions a page)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown bank statement layout {layout!r}; known: {LAYOUTS}")
    style = _style(rng, layout)
    per_page = (8, 13) if layout == "date_grouped" else (10, 17)
    count = sum(rng.randint(*per_page) for _ in range(pages))
    statement = _statement(rng, count, style.title_case)
    draw = {"debit_credit": _debit_credit_page, "signed_amount": _signed_page, "date_grouped": _grouped_page}[layout]
    chunks = _split(statement.transactions, pages)
    images = [draw(statement, style, chunk, number, pages) for number, chunk in enumerate(chunks, 1)]
    return SynthDoc("BANK_STATEMENT", layout, images, statement.truth())


def _style(rng: random.Random, layout: str) -> Style:
    return Style(
        headers=rng.choice(HEADERS[layout]),
        row_date=rng.choice(ROW_DATE_STYLES[layout]),
        period_date=rng.choice(("dmy_slash", "d_mon_y", "d_month_y")),
        title=rng.choice(("Statement of Account", "Account Statement", "Transaction Statement")),
        cr_suffix=rng.random() < 0.4,
        plus_sign=rng.random() < 0.5,
        balance_column=layout != "date_grouped" or rng.random() < 0.5,
        title_case=layout == "date_grouped" and rng.random() < 0.4,
    )


# ---- content ------------------------------------------------------------------------------------

def _debit_description(rng: random.Random) -> tuple[str, tuple[float, float]]:
    suburb = rng.choice(fake.SUBURBS)[0].upper()
    choices: list[Callable[[], tuple[str, tuple[float, float]]]] = [
        lambda: (f"EFTPOS PURCHASE {rng.choice(MERCHANTS)} {suburb} AU CARD XX{rng.randint(1000, 9999)}", (6, 240)),
        lambda: (f"DIRECT DEBIT {rng.choice(BILLERS)} REF {rng.randint(10**7, 10**8 - 1)}", (35, 420)),
        lambda: (f"BPAY {rng.choice(BILLERS)} CRN {rng.randint(10**9, 10**10 - 1)}", (60, 650)),
        lambda: (f"ATM WITHDRAWAL {suburb} {rng.randint(100, 999)}", (20, 300)),
        lambda: (f"OSKO PAYMENT TO {fake.person_name(rng).upper()} {rng.choice(('RENT', 'DINNER', 'SHARE'))}",
                 (15, 900)),
        lambda: (f"VISA PURCHASE {rng.choice(('NETFLIX.COM', 'UBER TRIP', 'SPOTIFY P1', 'AMAZON AU'))} "
                 f"SYDNEY AU", (9, 120)),
    ]
    return rng.choice(choices)()


def _credit_description(rng: random.Random) -> tuple[str, tuple[float, float]]:
    choices: list[Callable[[], tuple[str, tuple[float, float]]]] = [
        lambda: (f"SALARY {rng.choice(EMPLOYERS)} PAYROLL {rng.randint(1000, 9999)}", (1800, 4200)),
        lambda: (f"TRANSFER FROM {fake.person_name(rng).upper()} {rng.choice(('BILLS', 'REPAY', 'GIFT'))}",
                 (20, 600)),
        lambda: (f"REFUND {rng.choice(MERCHANTS)} {rng.choice(fake.SUBURBS)[0].upper()}", (8, 150)),
    ]
    return rng.choice(choices)()


def _statement(rng: random.Random, count: int, title_case: bool) -> Statement:
    start, end = _period(rng)
    days = sorted(fake.day_between(rng, start, end) for _ in range(count))
    entries = [(day, None) for day in days]
    # Month-end entries: at most one fee and one interest credit, on the last day of the period.
    entries += [(end, item) for item in (FEE, INTEREST) if rng.random() < 0.4]
    balance = fake.money(rng, 900, 7500)
    opening = balance
    transactions = []
    for index, (day, fixed) in enumerate(entries):
        text, amount = _entry(rng, fixed, force_credit=index == count // 2, balance=balance)
        balance += amount
        transactions.append(Transaction(day, text.title() if title_case else text, amount, balance))
    holder = fake.Party(fake.person_name(rng).upper(), fake.address(rng))
    bsb = f"{rng.randint(10, 99):03d}-{rng.randint(0, 999):03d}"
    account = f"{rng.randint(1000, 9999)} {rng.randint(1000, 9999)}"
    return Statement(rng.choice(BANKS), holder, bsb, account, start, end, opening, transactions)


def _entry(rng: random.Random, fixed: tuple[str, tuple[float, float]] | None, force_credit: bool,
           balance: Decimal) -> tuple[str, Decimal]:
    """Description and signed amount of one transaction (at least one credit per statement)."""
    if fixed is not None:
        text, (low, high) = fixed
        amount = fake.money(rng, low, high)
        return text, amount if fixed is INTEREST else -amount
    if force_credit or rng.random() < 0.22:
        text, (low, high) = _credit_description(rng)
        return text, fake.money(rng, low, high)
    text, (low, high) = _debit_description(rng)
    amount = fake.money(rng, low, high)
    if balance - amount < 50:  # keep the account in credit: the salary arrives instead
        return f"SALARY {rng.choice(EMPLOYERS)} PAYROLL", fake.money(rng, 1800, 4200)
    return text, -amount


def _period(rng: random.Random) -> tuple[date, date]:
    """A calendar month, or a 28-31 day period starting on any day."""
    start = fake.day_between(rng, date(2023, 1, 1), date(2025, 5, 31))
    if rng.random() < 0.6:
        start = start.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        return start, end
    return start, start + timedelta(days=rng.randint(27, 30))


def _split(items: list[Transaction], parts: int) -> list[list[Transaction]]:
    size, extra = divmod(len(items), parts)
    chunks, begin = [], 0
    for part in range(parts):
        end = begin + size + (1 if part < extra else 0)
        chunks.append(items[begin:end])
        begin = end
    return chunks


# ---- rendering ----------------------------------------------------------------------------------

def _header(page: Page, s: Statement, style: Style, number: int, pages: int) -> int:
    """Bank, holder and account details on page 1; a short running header on later pages."""
    period = f"{show_date(s.start, style.period_date)} to {show_date(s.end, style.period_date)}"
    if number > 1:
        y = page.text(page.left, 70, f"{s.bank} - {style.title} (continued)", 26, bold=True)
        y = page.text(page.left, y + 4, f"Statement period {period}", 22)
        page.text(page.right, 70, f"Page {number} of {pages}", 22, align="right", fill=MUTED)
        return y + 30
    y = page.text(page.left, 80, s.bank, 36, bold=True)
    page.text(page.right, 86, style.title, 30, align="right", bold=True)
    y = page.lines(page.left, y + 30, [s.holder.name] + s.holder.address.lines, 22)
    details = [f"BSB {s.bsb}", f"Account number {s.account}", _account_type(s), f"Page {number} of {pages}"]
    ry = page.lines(page.right, 170, details, 22, align="right")
    y = max(y, ry) + 30
    y = page.text(page.left, y, f"Statement period: {period}", 24, bold=True)
    return y + 30


def _account_type(s: Statement) -> str:
    """The account product, chosen from the account number so it needs no extra random draw."""
    return ACCOUNTS[int(s.account[-1]) % len(ACCOUNTS)]


def _money_cell(amount: Decimal | None) -> str:
    return "" if amount is None else show_money(amount, symbol=False)


def _balance_cell(amount: Decimal, style: Style) -> str:
    return f"{show_money(amount, symbol=False)}{' CR' if style.cr_suffix else ''}"


def _debit_credit_page(s: Statement, style: Style, chunk: list[Transaction], number: int, pages: int) -> Image.Image:
    page = Page()
    y = _header(page, s, style, number, pages)
    widths = (150, 440, 160, 160, 170)
    columns = [Column(h, w, "left" if i < 2 else "right") for i, (h, w) in enumerate(zip(style.headers, widths))]
    before = chunk[0].balance - chunk[0].amount if chunk else s.opening
    first_day = s.start if number == 1 else chunk[0].day
    opening_text = "OPENING BALANCE" if number == 1 else "BALANCE BROUGHT FORWARD"
    rows = [Row([show_date(first_day, style.row_date), opening_text, "", "", _balance_cell(before, style)], bold=True)]
    for t in chunk:
        debit = -t.amount if t.amount < 0 else None
        credit = t.amount if t.amount > 0 else None
        rows.append(Row([show_date(t.day, style.row_date), t.description, _money_cell(debit), _money_cell(credit),
                         _balance_cell(t.balance, style)]))
    after = chunk[-1].balance if chunk else before
    if number == pages:
        rows.append(Row([show_date(s.end, style.row_date), "CLOSING BALANCE", "", "", _balance_cell(after, style)],
                        bold=True))
    else:
        rows.append(Row(["", "BALANCE CARRIED FORWARD", "", "", _balance_cell(after, style)], bold=True))
    table(page, page.left, y, columns, rows)
    return page.finish()


def _signed_page(s: Statement, style: Style, chunk: list[Transaction], number: int, pages: int) -> Image.Image:
    page = Page()
    y = _header(page, s, style, number, pages)
    if number == 1:
        y = page.text(page.left, y, f"Opening balance  {show_money(s.opening)}", 22) + 16
    widths = (180, 520, 190, 190)
    columns = [Column(h, w, "left" if i < 2 else "right") for i, (h, w) in enumerate(zip(style.headers, widths))]
    rows = []
    for t in chunk:
        sign = "-" if t.amount < 0 else ("+" if style.plus_sign else "")
        rows.append(Row([show_date(t.day, style.row_date), t.description, show_money(t.amount, False, sign),
                         show_money(t.balance, symbol=False)]))
    y = table(page, page.left, y, columns, rows)
    if number == pages:
        page.text(page.left, y + 24, f"Closing balance  {show_money(s.closing)}", 22, bold=True)
    return page.finish()


def _grouped_page(s: Statement, style: Style, chunk: list[Transaction], number: int, pages: int) -> Image.Image:
    page = Page()
    y = _header(page, s, style, number, pages)
    if number == 1:
        y = _summary_box(page, y, s) + 30
    headers = style.headers if style.balance_column else style.headers[:3]
    widths = (560, 170, 170, 180) if style.balance_column else (700, 190, 190)
    columns = [Column(h, w, "left" if i == 0 else "right") for i, (h, w) in enumerate(zip(headers, widths))]
    rows: list[Row | Heading] = []
    shown_day = None
    for t in chunk:
        if t.day != shown_day:
            heading = long_weekday_date(t.day) if style.row_date == "weekday" else show_date(t.day, style.row_date)
            rows.append(Heading(heading, fill=HEADING_FILL))
            shown_day = t.day
        out = show_money(-t.amount) if t.amount < 0 else ""
        into = show_money(t.amount) if t.amount > 0 else ""
        cells = [t.description, out, into] + ([show_money(t.balance)] if style.balance_column else [])
        rows.append(Row(cells))
    table(page, page.left, y, columns, rows)
    return page.finish()


def _summary_box(page: Page, y: int, s: Statement) -> int:
    money_in = sum((t.amount for t in s.transactions if t.amount > 0), Decimal("0.00"))
    money_out = -sum((t.amount for t in s.transactions if t.amount < 0), Decimal("0.00"))
    lines = (("Opening balance", s.opening), ("Money in", money_in), ("Money out", money_out),
             ("Closing balance", s.closing))
    page.box(page.left, y, page.right, y + 130, fill=SHADE)
    half = (page.right - page.left) // 2
    for index, (label, amount) in enumerate(lines):
        x = page.left + 20 + (index // 2) * half
        row_y = y + 20 + (index % 2) * 50
        page.text(x, row_y, label, 22)
        page.text(x + half - 60, row_y, show_money(amount), 22, align="right", bold=True)
    return y + 130
