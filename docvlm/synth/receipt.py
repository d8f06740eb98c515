"""Synthetic receipts: every one shows that it was paid (PAID, EFTPOS/card, cash tendered/change).

Layouts:
  thermal      A narrow (640 px) till slip: centred store name, address and ABN, a title that may
               read "TAX INVOICE" (as Australian till slips often do), date and time, each item as
               its (wrapped) description then "2 @ $3.10" and the line total, TOTAL, "GST included
               in total", then the payment: EFTPOS/card with an approval line, or cash with
               tendered and change. No payer.
  tax_receipt  An A4 "Tax Receipt" with letterhead, a rotated PAID stamp, "Received from" the
               payer, a table Description | Qty | Price | Total (prices include GST), the total
               paid with its GST, and the payment method.
Prices include GST; a few suppliers charge no GST (no GST line at all).
"""

from __future__ import annotations

import random
from decimal import Decimal

from PIL import Image, ImageDraw

from docvlm.synth import fake
from docvlm.synth.commerce import RECEIPT_TRADES, Sale, make_sale, pick_gst_mode, printed_items
from docvlm.synth.document import SynthDoc
from docvlm.synth.draw import MUTED, Column, Page, Row, font, table, wrap
from docvlm.synth.fmt import DATE_STYLES, show_abn, show_date, show_money, show_number

LAYOUTS = ("thermal", "tax_receipt")
THERMAL_WIDTH = 640
CARDS = ("VISA", "MASTERCARD", "EFTPOS SAV", "EFTPOS CHQ", "AMEX")
STAMP_RED = (200, 30, 30)


def make_receipt(rng: random.Random, layout: str) -> SynthDoc:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown receipt layout {layout!r}; known: {LAYOUTS}")
    gst_mode = pick_gst_mode(rng, "included")
    if layout == "thermal":
        sale = make_sale(rng, RECEIPT_TRADES, gst_mode, None, items=(2, 6), number=f"{rng.randint(1000, 999999)}")
        image = _thermal(rng, sale)
    else:
        payer = fake.customer(rng)
        if rng.random() < 0.3:
            payer = fake.Party(payer.name, None)  # name only
        sale = make_sale(rng, RECEIPT_TRADES, gst_mode, payer, items=(1, 4), number=f"R-{rng.randint(1000, 99999)}")
        image = _tax_receipt(rng, sale)
    return SynthDoc("RECEIPT", layout, [image], sale.truth("RECEIPT"))


def _payment_lines(rng: random.Random, total: Decimal) -> list[tuple[str, str]]:
    """(label, value) lines showing how the sale was paid."""
    if rng.random() < 0.35:
        step = rng.choice((5, 10, 20, 50))
        tendered = Decimal((int(total) // step + 1) * step)
        return [("CASH TENDERED", show_money(tendered)), ("CHANGE", show_money(tendered - total))]
    card = rng.choice(CARDS)
    return [(f"{card} ****{rng.randint(1000, 9999)}", show_money(total)),
            ("APPROVED", f"AUTH {rng.randint(100000, 999999)}")]


def _thermal(rng: random.Random, sale: Sale) -> Image.Image:
    page = Page(THERMAL_WIDTH, min_height=0, margin=36)
    s, mid, size = sale.supplier, THERMAL_WIDTH // 2, 22
    y = 40
    for line in wrap(s.name.upper(), 28, page.right - page.left):
        y = page.text(mid, y, line, 28, align="center", bold=True)
    y = page.lines(mid, y + 4, s.address.lines + [f"ABN {show_abn(s.abn)}", f"Ph {s.phone}"], size, align="center")
    title = "RECEIPT" if sale.gst_mode == "none" else rng.choice(("TAX INVOICE", "TAX RECEIPT", "RECEIPT"))
    y = page.text(mid, y + 14, title, 26, align="center", bold=True)
    y = page.dashed(y + 10) + 12
    stamp = f"{show_date(sale.day, rng.choice(sorted(DATE_STYLES)))} {rng.randint(7, 21):02d}:{rng.randint(0, 59):02d}"
    y = page.text(page.left, y, stamp, size)
    y = page.text(page.left, y, f"Trans {sale.number}  Reg {rng.randint(1, 9)}", size, fill=MUTED)
    y = page.dashed(y + 8) + 12
    for item in sale.items:
        y = page.lines(page.left, y, wrap(item.description, size, page.right - page.left), size)
        page.text(page.left + 30, y, f"{show_number(item.quantity)} @ {show_money(item.unit_price)}", size)
        y = page.text(page.right, y, show_money(item.total), size, align="right") + 6
    y = page.dashed(y + 4) + 12
    page.text(page.left, y, "TOTAL", 28, bold=True)
    y = page.text(page.right, y, show_money(sale.totals.total), 28, align="right", bold=True)
    if sale.totals.gst is not None:
        page.text(page.left, y, "GST INCLUDED IN TOTAL", size)
        y = page.text(page.right, y, show_money(sale.totals.gst), size, align="right")
    y += 10
    for label, value in _payment_lines(rng, sale.totals.total):
        page.text(page.left, y, label, size)
        y = page.text(page.right, y, value, size, align="right")
    y = page.dashed(y + 10) + 14
    page.text(mid, y, "Thank you for shopping with us!", size, align="center")
    return page.finish()


def _tax_receipt(rng: random.Random, sale: Sale) -> Image.Image:
    page = Page()
    s = sale.supplier
    y = page.text(page.left, 80, s.name, 34, bold=True)
    y = page.lines(page.left, y + 6, s.address.lines + [f"ABN {show_abn(s.abn)}", f"Phone {s.phone}"], 22,
                   fill=MUTED)
    title = "RECEIPT" if sale.gst_mode == "none" else "TAX RECEIPT"
    ry = page.text(page.right, 80, title, 40, align="right", bold=True)
    ry = page.text(page.right, ry + 10, f"Receipt No: {sale.number}", 22, align="right")
    ry = page.text(page.right, ry + 4, f"Date paid: {show_date(sale.day, rng.choice(sorted(DATE_STYLES)))}", 22,
                   align="right")
    _stamp(page, page.right - 330, ry + 30, "PAID", rng.uniform(-14, -6))

    y = page.text(page.left, max(y, ry) + 50, "Received from:", 24, bold=True)
    y = page.text(page.left, y + 4, sale.payer.name, 22)
    if sale.payer.address:
        y = page.lines(page.left, y, sale.payer.address.lines, 22)

    columns = [Column("Description", 600), Column("Qty", 110, "right"), Column("Price", 180, "right"),
               Column("Total", page.right - page.left - 890, "right")]
    rows = [Row(cells) for cells in printed_items(sale.items)]
    y = table(page, page.left, y + 90, columns, rows)
    label_x = page.right - 260
    page.text(label_x, y + 20, "Total paid", 24, align="right", bold=True)
    y = page.text(page.right - 10, y + 20, show_money(sale.totals.total), 24, align="right", bold=True)
    if sale.totals.gst is not None:
        page.text(label_x, y + 6, "GST included", 22, align="right")
        y = page.text(page.right - 10, y + 6, show_money(sale.totals.gst), 22, align="right")
    y += 50
    for label, value in _payment_lines(rng, sale.totals.total):
        y = page.text(page.left, y, f"{label}: {value}", 22)
    page.text(page.left, y + 40, "Thank you. This receipt confirms payment in full.", 22, fill=MUTED)
    return page.finish()


def _stamp(page: Page, x: int, y: int, text: str, angle: float) -> None:
    """A rotated red rubber stamp (boxed text) pasted onto the page."""
    size, pad = 56, 18
    width = round(font(size).getlength(text)) + 2 * pad
    height = size + 2 * pad
    layer = Image.new("RGBA", (width + 8, height + 8), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.rectangle([2, 2, width + 4, height + 4], outline=STAMP_RED + (255,), width=5)
    draw.text((pad + 4, pad - 2), text, font=font(size), fill=STAMP_RED + (255,), stroke_width=1,
              stroke_fill=STAMP_RED + (255,))
    rotated = layer.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True)
    page.image.paste(rotated, (x, y), rotated)
    page.bottom = max(page.bottom, y + rotated.height)
