"""Synthetic invoices (no paid cues: no PAID stamp, no tendered/change, no card payment).

Layouts:
  classic  Supplier letterhead top left, "TAX INVOICE" top right with number, date and due date,
           a "Bill To" block, a shaded-header table Description | Qty | Unit Price | Amount with prices
           EXCLUDING GST, then Subtotal, GST (10%) and Total; bank details for payment at the foot.
  service  A coloured banner with the supplier name, "Invoice to" and invoice details side by side,
           a ruled table Description | Hours/Qty | Rate | Total with prices INCLUDING GST, then
           "Total (incl. GST)" and the GST it includes. Quantities may be hours (1.5).
Either layout may come from a supplier that charges no GST (title "INVOICE", a no-GST note).
Dates are printed in a style drawn per document (DD/MM/YYYY, "05 Mar 2024", "5 March 2024", ...).
"""

from __future__ import annotations

import random
from datetime import timedelta

from PIL import Image

from docvlm.synth import fake
from docvlm.synth.commerce import INVOICE_TRADES, Sale, make_sale, pick_gst_mode, printed_items
from docvlm.synth.document import SynthDoc
from docvlm.synth.draw import INK, MUTED, Column, Page, Row, TableStyle, WHITE, table
from docvlm.synth.fmt import DATE_STYLES, show_abn, show_date, show_money

LAYOUTS = ("classic", "service")
ACCENTS = ((22, 78, 140), (16, 110, 86), (120, 40, 90), (60, 60, 60), (170, 80, 20))


def make_invoice(rng: random.Random, layout: str) -> SynthDoc:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown invoice layout {layout!r}; known: {LAYOUTS}")
    usual_gst = {"classic": "added", "service": "included"}[layout]
    sale = make_sale(rng, INVOICE_TRADES, pick_gst_mode(rng, usual_gst), fake.customer(rng), items=(2, 5),
                     number=f"INV-{rng.randint(1000, 99999):05d}")
    style = rng.choice(sorted(DATE_STYLES))
    draw = {"classic": _classic, "service": _service}[layout]
    return SynthDoc("INVOICE", layout, [draw(rng, sale, style)], sale.truth("INVOICE"))


def _title(sale: Sale) -> str:
    return "INVOICE" if sale.gst_mode == "none" else "TAX INVOICE"


def _classic(rng: random.Random, sale: Sale, date_style: str) -> Image.Image:
    page = Page()
    s = sale.supplier
    y = page.text(page.left, 80, s.name, 34, bold=True)
    y = page.lines(page.left, y + 6, s.address.lines, 22, fill=MUTED)
    y = page.text(page.left, y, f"ABN {show_abn(s.abn)}", 22)
    y = page.lines(page.left, y, [f"Phone {s.phone}", s.email], 22, fill=MUTED)

    right = page.right
    ry = page.text(right, 80, _title(sale), 40, align="right", bold=True)
    due = sale.day + timedelta(days=rng.choice((7, 14, 30)))
    for label, value in (("Invoice No:", sale.number), ("Invoice Date:", show_date(sale.day, date_style)),
                         ("Due Date:", show_date(due, date_style))):
        page.text(right - 250, ry + 10, label, 22, align="right", fill=MUTED)
        ry = page.text(right, ry + 10, value, 22, align="right")

    y = max(y, ry) + 40
    y = page.text(page.left, y, "Bill To:", 24, bold=True)
    y = page.text(page.left, y + 4, sale.payer.name, 22)
    y = page.lines(page.left, y, sale.payer.address.lines, 22)

    columns = [Column("Description", 560), Column("Qty", 120, "right"),
               Column("Unit Price", 200, "right"), Column("Amount", page.right - page.left - 880, "right")]
    rows = [Row(cells) for cells in printed_items(sale.items)]
    y = table(page, page.left, y + 40, columns, rows)
    y = _totals(page, y + 20, sale, ex_gst=True)
    y = page.text(page.left, y + 60, "Payment terms: please pay by the due date by direct deposit.", 22, fill=MUTED)
    bsb = f"{rng.randint(10, 99):03d}-{rng.randint(0, 999):03d}"
    page.text(page.left, y, f"BSB {bsb}   Account {rng.randint(10000000, 99999999)}   Reference {sale.number}", 22,
              fill=MUTED)
    return page.finish()


def _service(rng: random.Random, sale: Sale, date_style: str) -> Image.Image:
    page = Page()
    s = sale.supplier
    accent = rng.choice(ACCENTS)
    page.box(0, 0, page.width, 170, fill=accent)
    page.text(page.left, 45, s.name, 36, fill=WHITE, bold=True)
    page.text(page.left, 100, f"{s.phone}  |  {s.email}", 22, fill=WHITE)
    page.text(page.right, 55, _title(sale).title(), 40, fill=WHITE, align="right", bold=True)

    y = page.lines(page.left, 200, [", ".join(s.address.lines), f"ABN: {show_abn(s.abn)}"], 22, fill=MUTED)
    top = y + 40
    y = page.text(page.left, top, "Invoice to", 24, bold=True, fill=accent)
    y = page.text(page.left, y + 4, sale.payer.name, 22)
    y = page.lines(page.left, y, sale.payer.address.lines, 22)
    middle = page.width // 2 + 80
    ry = page.text(middle, top, "Details", 24, bold=True, fill=accent)
    issued = show_date(sale.day, date_style)
    due_days = rng.choice((7, 14, 30))
    for line in (f"Invoice number  {sale.number}", f"Issued  {issued}", f"Terms  {due_days} days"):
        ry = page.text(middle, ry + 4, line, 22)

    qty_header = "Hours/Qty" if any(i.quantity != i.quantity.to_integral() for i in sale.items) else "Qty"
    columns = [Column("Description", 580), Column(qty_header, 140, "right"), Column("Rate", 170, "right"),
               Column("Total", page.right - page.left - 890, "right")]
    rows = [Row(cells) for cells in printed_items(sale.items)]
    y = table(page, page.left, max(y, ry) + 50, columns, rows, TableStyle(header_fill=accent, header_ink=WHITE))
    y = _totals(page, y + 20, sale, ex_gst=False)
    page.text(page.left, y + 60, f"Thank you for your business. Payment due within {due_days} days of issue.", 22,
              fill=MUTED)
    return page.finish()


def _totals(page: Page, y: int, sale: Sale, ex_gst: bool) -> int:
    """The totals block, right aligned under the table."""
    t = sale.totals
    label_x = page.right - 260
    if sale.gst_mode == "none":
        lines = [("Total", show_money(t.total), True)]
    elif ex_gst:
        lines = [("Subtotal", show_money(t.subtotal), False), ("GST (10%)", show_money(t.gst), False),
                 ("Total (AUD)", show_money(t.total), True)]
    else:
        lines = [("Total (incl. GST)", show_money(t.total), True), ("Includes GST of", show_money(t.gst), False)]
    for label, value, bold in lines:
        page.text(label_x, y, label, 24 if bold else 22, align="right", bold=bold, fill=INK)
        y = page.text(page.right - 10, y, value, 24 if bold else 22, align="right", bold=bold)
        y += 6
    if sale.gst_mode == "none":
        y = page.text(page.right - 10, y + 6, "No GST has been charged.", 22, align="right", fill=MUTED)
    return y
