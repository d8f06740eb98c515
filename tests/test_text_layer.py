"""Born-digital PDF pages are read from their text layer (docvlm/ocr/text_layer.py), scans are OCR'd.

Fixtures are written here: a born-digital page with pdfium text objects (docvlm/synth/pdf.py), and
the same page rendered and saved by Pillow as a scan-like PDF without a text layer.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from docvlm.inputs import Document, discover, load_image
from docvlm.ocr import OcrEngine
from docvlm.ocr.text_layer import read_text_layer
from docvlm.pipeline.ocr_pipeline import OcrPipeline
from docvlm.schema import load_schema
from docvlm.synth.pdf import PdfText, write_text_pdf

SCHEMA = load_schema()
RIGHT = 1160  # right edge of the amount column, pixels at 150 dpi
PAGE = [
    PdfText(80, 80, "Harbour Coffee Roasters", 40, bold=True),
    PdfText(80, 140, "12 Wharf Street, Sydney NSW 2000", 22),
    PdfText(80, 240, "Invoice Date: 14/03/2024", 22),
    PdfText(80, 320, "Description", 22, bold=True), PdfText(RIGHT, 320, "Amount", 22, bold=True, align="right"),
    PdfText(80, 360, "Coffee beans 1kg", 22), PdfText(RIGHT, 360, "$42.50", 22, align="right"),
    PdfText(80, 400, "Milk delivery", 22), PdfText(RIGHT, 400, "$18.00", 22, align="right"),
    PdfText(800, 480, "Total", 22, bold=True), PdfText(RIGHT, 480, "$60.50", 22, bold=True, align="right"),
]


@pytest.fixture(scope="module")
def engine() -> OcrEngine:
    return OcrEngine(threads=2)


@pytest.fixture(scope="module")
def pdfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """born.pdf (text layer) and scan.pdf (the same page as a picture only)."""
    folder = tmp_path_factory.mktemp("pdfs")
    write_text_pdf(folder / "born.pdf", [PAGE])
    image = load_image(Document(0, "born.pdf#page=1", folder / "born.pdf", 1, "pdf"))
    image.save(folder / "scan.pdf", "PDF", resolution=150)
    return folder


def test_text_layer_lines_equal_the_ocr_lines_of_the_rendered_page(pdfs: Path, engine: OcrEngine) -> None:
    layer = read_text_layer(pdfs / "born.pdf", 0)
    assert layer is not None
    ocr = engine.read(load_image(Document(0, "born.pdf#page=1", pdfs / "born.pdf", 1, "pdf")))
    assert sorted(line.text for line in layer) == sorted(line.text for line in ocr)
    # one visual line's words are one line; the amount column is a line of its own
    assert "Coffee beans 1kg" in [line.text for line in layer] and "$42.50" in [line.text for line in layer]
    # boxes in the rendered page's pixels, where the OCR finds the same text
    by_text = {line.text: line for line in ocr}
    for line in layer:
        assert all(abs(a - b) < 12 for a, b in zip(line.box, by_text[line.text].box)), line


def test_a_scan_has_no_usable_text_layer(pdfs: Path) -> None:
    assert read_text_layer(pdfs / "scan.pdf", 0) is None


def test_spaces_come_from_gaps_and_a_column_gap_splits_the_line(tmp_path: Path) -> None:
    """Producers that kern with spaces inside words ("Paym ent") or draw words without spaces: the
    glyph gaps decide; a double-bold glyph (drawn twice) is read once."""
    words = [PdfText(80, 100, "Paym", 22), PdfText(80 + _width("Paym"), 100, "ent", 22),
             PdfText(80 + _width("Paym ent") + 3, 100, "type", 22),
             PdfText(600, 100, "Balance", 22), PdfText(600.5, 100, "Balance", 22)]
    path = write_text_pdf(tmp_path / "kerned.pdf", [words])
    assert [line.text for line in read_text_layer(path, 0)] == ["Payment type", "Balance"]


def _width(text: str) -> float:
    from docvlm.synth.pdf import text_width

    return text_width(text, 22)


def test_the_pipeline_reads_a_born_digital_page_from_its_text_layer_and_ocrs_a_scan(pdfs: Path, engine: OcrEngine) -> None:
    records = {r.image: r for r in OcrPipeline(engine, SCHEMA, rank=0).process(discover(pdfs, [".pdf"]))}
    born, scan = records["born.pdf#page=1"], records["scan.pdf#page=1"]
    assert born.details["ocr"]["source"] == "text_layer" and scan.details["ocr"]["source"] == "ocr"
    assert born.fields == scan.fields  # the same rules on the same lines
    assert born.fields["TOTAL_AMOUNT"] == "$60.50"
    # the scan went through Pillow's JPEG: its OCR may miss a space, never a character
    assert "".join(born.raw["ocr"].split()) == "".join(scan.raw["ocr"].split())


def test_total_time_counts_each_stage_once(tmp_path: Path) -> None:
    """total_s = load_s + extract_s: the engine's read/rules timings are parts of extract_s (they
    were added to it a second time)."""
    from PIL import Image

    Image.new("RGB", (64, 64), "white").save(tmp_path / "a.png")

    class Engine:
        def process(self, image, schema):
            return SimpleNamespace(document_type="INVOICE", fields={}, text="",
                                   details={"timings": {"read_s": 5.0, "rules_s": 5.0}})

    record = next(OcrPipeline(Engine(), SCHEMA, rank=0).process(discover(tmp_path, [".png"])))
    assert record.timings["ocr_read_s"] == 5.0 and record.timings["ocr_rules_s"] == 5.0
    assert record.timings["total_s"] == pytest.approx(record.timings["load_s"] + record.timings["extract_s"], abs=1e-5)
    assert record.timings["total_s"] < 10  # the fake engine's 10 s are not real time
