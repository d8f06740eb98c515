"""How values are PRINTED on synthetic pages (the ground truth is rendered separately, by truth.py).

Pages deliberately use the varied styles real documents use: thousands separators, several date
styles (the ground truth is always DD/MM/YYYY), ABNs in groups of digits.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

# Date styles seen on Australian documents; every one of them is day first.
DATE_STYLES: dict[str, str] = {
    "dmy_slash": "%d/%m/%Y",  # 05/03/2024
    "d_mon_y": "%d %b %Y",  # 05 Mar 2024
    "d_month_y": "{day} %B %Y",  # 5 March 2024
    "dmy_dash": "%d-%m-%Y",  # 05-03-2024
    "d_mon_y_dash": "%d-%b-%Y",  # 05-Mar-2024
    "dmy_dot": "%d.%m.%Y",  # 05.03.2024
}
# Row dates on statements often omit the year (it is in the statement period).
YEARLESS_STYLES: dict[str, str] = {"d_mon": "%d %b", "dm_slash": "%d/%m"}


def show_date(day: date, style: str) -> str:
    """`day` printed in one of DATE_STYLES or YEARLESS_STYLES."""
    pattern = DATE_STYLES.get(style) or YEARLESS_STYLES.get(style)
    if pattern is None:
        raise ValueError(f"unknown date style {style!r}; known: {sorted(DATE_STYLES) + sorted(YEARLESS_STYLES)}")
    return day.strftime(pattern.replace("{day}", str(day.day)))


def long_weekday_date(day: date) -> str:
    """'Tuesday, 5 March 2024' (date headings of grouped statements)."""
    return f"{day.strftime('%A')}, {day.day} {day.strftime('%B %Y')}"


def show_money(amount: Decimal, symbol: bool = True, sign: str = "") -> str:
    """1020.2 -> '$1,020.20'. `sign` ('-' or '+') is printed before the symbol."""
    text = f"{abs(amount):,.2f}"
    return f"{sign}{'$' if symbol else ''}{text}"


def show_abn(abn: str) -> str:
    """'12345678901' -> '12 345 678 901' (the grouping printed on Australian documents)."""
    return f"{abn[:2]} {abn[2:5]} {abn[5:8]} {abn[8:]}"


def show_number(quantity: Decimal) -> str:
    """Quantities as printed: 2, 1.5 (no trailing zeros)."""
    return format(quantity.normalize(), "f")
