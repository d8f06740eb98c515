"""The OCR engine: a page image -> text lines (RapidOCR; a born-digital PDF page: its text layer) ->
document type and fields (layout rules).

It fills the same fields as the VLM path, normalised by the same normaliser, so the runner records
and evaluates its results exactly like a VLM's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from PIL import Image

from docvlm.ocr.classify import detect_type
from docvlm.ocr.fields import read_sale
from docvlm.ocr.lines import TextLine
from docvlm.ocr.page import Page
from docvlm.ocr.reader import TextReader
from docvlm.ocr.rules import OcrRules, load_ocr_rules
from docvlm.ocr.statement import read_statement
from docvlm.ocr.text_layer import read_text_layer
from docvlm.schema import Schema


@dataclass
class OcrResult:
    document_type: str
    fields: dict[str, str]  # normalised; every field of the type
    details: dict[str, Any] = field(default_factory=dict)  # evidence, rules used, timings, bank rows
    text: str = ""  # the page text as read (one visual row a line)


class OcrEngine:
    """RapidOCR plus layout rules. `threads`: ONNX Runtime intra-op threads (default: the CPUs of
    this process shared among the ranks of the node)."""

    def __init__(self, rules: OcrRules | None = None, threads: int | None = None) -> None:
        self.rules = rules or load_ocr_rules()
        self.reader = TextReader(self.rules.reader, threads)

    @property
    def threads(self) -> int:
        return self.reader.threads

    def read(self, image: Image.Image) -> list[TextLine]:
        """The page's text lines (text, box, confidence), top to bottom."""
        return self.reader.read(image)

    def read_pdf_page(self, path: str | Path, page_index: int, dpi: float = 150) -> Optional[list[TextLine]]:
        """A PDF page's lines from its text layer (boxes in pixels at `dpi`); None: no usable text
        layer (a scan), read the rendered page with `read` instead."""
        return read_text_layer(path, page_index, self.rules.reader, dpi)

    def process(self, image: Image.Image, schema: Schema) -> OcrResult:
        """OCR the page and apply the layout rules; timings (s) in details["timings"]."""
        start = time.perf_counter()
        lines = self.read(image)
        return self.process_lines(lines, schema, "ocr", time.perf_counter() - start)

    def process_lines(self, lines: list[TextLine], schema: Schema, source: str, read_s: float = 0.0) -> OcrResult:
        """The layout rules on lines already read; `source` ("ocr" or "text_layer") and the reading
        time `read_s` go into the details."""
        start = time.perf_counter()
        result = self.extract(lines, schema)
        result.details["source"] = source
        result.details["timings"] = {"read_s": round(read_s, 4), "rules_s": round(time.perf_counter() - start, 4)}
        return result

    def extract(self, lines: list[TextLine], schema: Schema) -> OcrResult:
        """Type and fields from lines already read (the layout rules alone; no OCR)."""
        page = Page.from_lines(lines, self.rules.row_overlap)
        doc_type, evidence = detect_type(page, self.rules, schema)
        spec = schema.type_spec(doc_type)
        if spec.flow == "bank":
            fields, details = read_statement(page, self.rules, schema)
        else:
            fields, details = read_sale(page, spec, self.rules, schema)
        fields["DOCUMENT_TYPE"] = doc_type
        details = {"detection": evidence, spec.flow: details, "lines": len(lines),
                   "mean_score": round(sum(l.score for l in lines) / len(lines), 4) if lines else None}
        return OcrResult(doc_type, fields, details, page.text)
