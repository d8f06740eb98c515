"""A born-digital PDF page's text layer (pypdfium2) -> the same `TextLine`s the OCR reads from its image.

The layout rules then apply unchanged, and the text is exact (no recognition errors) and free (no
rendering, no model). Lines are built like the OCR's detector boxes: characters of one visual line
are joined, with a space where the PDF has a space character or the glyphs leave a word gap (pdfium's
own guessed spaces are not used: they split kerned words, "Paym ent"), and a gap as wide as a table
column gap starts a new line. Boxes are in pixels of the page rendered at `dpi`,
the frame the OCR's boxes are in.

A page without a usable text layer gives None (the caller OCRs the rendered page): too few
characters (a scan), characters without a Unicode mapping (fonts whose glyphs map to nothing), or
only invisible text (a scan with another OCR's text layer under it: that text is not what is printed,
and reading the picture is this engine's job).
"""

from __future__ import annotations

import ctypes
import math
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw

from docvlm.inputs import _PDFIUM  # pdfium is not thread-safe: the loader's one process-wide lock
from docvlm.ocr.lines import TextLine
from docvlm.ocr.reader import ReaderSettings

INVISIBLE = 3  # FPDF_TEXTRENDERMODE_INVISIBLE


@dataclass(frozen=True)
class Glyph:
    char: str
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2

    @property
    def height(self) -> float:
        return self.y1 - self.y0


def read_text_layer(path: str | Path, page_index: int, settings: ReaderSettings | None = None,
                    dpi: float = 150) -> Optional[list[TextLine]]:
    """The page's text lines from its text layer, top to bottom; None when it has no usable one."""
    settings = settings or ReaderSettings()
    with _PDFIUM:
        pdf = pdfium.PdfDocument(str(path))
        try:
            page = pdf[page_index]
            try:
                glyphs = _page_glyphs(page, dpi / 72)
            finally:
                page.close()
        finally:
            pdf.close()
    if glyphs is None or sum(1 for g in glyphs if g.char.strip()) < settings.layer_min_chars:
        return None
    lines = [line for row in _rows(glyphs) for line in _split_row(row, settings)]
    return sorted(lines, key=lambda line: (line.y0, line.x0))


def _page_glyphs(page: pdfium.PdfPage, scale: float) -> Optional[list[Glyph]]:
    """Visible, level, mapped characters with their boxes in rendered-page pixels (y down); None
    when too many characters have no Unicode mapping to trust the text."""
    textpage = page.get_textpage()
    try:
        to_device = _device_transform(page, scale)
        glyphs, unmapped, total = [], 0, 0
        for i in range(textpage.count_chars()):
            if pdfium_raw.FPDFText_IsGenerated(textpage, i) == 1:
                continue
            char = _char(textpage, i)
            if char is None:
                continue
            if char.isspace():
                char = " "  # a space the PDF itself holds (pdfium's guessed ones were skipped above)
            elif unicodedata.category(char) in ("Cc", "Cf"):
                continue
            else:
                total += 1
            if pdfium_raw.FPDFText_HasUnicodeMapError(textpage, i) == 1 or char == "\ufffd":
                unmapped += 1
                continue
            if _invisible(textpage, i) or not _level(textpage, i):
                continue  # hidden text (another OCR's layer) and rotated text (margins) are not rows
            left, bottom, right, top = textpage.get_charbox(i, loose=True)
            (xa, ya), (xb, yb) = to_device(left, bottom), to_device(right, top)
            glyphs.append(Glyph(unicodedata.normalize("NFKC", char), min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)))
        return None if total and unmapped > 0.1 * total else glyphs
    finally:
        textpage.close()


def _device_transform(page: pdfium.PdfPage, scale: float):
    """PDF user space -> pixels of the page as rendered (page rotation and crop box included): the
    affine map that pdfium's own FPDF_PageToDevice applies, measured once on three points."""
    width, height = page.get_size()
    precision = 64  # FPDF_PageToDevice returns whole device units: measure on a finer grid
    size_x, size_y = round(width * scale * precision), round(height * scale * precision)

    def device(x: float, y: float) -> tuple[float, float]:
        dx, dy = ctypes.c_int(), ctypes.c_int()
        pdfium_raw.FPDF_PageToDevice(page, 0, 0, size_x, size_y, 0, x, y, ctypes.byref(dx), ctypes.byref(dy))
        return dx.value / precision, dy.value / precision

    (ox, oy), (ax, ay), (bx, by) = device(0, 0), device(100, 0), device(0, 100)
    m = ((ax - ox) / 100, (bx - ox) / 100, (ay - oy) / 100, (by - oy) / 100)
    return lambda x, y: (ox + m[0] * x + m[1] * y, oy + m[2] * x + m[3] * y)


def _char(textpage: pdfium.PdfTextPage, index: int) -> Optional[str]:
    """The character at `index`; pdfium gives UTF-16 units, so a character beyond the BMP (an emoji)
    comes as a surrogate pair: read whole at its first unit, None at its second."""
    code = pdfium_raw.FPDFText_GetUnicode(textpage, index)
    if 0xDC00 <= code <= 0xDFFF:
        return None
    if 0xD800 <= code <= 0xDBFF:
        low = pdfium_raw.FPDFText_GetUnicode(textpage, index + 1)
        return chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)) if 0xDC00 <= low <= 0xDFFF else "\ufffd"
    return chr(code)


def _invisible(textpage: pdfium.PdfTextPage, index: int) -> bool:
    obj = pdfium_raw.FPDFText_GetTextObject(textpage, index)
    return bool(obj) and pdfium_raw.FPDFTextObj_GetTextRenderMode(obj) == INVISIBLE


def _level(textpage: pdfium.PdfTextPage, index: int) -> bool:
    angle = pdfium_raw.FPDFText_GetCharAngle(textpage, index)
    return angle < 0 or min(angle, 2 * math.pi - angle) < 0.05  # -1: unknown, taken as level


# ----------------------------------------------------------------------------- glyphs -> lines
def _rows(glyphs: list[Glyph]) -> list[list[Glyph]]:
    """Glyphs grouped into visual rows: a glyph joins the row whose centre line passes through its
    middle third (the same baseline), else starts a new row."""
    rows: list[tuple[float, float, list[Glyph]]] = []  # (centre, height, glyphs)
    for glyph in sorted(glyphs, key=lambda g: g.cy):
        for k in range(len(rows) - 1, max(-1, len(rows) - 4), -1):
            centre, height, members = rows[k]
            if abs(glyph.cy - centre) <= 0.3 * min(height, glyph.height):
                members.append(glyph)
                break
        else:
            rows.append((glyph.cy, glyph.height, [glyph]))
    return [sorted(members, key=lambda g: g.x0) for _, _, members in rows]


def _split_row(row: list[Glyph], settings: ReaderSettings) -> list[TextLine]:
    """One row's glyphs -> text lines: a space at a word gap, a new line at a column gap (both in
    glyph heights, the font size as the loose boxes give it)."""
    lines: list[list[str]] = []
    boxes: list[list[float]] = []
    previous: Optional[Glyph] = None
    spaced = False  # the PDF has a space character since the previous glyph
    for glyph in row:
        if glyph.char == " ":
            spaced = previous is not None
            continue
        if previous and glyph.char == previous.char and glyph.x0 - previous.x0 < 0.3 * (previous.x1 - previous.x0):
            continue  # the same glyph drawn twice, slightly offset (fake bold)
        size = max(glyph.height, previous.height if previous else 0.0, 1e-6)
        gap = glyph.x0 - previous.x1 if previous else math.inf
        if gap > settings.layer_column_gap * size:
            lines.append([glyph.char])
            boxes.append([glyph.x0, glyph.y0, glyph.x1, glyph.y1])
        else:
            if spaced or gap > settings.layer_space_gap * size:
                lines[-1].append(" ")
            lines[-1].append(glyph.char)
            box = boxes[-1]
            box[:] = [min(box[0], glyph.x0), min(box[1], glyph.y0), max(box[2], glyph.x1), max(box[3], glyph.y1)]
        previous, spaced = glyph, False
    return [TextLine("".join(chars), (b[0], b[1], b[2], b[3]), 1.0) for chars, b in zip(lines, boxes)]
