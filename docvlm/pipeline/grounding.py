"""validation.grounding: is each extracted value printed on the page? (OCR of the page, then the
normaliser's comparators: money by value, dates parsed, ABN by digits, names by fuzzy text.)

Values the page does not show are listed in the record's `ungrounded_fields` and counted in the
summary: a cheap check on VLM answers that needs no ground truth.
"""

from __future__ import annotations

import time

from PIL import Image

from docvlm.ocr import OcrEngine, find_ungrounded
from docvlm.records import DocumentRecord
from docvlm.schema import Schema


class Grounding:
    def __init__(self, schema: Schema, engine: OcrEngine | None = None) -> None:
        self.schema = schema
        self.engine = engine or OcrEngine()

    def check(self, image: Image.Image, record: DocumentRecord) -> None:
        start = time.perf_counter()
        spec = self.schema.type_spec(record.document_type)
        lines = self.engine.read(image)
        record.ungrounded_fields = find_ungrounded(record.fields, spec, lines, self.schema)
        record.timings["grounding_s"] = time.perf_counter() - start
