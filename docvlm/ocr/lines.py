"""Text lines read from a page and the geometry the layout rules work with: rows, columns, neighbours."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


@dataclass(frozen=True)
class TextLine:
    """One line of text as the OCR read it; `box` is (x0, y0, x1, y1) in page pixels."""

    text: str
    box: tuple[float, float, float, float]
    score: float

    @property
    def x0(self) -> float:
        return self.box[0]

    @property
    def y0(self) -> float:
        return self.box[1]

    @property
    def x1(self) -> float:
        return self.box[2]

    @property
    def y1(self) -> float:
        return self.box[3]

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    def to_json(self) -> dict:
        """For records and caches: {"text", "box", "score"}."""
        return {"text": self.text, "box": [round(v, 1) for v in self.box], "score": round(self.score, 4)}


def vertical_overlap(a: TextLine, b: TextLine) -> float:
    """Shared height over the smaller height (1.0: one sits inside the other's band)."""
    shared = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(0.0, shared) / max(1.0, min(a.height, b.height))


def group_rows(lines: Iterable[TextLine], min_overlap: float) -> list[list[TextLine]]:
    """Lines grouped into visual rows (top to bottom), each row left to right.

    A line joins the row whose band it overlaps by `min_overlap` of its height; rows are built in
    order of the lines' centres, so a slightly skewed scan still groups one printed row together.
    """
    rows: list[list[TextLine]] = []
    for line in sorted(lines, key=lambda item: item.cy):
        row = next((r for r in reversed(rows[-3:]) if any(vertical_overlap(line, o) >= min_overlap for o in r)), None)
        if row is None:
            rows.append([line])
        else:
            row.append(line)
    return [sorted(row, key=lambda item: item.x0) for row in rows]


def row_text(row: Sequence[TextLine]) -> str:
    return " ".join(line.text for line in row)


# Typical advance widths in ems (Helvetica-like fonts): enough to compare text sizes across lines
# whatever their case, which box heights cannot do (descenders, detector padding).
_EM_WIDTH = {"upper": 0.66, "lower": 0.52, "digit": 0.57, "space": 0.25, "other": 0.35}


def font_size(line: TextLine) -> float:
    """The line's font size in pixels, estimated from its width and its characters."""
    ems = sum(_EM_WIDTH[_char_class(c)] for c in line.text)
    return (line.x1 - line.x0) / ems if ems else line.height


def _char_class(c: str) -> str:
    if c.isupper():
        return "upper"
    if c.islower():
        return "lower"
    if c.isdigit():
        return "digit"
    return "space" if c == " " else "other"
