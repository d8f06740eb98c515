"""Drawing helpers shared by the document generators: fonts, a page canvas, wrapped text, tables.

Fonts: only Pillow's bundled scalable font (`ImageFont.load_default(size=...)`, Pillow >= 10.1), so
the generator needs no system fonts and renders identically wherever the same Pillow runs. Bold is
drawn by printing the glyphs twice, 1 px apart (a stroke would close the counters of digits).
Sizes of 20-40 px on 640-1240 px wide pages keep text legible for OCR and vision-language models.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

Color = tuple[int, int, int]
INK: Color = (20, 20, 20)
MUTED: Color = (85, 85, 85)
RULE: Color = (150, 150, 150)
SHADE: Color = (232, 232, 232)
WHITE: Color = (255, 255, 255)

A4_WIDTH, A4_HEIGHT = 1240, 1754  # A4 at 150 dpi
DPI = 150


@lru_cache(maxsize=None)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled scalable font at `size` px."""
    loaded = ImageFont.load_default(size=size)
    if not isinstance(loaded, ImageFont.FreeTypeFont):
        raise RuntimeError(
            "docvlm.synth needs Pillow >= 10.1 built with FreeType: ImageFont.load_default(size=...) "
            "returned a fixed-size bitmap font"
        )
    return loaded


def line_height(size: int) -> int:
    return round(size * 1.4)


def text_width(text: str, size: int) -> float:
    return font(size).getlength(text)


def wrap(text: str, size: int, width: float) -> list[str]:
    """Greedy word wrap to `width` px; a word longer than a line is split by characters."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}" if current else word
        if text_width(candidate, size) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while text_width(current, size) > width:  # a single over-long word
            cut = max(1, _fit_chars(current, size, width))
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    return lines or [""]


def _fit_chars(text: str, size: int, width: float) -> int:
    count = 0
    while count < len(text) and text_width(text[: count + 1], size) <= width:
        count += 1
    return count


class Page:
    """A white canvas drawn top-down; `finish()` crops it to the content (at least `min_height`)."""

    def __init__(self, width: int = A4_WIDTH, min_height: int = A4_HEIGHT, margin: int = 80, max_height: int = 5000):
        self.image = Image.new("RGB", (width, max_height), WHITE)
        self.draw = ImageDraw.Draw(self.image)
        self.width = width
        self.min_height = min_height
        self.margin = margin
        self.bottom = 0  # lowest y drawn so far

    @property
    def left(self) -> int:
        return self.margin

    @property
    def right(self) -> int:
        return self.width - self.margin

    def text(self, x: float, y: float, text: str, size: int = 22, *, fill: Color = INK,
             align: str = "left", bold: bool = False) -> int:
        """One line with its top at `y`; `align` places it left of, right of or centred on `x`.

        Returns the y of the next line."""
        width = text_width(text, size)
        x0 = {"left": x, "right": x - width, "center": x - width / 2}[align]
        for dx in (0, 1) if bold else (0,):  # bold: the glyphs again 1 px to the right
            self.draw.text((round(x0) + dx, round(y)), text, font=font(size), fill=fill)
        return self._reach(round(y) + line_height(size))

    def lines(self, x: float, y: float, lines: Sequence[str], size: int = 22, **style) -> int:
        for line in lines:
            y = self.text(x, y, line, size, **style)
        return round(y)

    def paragraph(self, x: float, y: float, text: str, width: float, size: int = 22, **style) -> int:
        """`text` wrapped to `width` px."""
        return self.lines(x, y, wrap(text, size, width), size, **style)

    def rule(self, y: float, x0: float | None = None, x1: float | None = None, width: int = 1,
             fill: Color = RULE) -> int:
        x0 = self.left if x0 is None else x0
        x1 = self.right if x1 is None else x1
        self.draw.line([(x0, y), (x1, y)], fill=fill, width=width)
        return self._reach(round(y) + width)

    def dashed(self, y: float, dash: int = 10, gap: int = 6, fill: Color = RULE) -> int:
        """A dashed rule across the page (thermal receipts)."""
        x = self.left
        while x < self.right:
            self.draw.line([(x, y), (min(x + dash, self.right), y)], fill=fill, width=2)
            x += dash + gap
        return self._reach(round(y) + 2)

    def box(self, x0: float, y0: float, x1: float, y1: float, fill: Color | None = None,
            outline: Color | None = None, width: int = 1) -> int:
        self.draw.rectangle([x0, y0, x1, y1], fill=fill, outline=outline, width=width)
        return self._reach(round(y1))

    def finish(self) -> Image.Image:
        height = max(self.min_height, self.bottom + self.margin)
        if height > self.image.height:  # content was cut off: a generator bug, never a silent crop
            raise RuntimeError(f"page content reaches y={self.bottom}, beyond the canvas ({self.image.height} px)")
        return self.image.crop((0, 0, self.width, height))

    def _reach(self, y: int) -> int:
        self.bottom = max(self.bottom, y)
        return y


@dataclass(frozen=True)
class Column:
    header: str
    width: int
    align: str = "left"  # "left" or "right" (amounts)


@dataclass(frozen=True)
class Row:
    cells: Sequence[str]
    bold: bool = False


@dataclass(frozen=True)
class Heading:
    """A full-width row (e.g. the date heading of a grouped bank statement)."""

    text: str
    fill: Color = SHADE


@dataclass(frozen=True)
class TableStyle:
    size: int = 22
    header_fill: Color | None = SHADE
    header_ink: Color = INK
    rules: bool = True  # a thin rule under every row
    padding: int = 10


def table(page: Page, x: float, y: float, columns: Sequence[Column], rows: Sequence[Row | Heading],
          style: TableStyle = TableStyle()) -> int:
    """Draw a table with wrapped cells; returns the y below it."""
    y = _table_row(page, x, y, columns, Row([c.header for c in columns], bold=True), style, header=True)
    for row in rows:
        if isinstance(row, Heading):
            y = _heading_row(page, x, y, sum(c.width for c in columns), row, style)
        else:
            y = _table_row(page, x, y, columns, row, style)
    return y


def _table_row(page: Page, x: float, y: float, columns: Sequence[Column], row: Row, style: TableStyle,
               header: bool = False) -> int:
    pad = style.padding
    wrapped = [wrap(cell, style.size, col.width - 2 * pad) for cell, col in zip(row.cells, columns)]
    height = max(len(lines) for lines in wrapped) * line_height(style.size) + 2 * pad
    total_width = sum(c.width for c in columns)
    if header and style.header_fill is not None:
        page.box(x, y, x + total_width, y + height, fill=style.header_fill)
    ink = style.header_ink if header else INK
    cell_x = x
    for lines, col in zip(wrapped, columns):
        anchor = cell_x + col.width - pad if col.align == "right" else cell_x + pad
        page.lines(anchor, y + pad, lines, style.size, align=col.align, bold=row.bold, fill=ink)
        cell_x += col.width
    if style.rules or header:
        page.rule(y + height, x, x + total_width)
    return round(y + height)


def _heading_row(page: Page, x: float, y: float, width: float, heading: Heading, style: TableStyle) -> int:
    height = line_height(style.size) + 2 * style.padding
    page.box(x, y, x + width, y + height, fill=heading.fill)
    page.text(x + style.padding, y + style.padding, heading.text, style.size, bold=True)
    return round(y + height)
