"""Credit-card statements (no balance column; purchases are money out) are bank statements: every page
typed BANK_STATEMENT, purchases read as debits that add up to the statement's "purchases and charges".

Fixtures: born-digital card statements from docvlm/synth/card.py (each layout once), read from their
text layer, and one page rendered and OCR'd (a scanned card statement).
"""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pypdfium2 as pdfium
import pytest

from docvlm.inputs import Document, load_image
from docvlm.normalize import split_list
from docvlm.ocr import OcrEngine
from docvlm.ocr.text_layer import read_text_layer
from docvlm.schema import load_schema
from docvlm.synth.card import LAYOUTS, write_card_statements

SCHEMA = load_schema()


@pytest.fixture(scope="module")
def cards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_card_statements(tmp_path_factory.mktemp("cards"), len(LAYOUTS), seed=5)


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return OcrEngine(threads=2)


def _statements(folder: Path) -> list[dict[str, str]]:
    with (folder / "statements.csv").open() as handle:
        return list(csv.DictReader(handle))


def _debits(fields: dict[str, str]) -> list[Decimal]:
    paid = split_list(fields["TRANSACTION_AMOUNTS_PAID"], SCHEMA)
    return [Decimal(a.replace("$", "").replace(",", "")) for a in paid if a.startswith("$")]


def test_every_page_is_a_statement_and_the_debits_add_up_to_purchases(cards: Path, engine: OcrEngine) -> None:
    for row in _statements(cards):
        path = cards / row["file"]
        pdf = pdfium.PdfDocument(str(path))
        pages = len(pdf)
        pdf.close()
        debits: list[Decimal] = []
        for index in range(pages):
            result = engine.process_lines(read_text_layer(path, index), SCHEMA, "text_layer")
            assert result.document_type == "BANK_STATEMENT", (row["file"], index, result.details["detection"])
            debits += _debits(result.fields)
        assert len(debits) == int(row["n_debits"]), row["file"]
        assert sum(debits) == Decimal(row["payments_out"]), row["file"]


def test_a_scanned_card_statement_page_reads_the_same(cards: Path, engine: OcrEngine) -> None:
    name = next(r["file"] for r in _statements(cards) if r["layout"] == "cr_suffix")
    layer = engine.process_lines(read_text_layer(cards / name, 0), SCHEMA, "text_layer")
    scan = engine.process(load_image(Document(0, f"{name}#page=1", cards / name, 1, "pdf")), SCHEMA)
    assert scan.document_type == "BANK_STATEMENT"
    assert _debits(scan.fields) == _debits(layer.fields) and _debits(layer.fields)
