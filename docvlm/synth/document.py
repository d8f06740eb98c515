"""The record every generator returns: rendered pages plus the typed ground-truth values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image


@dataclass(frozen=True)
class SynthDoc:
    doc_type: str  # INVOICE, RECEIPT, BANK_STATEMENT
    layout: str  # one of the generator module's LAYOUTS
    pages: list[Image.Image]  # one image a page; most documents have one
    values: dict[str, Any]  # field -> typed value (see truth.py); exactly the type's fields
