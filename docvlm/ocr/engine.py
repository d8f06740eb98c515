"""The OCR engine: a page image -> text lines (RapidOCR) -> document type and fields (layout rules).

It fills the same fields as the VLM path, normalised by the same normaliser, so the runner records
and evaluates its results exactly like a VLM's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from docvlm.ocr.classify import detect_type
from docvlm.ocr.fields import read_sale
from docvlm.ocr.lines import TextLine
from docvlm.ocr.page import Page
from docvlm.ocr.reader import TextReader
from docvlm.ocr.rules import OcrRules, load_ocr_rules
from docvlm.ocr.statement import read_statement
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

    def process(self, image: Image.Image, schema: Schema) -> OcrResult:
        """Read the page and apply the layout rules; timings (s) in details["timings"]."""
        start = time.perf_counter()
        lines = self.read(image)
        read_s = time.perf_counter() - start
        result = self.extract(lines, schema)
        rules_s = time.perf_counter() - start - read_s
        result.details["timings"] = {"ocr_s": round(read_s, 4), "rules_s": round(rules_s, 4)}
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
