"""Line items of an invoice or receipt.

Two shapes are read:
  table     a header row naming the columns (Description | Qty | Unit Price | Amount); each line
            under it goes to the column whose header it lines up with (left edges, right edges
            or centres); a row with only a description continues the item above (wrapped text).
            The table ends at the first amount line (subtotal, total, GST).
  till slip no header: an item's description on one or more lines, then "2 @ $3.10" with the
            line total at the right of that row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from docvlm.ocr.lines import TextLine, row_text
from docvlm.ocr.page import Page, money_values, phrase_pattern
from docvlm.ocr.rules import OcrRules
from docvlm.ocr.sale import amount_kind, clean_label

_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@dataclass
class Item:
    description: list[str] = field(default_factory=list)
    quantity: Optional[str] = None
    price: Optional[str] = None
    total: Optional[str] = None

    @property
    def has_numbers(self) -> bool:
        return any(v is not None for v in (self.quantity, self.price, self.total))


@dataclass(frozen=True)
class Column:
    name: str  # description, quantity, price, total
    header: TextLine


def read_items(page: Page, rules: OcrRules) -> tuple[list[Item], str]:
    """The line items and the shape they were read in ("table", "till_slip" or "none")."""
    header = find_item_header(page, rules)
    if header is not None:
        row_index, columns = header
        return _table_items(page, row_index, columns, rules), "table"
    items = _till_slip_items(page, rules)
    return items, "till_slip" if items else "none"


def derive_quantities(items: list[Item]) -> int:
    """A quantity the OCR missed (a lone narrow "1" in a blurred scan) but the row's price and line
    total imply: total / price, kept only when it multiplies back to the total to the cent.
    Returns how many were derived (reported in the details)."""
    derived = 0
    for item in items:
        if item.quantity is not None or not item.price or not item.total or float(item.price) <= 0:
            continue
        quantity = round(float(item.total) / float(item.price), 2)
        if quantity > 0 and abs(quantity * float(item.price) - float(item.total)) <= 0.01:
            item.quantity = f"{quantity:g}"
            derived += 1
    return derived


# ----------------------------------------------------------------------------- table
def find_item_header(page: Page, rules: OcrRules) -> Optional[tuple[int, list[Column]]]:
    """The first row naming a description column and at least one other item column."""
    for index, row in enumerate(page.rows):
        columns = [Column(name, line) for line in row if (name := header_column(line.text, rules))]
        names = {c.name for c in columns}
        if "description" in names and len(names) >= 2:
            return index, columns
    return None


def header_column(text: str, rules: OcrRules) -> Optional[str]:
    """The item column a header cell names (the whole cell is one of the column's words)."""
    cleaned = re.sub(r"[^a-z/ ]+", " ", text.lower()).strip()
    for name, words in rules.item_columns.items():
        if any(phrase_pattern(word).fullmatch(cleaned) for word in words):
            return name
    return None


def _table_items(page: Page, header_row: int, columns: list[Column], rules: OcrRules) -> list[Item]:
    items: list[Item] = []
    line_height = page.line_height()
    last_bottom = max(c.header.y1 for c in columns)
    for row in page.rows[header_row + 1:]:
        text = row_text(row)
        if _is_amount_row(text, rules) or min(line.y0 for line in row) - last_bottom > 3 * line_height:
            break
        cells = _assign(row, columns)
        numbers = {name: cells.get(name) for name in ("quantity", "price", "total")}
        if any(numbers.values()):
            item = Item([cells["description"]] if cells.get("description") else [])
            if not item.description and items and not items[-1].has_numbers:
                item = items.pop()  # a description printed above its numbers
            item.quantity = _quantity(numbers["quantity"])
            item.price = _money(numbers["price"])
            item.total = _money(numbers["total"])
            items.append(item)
        elif cells.get("description"):
            if items and min(line.y0 for line in row) - last_bottom <= line_height:
                items[-1].description.append(cells["description"])  # a wrapped description
            else:
                items.append(Item([cells["description"]]))
        last_bottom = max(line.y1 for line in row)
    return [item for item in items if item.has_numbers]  # a note under the table is no item


def _assign(row: list[TextLine], columns: list[Column]) -> dict[str, str]:
    """Each line of a table row to the column whose header it lines up with."""
    cells: dict[str, list[str]] = {}
    for line in row:
        column = min(columns, key=lambda c: _misalignment(line, c.header))
        cells.setdefault(column.name, []).append(line.text)
    return {name: " ".join(parts) for name, parts in cells.items()}


def _misalignment(line: TextLine, header: TextLine) -> float:
    """How far a cell is from lining up with a header: left edges, right edges or centres."""
    return min(abs(line.x0 - header.x0), abs(line.x1 - header.x1), abs(line.cx - header.cx))


def _is_amount_row(text: str, rules: OcrRules) -> bool:
    found = money_values(text)
    if not found:
        return False
    label = clean_label(text[: found[0][1].start()], rules)
    return amount_kind(label, rules) not in (None, "skip")


# ----------------------------------------------------------------------------- till slip
def _till_slip_items(page: Page, rules: OcrRules) -> list[Item]:
    items: list[Item] = []
    used: set[int] = set()
    for index, row in enumerate(page.rows):
        text = row_text(row)
        match = rules.at_price.search(text)
        if not match:
            continue
        after = [v for v, m in money_values(text) if m.start() >= match.end("price")]
        item = Item(_description_above(page, index, used, rules), _quantity(match["qty"]),
                    _money(match["price"]), _money(str(after[-1])) if after else None)
        items.append(item)
        used.add(index)
    return items


def _description_above(page: Page, index: int, used: set[int], rules: OcrRules) -> list[str]:
    """The text rows set tightly above an item's "qty @ price" row (its wrapped description)."""
    parts: list[str] = []
    below = page.rows[index]
    for above_index in range(index - 1, max(-1, index - 4), -1):
        row = page.rows[above_index]
        text = row_text(row)
        height = max(line.height for line in row)
        gap = min(line.y0 for line in below) - max(line.y1 for line in row)
        if above_index in used or money_values(text) or rules.at_price.search(text) or gap > 0.8 * height:
            break
        parts.insert(0, text)
        used.add(above_index)
        below = row
    return parts


# ----------------------------------------------------------------------------- cell values
def _quantity(text: Optional[str]) -> Optional[str]:
    match = _NUMBER.search(text or "")
    return match.group() if match else None


def _money(text: Optional[str]) -> Optional[str]:
    found = money_values(text or "")
    if found:
        return str(abs(found[-1][0]))
    match = _NUMBER.search((text or "").replace(",", ""))
    return match.group() if match else None
