"""Synthetic documents: determinism, coverage of types and layouts, ground-truth format and content.

What is printed on a page is checked by recording every string the generators draw (Page.text), so
the tests can assert that the ground truth is on the page without an OCR engine.
"""

from __future__ import annotations

import csv
import io
import random
import re
import time
from decimal import Decimal
from pathlib import Path

import pytest
from PIL import Image, ImageChops, PdfParser

from docvlm.normalize import normalize_value
from docvlm.schema import load_schema
from docvlm.synth import all_layouts, bank, draw, fake, generate_corpus, generate_samples, invoice, main, receipt
from docvlm.synth.fmt import DATE_STYLES, YEARLESS_STYLES, long_weekday_date, show_abn, show_date, show_money

SCHEMA = load_schema()
NF = SCHEMA.not_found
SEP = SCHEMA.list_separator
MONEY = re.compile(r"^\$\d+\.\d{2}$")
DATE = re.compile(r"^\d{2}/\d{2}/\d{4}$")
PAID_CUES = re.compile(r"\b(PAID|TENDERED|CHANGE|APPROVED|EFTPOS|VISA|MASTERCARD|AMEX)\b")
MAKERS = {"INVOICE": invoice.make_invoice, "RECEIPT": receipt.make_receipt, "BANK_STATEMENT": bank.make_statement}


def read_rows(csv_path: Path) -> list[dict[str, str]]:
    with csv_path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def items(value: str) -> list[str]:
    return [] if value == NF else value.split(SEP)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every layout at least twice, PNG and PDF."""
    out = tmp_path_factory.mktemp("corpus")
    return generate_corpus(out, {"INVOICE": 4, "RECEIPT": 4, "BANK_STATEMENT": 6}, seed=11, formats=("png", "pdf"))


@pytest.fixture
def record_text(monkeypatch: pytest.MonkeyPatch):
    """Call `record_text(make, *args)` -> (document, every string drawn on its pages joined by spaces)."""
    original = draw.Page.text

    def run(make, *args):
        seen: list[str] = []

        def recording(self, x, y, text, *rest, **kwargs):
            seen.append(text)
            return original(self, x, y, text, *rest, **kwargs)

        monkeypatch.setattr(draw.Page, "text", recording)
        try:
            return make(*args), " ".join(seen)
        finally:
            monkeypatch.setattr(draw.Page, "text", original)

    return run


# ---- determinism ----------------------------------------------------------------------------------

def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    counts = {"INVOICE": 1, "RECEIPT": 1, "BANK_STATEMENT": 1}
    first = generate_corpus(tmp_path / "a", counts, seed=7, degrade=True, formats=("png", "pdf"))
    second = generate_corpus(tmp_path / "b", counts, seed=7, degrade=True, formats=("png", "pdf"))
    assert first.read_bytes() == second.read_bytes()
    names = sorted(p.name for p in first.parent.iterdir())
    assert names == sorted(p.name for p in second.parent.iterdir()) and len(names) == 7
    for name in names:
        assert (first.parent / name).read_bytes() == (second.parent / name).read_bytes(), name


def test_other_seed_gives_other_documents(tmp_path: Path) -> None:
    counts = {"INVOICE": 1, "RECEIPT": 1, "BANK_STATEMENT": 1}
    first = read_rows(generate_corpus(tmp_path / "a", counts, seed=1))
    second = read_rows(generate_corpus(tmp_path / "b", counts, seed=2))
    assert [r for r in first if r not in second]


# ---- coverage and format --------------------------------------------------------------------------

def test_every_type_and_layout_is_produced(corpus: Path) -> None:
    rows = read_rows(corpus)
    seen = {(r["DOCUMENT_TYPE"], r["image_file"].split("-", 2)[2].rsplit(".", 1)[0]) for r in rows}
    for doc_type, layouts in all_layouts().items():
        for layout in layouts:
            slug = f"{doc_type.lower()}-{layout}".replace("_", "-")
            assert (doc_type, slug) in seen, f"no {doc_type} in layout {layout}"
    assert len(all_layouts()["BANK_STATEMENT"]) >= 3 and len(all_layouts()["INVOICE"]) >= 2
    assert len(all_layouts()["RECEIPT"]) >= 2


def test_ground_truth_columns_are_the_schema_fields(corpus: Path) -> None:
    with corpus.open(encoding="utf-8") as handle:
        header = handle.readline().strip().split(",")
    assert header == ["image_file", *SCHEMA.all_field_names]
    for row in read_rows(corpus):
        assert (corpus.parent / row["image_file"]).is_file()
        own = set(SCHEMA.type_spec(row["DOCUMENT_TYPE"]).field_names)
        for name in SCHEMA.all_field_names:
            if name not in own:
                assert row[name] == NF, (row["image_file"], name)


def test_values_are_already_normalised(corpus: Path) -> None:
    for row in read_rows(corpus):
        for name in SCHEMA.all_field_names:
            spec = SCHEMA.fields[name]
            assert normalize_value(row[name], spec.kind, SCHEMA, spec.is_list) == row[name], (row["image_file"], name)


def test_invoice_and_receipt_values_follow_the_conventions(corpus: Path) -> None:
    rows = [r for r in read_rows(corpus) if r["DOCUMENT_TYPE"] in ("INVOICE", "RECEIPT")]
    assert rows
    for row in rows:
        assert fake.abn_is_valid(row["BUSINESS_ABN"])
        assert DATE.match(row["INVOICE_DATE"])
        descriptions = items(row["LINE_ITEM_DESCRIPTIONS"])
        quantities = [Decimal(q) for q in items(row["LINE_ITEM_QUANTITIES"])]
        prices = items(row["LINE_ITEM_PRICES"])
        totals = items(row["LINE_ITEM_TOTAL_PRICES"])
        assert len(descriptions) == len(quantities) == len(prices) == len(totals) >= 1
        for quantity, price, total in zip(quantities, prices, totals):
            assert MONEY.match(price) and MONEY.match(total)
            assert abs(quantity * Decimal(price[1:]) - Decimal(total[1:])) < Decimal("0.01")
        line_sum = sum(Decimal(t[1:]) for t in totals)
        total = Decimal(row["TOTAL_AMOUNT"][1:])
        if row["IS_GST_INCLUDED"] == "false":
            assert row["GST_AMOUNT"] == NF and total == line_sum
        else:
            gst = Decimal(row["GST_AMOUNT"][1:])
            assert total in (line_sum, line_sum + gst)  # prices incl. GST, or GST added
            assert abs(gst - (total / 11)) <= Decimal("0.01")  # 10% GST
    assert all(r["PAYER_NAME"] != NF for r in rows if r["DOCUMENT_TYPE"] == "INVOICE")


def test_bank_statement_values_follow_the_conventions(corpus: Path) -> None:
    rows = [r for r in read_rows(corpus) if r["DOCUMENT_TYPE"] == "BANK_STATEMENT"]
    assert rows
    for row in rows:
        descriptions = items(row["LINE_ITEM_DESCRIPTIONS"])
        dates = items(row["TRANSACTION_DATES"])
        paid = items(row["TRANSACTION_AMOUNTS_PAID"])
        assert len(descriptions) == len(dates) == len(paid) >= 8
        assert NF in paid and any(MONEY.match(p) for p in paid)  # credits and debits
        assert all(p == NF or MONEY.match(p) for p in paid)
        start, end = row["STATEMENT_DATE_RANGE"].split(" - ")
        as_key = lambda d: d[6:] + d[3:5] + d[:2]  # noqa: E731  DD/MM/YYYY -> sortable
        keys = [as_key(d) for d in dates]
        assert keys == sorted(keys) and as_key(start) <= keys[0] and keys[-1] <= as_key(end)
        assert not any("BALANCE" in d.upper() for d in descriptions)  # balance lines are not transactions


# ---- what is printed -------------------------------------------------------------------------------

def printed_date(day, text: str) -> bool:
    styles = list(DATE_STYLES) + list(YEARLESS_STYLES)
    return any(show_date(day, s) in text for s in styles) or long_weekday_date(day) in text


@pytest.mark.parametrize("doc_type", ["INVOICE", "RECEIPT"])
def test_invoice_and_receipt_truth_is_printed(doc_type: str, record_text) -> None:
    for layout in all_layouts()[doc_type]:
        for seed in range(6):
            doc, text = record_text(MAKERS[doc_type], random.Random(seed), layout)
            v = doc.values
            assert show_abn(v["BUSINESS_ABN"]) in text
            assert v["SUPPLIER_NAME"].upper() in text.upper()
            assert printed_date(v["INVOICE_DATE"], text)
            for name in ("LINE_ITEM_DESCRIPTIONS", "LINE_ITEM_PRICES", "LINE_ITEM_TOTAL_PRICES", "TOTAL_AMOUNT",
                         "GST_AMOUNT"):
                values = v[name] if isinstance(v[name], list) else [v[name]]
                for value in values:
                    if value is not None:
                        shown = show_money(value) if isinstance(value, Decimal) else value
                        assert shown in text, (layout, seed, name, shown)
            if v["PAYER_NAME"]:
                assert v["PAYER_NAME"] in text
            cues = PAID_CUES.findall(text.upper())
            assert bool(cues) == (doc_type == "RECEIPT"), (layout, seed, cues)


def test_bank_truth_and_balances_are_printed(record_text) -> None:
    for layout in bank.LAYOUTS:
        for seed in range(6):
            doc, text = record_text(bank.make_statement, random.Random(seed), layout)
            v = doc.values
            start, end = v["STATEMENT_DATE_RANGE"]
            assert "statement period" in text.lower() and printed_date(start, text) and printed_date(end, text)
            assert "opening balance" in text.lower() and "closing balance" in text.lower()
            for description, day, amount in zip(v["LINE_ITEM_DESCRIPTIONS"], v["TRANSACTION_DATES"],
                                                v["TRANSACTION_AMOUNTS_PAID"]):
                assert description in text and printed_date(day, text)
                if amount is not None:
                    assert show_money(amount, symbol=False) in text


def test_printed_balances_add_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Debit/credit tables: every balance = previous balance - debit + credit, across pages."""
    tables: list[list] = []
    original = bank.table
    monkeypatch.setattr(bank, "table", lambda page, x, y, cols, rows, *a: tables.append(rows) or original(
        page, x, y, cols, rows, *a))
    number = lambda cell: Decimal(cell.replace(",", "").replace(" CR", "")) if cell else Decimal(0)  # noqa: E731
    for seed in range(4):
        tables.clear()
        doc = bank.make_statement(random.Random(seed), "debit_credit", pages=2)
        assert len(doc.pages) == 2 and len(tables) == 2
        rows = [r.cells for page_rows in tables for r in page_rows]
        assert rows[0][1] == "OPENING BALANCE" and rows[-1][1] == "CLOSING BALANCE"
        balance = number(rows[0][4])
        transactions = 0
        for cells in rows[1:]:
            if "BALANCE" in cells[1]:  # carried / brought forward, closing
                assert number(cells[4]) == balance
                continue
            transactions += 1
            balance = balance - number(cells[2]) + number(cells[3])
            assert number(cells[4]) == balance
        assert transactions == len(doc.values["LINE_ITEM_DESCRIPTIONS"])


def test_bank_headers_map_to_schema_roles() -> None:
    """Every printed column header is a keyword of the schema's bank_header_roles (what the pipeline reads)."""
    def roles(header: str) -> set[str]:
        words = header.lower()
        return {role for role, keywords in SCHEMA.bank_header_roles.items()
                for k in keywords if re.search(rf"\b{re.escape(k)}\b", words)}

    for layout, variants in bank.HEADERS.items():
        for headers in variants:
            found = [roles(h) for h in headers]
            assert all(found), (layout, headers, found)
            assert set().union(*found) & set(SCHEMA.bank_marker_roles)


def test_abn_checksum() -> None:
    assert fake.abn_is_valid("51824753556")  # the ATO's published example
    assert not fake.abn_is_valid("51824753557")
    assert all(fake.abn_is_valid(fake.abn(random.Random(seed))) for seed in range(20))


# ---- degradation, formats, options -------------------------------------------------------------------

def test_degradation_changes_pixels_not_truth(tmp_path: Path) -> None:
    counts = {"INVOICE": 1, "RECEIPT": 1, "BANK_STATEMENT": 1}
    clean = generate_corpus(tmp_path / "clean", counts, seed=3)
    noisy = generate_corpus(tmp_path / "noisy", counts, seed=3, degrade=True)
    assert clean.read_bytes() == noisy.read_bytes()
    for row in read_rows(clean):
        a = Image.open(clean.parent / row["image_file"]).convert("RGB")
        b = Image.open(noisy.parent / row["image_file"]).convert("RGB")
        assert a.size == b.size
        assert ImageChops.difference(a, b).getbbox() is not None


def pdf_pages(path: Path) -> list[Image.Image]:
    """The page images embedded in a PDF written by Pillow (JPEG streams)."""
    parser = PdfParser.PdfParser(str(path))
    try:
        pages = []
        for ref in parser.pages:
            page = parser.read_indirect(ref)
            stream = parser.read_indirect(page[b"Resources"][b"XObject"][b"image"])
            pages.append(Image.open(io.BytesIO(stream.buf)).convert("RGB"))
        return pages
    finally:
        parser.close()


def test_pdf_holds_the_same_page(corpus: Path) -> None:
    rows = read_rows(corpus)
    pdfs = [r["image_file"] for r in rows if r["image_file"].endswith(".pdf")]
    assert len(pdfs) == len(rows) // 2
    for name in pdfs[:4]:
        [page] = pdf_pages(corpus.parent / name)
        png = Image.open(corpus.parent / name.replace(".pdf", ".png")).convert("RGB")
        assert page.size == png.size
        diff = ImageChops.difference(page, png).convert("L").histogram()
        mean = sum(i * n for i, n in enumerate(diff)) / (png.width * png.height)
        assert mean < 3, name  # only JPEG loss


def test_multi_page_statements_are_pdf_only(tmp_path: Path) -> None:
    csv_path = generate_corpus(tmp_path, {"BANK_STATEMENT": 4}, seed=2, formats=("png", "pdf"), max_pages=3)
    rows = read_rows(csv_path)
    pdfs = [r["image_file"] for r in rows if r["image_file"].endswith(".pdf")]
    counts = {name: len(pdf_pages(tmp_path / name)) for name in pdfs}
    assert max(counts.values()) > 1
    for name, pages in counts.items():
        assert (tmp_path / name.replace(".pdf", ".png")).exists() == (pages == 1)
    assert len(rows) == len(list(tmp_path.glob("doc-*")))


def test_layout_filter(tmp_path: Path) -> None:
    rows = read_rows(generate_corpus(tmp_path, {"INVOICE": 2, "RECEIPT": 2}, seed=0, layouts=["thermal"]))
    assert [r["DOCUMENT_TYPE"] for r in rows] == ["RECEIPT", "RECEIPT"]
    assert all("thermal" in r["image_file"] and r["PAYER_NAME"] == NF for r in rows)


@pytest.mark.parametrize("kwargs, message", [
    ({"counts": {"LETTER": 1}}, "unknown document type 'LETTER'"),
    ({"counts": {"INVOICE": -1}}, "non-negative"),
    ({"layouts": ["fancy"]}, "unknown layouts ['fancy']"),
    ({"formats": ("tiff",)}, "formats must be"),
    ({"max_pages": 2}, "need 'pdf' in formats"),
])
def test_bad_arguments_are_clear_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        generate_corpus(tmp_path, **kwargs)


def test_samples_are_fast_and_cover_every_layout(tmp_path: Path) -> None:
    started = time.perf_counter()
    rows = read_rows(generate_samples(tmp_path, seed=0))
    assert time.perf_counter() - started < 3
    assert sorted(r["DOCUMENT_TYPE"] for r in rows).count("BANK_STATEMENT") == len(bank.LAYOUTS)
    assert {r["image_file"].split("-", 2)[2].rsplit(".", 1)[0] for r in rows} == {
        f"{t.lower()}-{layout}".replace("_", "-") for t, layouts in all_layouts().items() for layout in layouts}


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path), "--invoices", "1", "--receipts", "0", "--statements", "1",
                 "--layouts", "classic,signed_amount", "--seed", "4"]) == 0
    assert "wrote 2 documents and their ground truth" in capsys.readouterr().out
    names = {p.name.split("-", 2)[2] for p in tmp_path.glob("*.png")}
    assert names == {"bank-statement-signed-amount.png", "invoice-classic.png"}


def test_rendering_in_several_processes_writes_the_same_corpus(tmp_path):
    counts = {"INVOICE": 2, "RECEIPT": 2, "BANK_STATEMENT": 2}
    serial = generate_corpus(tmp_path / "serial", counts, seed=4)
    parallel = generate_corpus(tmp_path / "parallel", counts, seed=4, workers=3)
    assert parallel.read_text() == serial.read_text()
    files = sorted(p.name for p in serial.parent.glob("*.png"))
    assert len(files) == 6 and files == sorted(p.name for p in parallel.parent.glob("*.png"))
    for name in files:
        assert (serial.parent / name).read_bytes() == (parallel.parent / name).read_bytes()
