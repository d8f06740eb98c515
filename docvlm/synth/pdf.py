"""Born-digital PDFs: text placed on pages with pdfium (a text layer, as accounting software writes it).

The image generators draw pixels; this writes text objects in the standard Helvetica font, so a page
has an exact text layer and renders like a printed document. Positions are given like the image
generators give them: pixels at `DPI` from the top-left corner, `y` the top of the text.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_raw

DPI = 150
A4_POINTS = (595.0, 842.0)
ASCENT = 0.78  # Helvetica's cap height region above the baseline, in font sizes (top of text -> baseline)


@dataclass(frozen=True)
class PdfText:
    x: float  # left edge, pixels at DPI
    y: float  # top of the text, pixels at DPI
    text: str
    size: float = 22  # font size in pixels at DPI (as the image generators size text)
    bold: bool = False
    align: str = "left"  # "left" or "right" (x is then the right edge)


def text_width(text: str, size: float, bold: bool = False) -> float:
    """Width in pixels of `text` in Helvetica at `size` px (pdfium's own font metrics)."""
    pdf = pdfium.PdfDocument.new()
    try:
        font = pdfium_raw.FPDFText_LoadStandardFont(pdf, _font_name(bold).encode())
        obj = pdfium_raw.FPDFPageObj_CreateTextObj(pdf, font, ctypes.c_float(size))
        _set_text(obj, text)
        left, bottom, right, top = (ctypes.c_float() for _ in range(4))
        pdfium_raw.FPDFPageObj_GetBounds(obj, *(ctypes.byref(v) for v in (left, bottom, right, top)))
        pdfium_raw.FPDFPageObj_Destroy(obj)
        return right.value - left.value
    finally:
        pdf.close()


def write_text_pdf(path: str | Path, pages: Sequence[Sequence[PdfText]], size: tuple[float, float] = A4_POINTS) -> Path:
    """A PDF with one page per entry of `pages`, each holding its texts as real text objects."""
    pdf = pdfium.PdfDocument.new()
    try:
        fonts = {bold: pdfium_raw.FPDFText_LoadStandardFont(pdf, _font_name(bold).encode()) for bold in (False, True)}
        for texts in pages:
            page = pdf.new_page(*size)
            for item in texts:
                _place(pdf, page, fonts[item.bold], item, size[1])
            pdfium_raw.FPDFPage_GenerateContent(page)
            page.close()
        pdf.save(str(path))
    finally:
        pdf.close()
    return Path(path)


def _place(pdf: pdfium.PdfDocument, page: pdfium.PdfPage, font, item: PdfText, height_pt: float) -> None:
    scale = 72 / DPI  # pixels -> points
    size = item.size * scale
    obj = pdfium_raw.FPDFPageObj_CreateTextObj(pdf, font, ctypes.c_float(size))
    _set_text(obj, item.text)
    x = item.x * scale
    if item.align == "right":
        x -= text_width(item.text, item.size, item.bold) * scale
    baseline = height_pt - item.y * scale - ASCENT * size
    pdfium_raw.FPDFPageObj_Transform(obj, 1, 0, 0, 1, x, baseline)
    pdfium_raw.FPDFPage_InsertObject(page, obj)  # the page owns it now


def _set_text(obj, text: str) -> None:
    encoded = (text + "\x00").encode("utf-16-le")
    buffer = ctypes.create_string_buffer(encoded, len(encoded))
    pdfium_raw.FPDFText_SetText(obj, ctypes.cast(buffer, ctypes.POINTER(pdfium_raw.FPDF_WCHAR)))


def _font_name(bold: bool) -> str:
    return "Helvetica-Bold" if bold else "Helvetica"
