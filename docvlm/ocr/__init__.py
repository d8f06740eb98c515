"""A CPU engine that reads documents without VLM weights: RapidOCR text lines plus layout rules.

  reader.py     RapidOCR (ONNX Runtime) -> text lines with boxes: deskewed, split lines merged, spaces
                restored, usual confusions undone
  lines.py      TextLine, row grouping, font size     page.py       a page's rows and text helpers
  classify.py   document type from keywords           statement.py  bank tables by header x positions
  sale.py       ABN, date, totals, tax                parties.py    supplier, payer and their addresses
  items.py      line-item tables and till slips
  fields.py     invoice/receipt fields assembled      engine.py     OcrEngine, OcrResult
  grounding.py  which VLM answers are not on the page accuracy.py   the engine over a generated corpus
  rules.py      conf/ocr/default.yaml, typed

Usage: `OcrEngine().process(image, schema)` -> OcrResult (type, normalised fields, details, page
text); `find_ungrounded(fields, schema.type_spec(t), OcrEngine().read(image), schema)` -> field names.
"""

from docvlm.ocr.engine import OcrEngine, OcrResult
from docvlm.ocr.grounding import find_ungrounded
from docvlm.ocr.lines import TextLine
from docvlm.ocr.rules import OcrRules, load_ocr_rules

__all__ = ["OcrEngine", "OcrResult", "OcrRules", "TextLine", "find_ungrounded", "load_ocr_rules"]
