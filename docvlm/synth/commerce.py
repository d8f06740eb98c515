"""What invoices and receipts share: a sale (supplier, payer, date, line items, GST) and its truth.

GST modes (10% GST, amounts rounded half up to the cent):
  added     line prices exclude GST; GST is added below the subtotal (tax invoices)
  included  line prices include GST; the GST share (total / 11) is shown (receipts, some invoices)
  none      the supplier charges no GST: no GST line; IS_GST_INCLUDED is false, GST_AMOUNT NOT_FOUND
IS_GST_INCLUDED therefore means "the total includes GST".
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from docvlm.synth import fake
from docvlm.synth.fmt import show_money, show_number

CENT = fake.CENT
GST_RATE = Decimal("0.10")
GST_MODES = ("added", "included", "none")


@dataclass(frozen=True)
class Product:
    description: str
    low: float  # unit price range, GST inclusive for receipts
    high: float
    max_qty: int = 3
    hours: bool = False  # quantity in half hours (1.5) rather than whole units


# Business trades and what they sell. Long descriptions wrap over several lines on the page.
INVOICE_TRADES: dict[str, tuple[Product, ...]] = {
    "Plumbing": (
        Product("Call-out fee", 80, 140, 1),
        Product("Labour", 95, 135, 6, hours=True),
        Product("Replace kitchen mixer tap including removal and disposal of old fittings", 180, 320, 1),
        Product("Hot water system service and pressure relief valve replacement", 220, 410, 1),
        Product("PVC pipe 100mm x 6m", 38, 65, 4),
        Product("Copper fittings assorted", 12, 40, 6),
    ),
    "IT Solutions": (
        Product("Managed IT services - monthly subscription (up to 10 users)", 450, 900, 1),
        Product("Microsoft 365 Business Standard licence (annual)", 180, 230, 8),
        Product("On-site technical support", 120, 165, 5, hours=True),
        Product("24 inch IPS monitor with height adjustable stand", 240, 390, 4),
        Product("Network switch 24-port gigabit supply, rack mounting and configuration", 380, 720, 1),
    ),
    "Printing": (
        Product("A5 flyers full colour double sided (pack of 1000)", 120, 260, 3),
        Product("Business cards 350gsm matt laminate (box of 250)", 45, 90, 4),
        Product("Pull-up banner 850 x 2000mm with carry bag", 160, 240, 2),
        Product("Graphic design and artwork preparation", 85, 120, 4, hours=True),
    ),
    "Landscaping": (
        Product("Fortnightly garden maintenance visit", 90, 180, 2),
        Product("Mulch supply and spread (cubic metre)", 75, 120, 6),
        Product("Hedge trimming along front boundary and removal of green waste", 220, 480, 1),
        Product("Irrigation repair and controller programming", 140, 260, 1),
    ),
    "Catering": (
        Product("Corporate lunch platter (serves 10)", 120, 190, 4),
        Product("Barista coffee cart hire - 3 hours including milk and cups", 350, 600, 1),
        Product("Seasonal fruit platter", 55, 90, 3),
        Product("Wait staff", 45, 65, 8, hours=True),
    ),
    "Electrical": (
        Product("Supply and install LED downlight", 65, 110, 12),
        Product("Switchboard upgrade including RCD safety switches and compliance certificate", 900, 1800, 1),
        Product("Test and tag portable appliances (per item)", 4, 9, 60),
        Product("Electrician labour", 98, 140, 6, hours=True),
    ),
}

RECEIPT_TRADES: dict[str, tuple[Product, ...]] = {
    "Fresh Market": (
        Product("Milk Full Cream 2L", 3, 4.5, 3),
        Product("Bread Wholemeal Sourdough 700g", 4.5, 7.5, 2),
        Product("Free Range Eggs 12 Pack 700g", 6, 9, 2),
        Product("Coffee Beans Dark Roast 1kg", 22, 38, 1),
        Product("Laundry Liquid Concentrate Sensitive Skin 2L", 12, 24, 2),
        Product("Greek Yoghurt Natural 1kg", 5, 8, 2),
    ),
    "Hardware": (
        Product("Treated pine 90x45 H3 2.4m", 9, 16, 8),
        Product("Batten screws 14g x 75mm (box of 100)", 18, 32, 2),
        Product("Interior paint low sheen white 4L", 55, 95, 2),
        Product("Masking tape 36mm x 50m", 4, 8, 4),
        Product("Cordless drill 18V brushless skin only", 99, 189, 1),
    ),
    "Espresso Bar": (
        Product("Flat White Large", 4.5, 6, 3),
        Product("Cappuccino Regular", 4.2, 5.5, 3),
        Product("Smashed Avocado on Sourdough with Feta and Poached Egg", 17, 24, 2),
        Product("Banana Bread Toasted", 5, 7.5, 2),
        Product("Orange Juice Fresh Squeezed", 6, 9, 2),
    ),
    "Pharmacy": (
        Product("Paracetamol 500mg Tablets 20", 3, 7, 2),
        Product("Sunscreen SPF50+ Sensitive 200ml", 12, 22, 2),
        Product("Vitamin D3 1000IU Capsules 250", 15, 30, 1),
        Product("Hand Sanitiser 500ml", 5, 9, 3),
    ),
    "Office Supplies": (
        Product("A4 copy paper 80gsm (ream of 500)", 6, 12, 5),
        Product("Ballpoint pens blue (box of 12)", 5, 11, 3),
        Product("Lever arch file foolscap black", 4, 8, 6),
        Product("Whiteboard markers assorted 4 pack", 6, 12, 2),
    ),
}


@dataclass(frozen=True)
class LineItem:
    description: str
    quantity: Decimal
    unit_price: Decimal

    @property
    def total(self) -> Decimal:
        return (self.quantity * self.unit_price).quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class Totals:
    subtotal: Decimal  # sum of line totals, as printed
    gst: Decimal | None  # None: no GST charged
    total: Decimal


@dataclass(frozen=True)
class Sale:
    supplier: fake.Party
    payer: fake.Party | None
    day: date
    number: str  # invoice / receipt number
    items: list[LineItem]
    gst_mode: str
    totals: Totals

    def truth(self, doc_type: str) -> dict[str, Any]:
        """Typed ground truth of the 14 invoice/receipt fields (see truth.py)."""
        payer = self.payer
        return {
            "DOCUMENT_TYPE": doc_type,
            "BUSINESS_ABN": self.supplier.abn,
            "SUPPLIER_NAME": self.supplier.name,
            "BUSINESS_ADDRESS": self.supplier.address.text if self.supplier.address else None,
            "PAYER_NAME": payer.name if payer else None,
            "PAYER_ADDRESS": payer.address.text if payer and payer.address else None,
            "INVOICE_DATE": self.day,
            "LINE_ITEM_DESCRIPTIONS": [item.description for item in self.items],
            "LINE_ITEM_QUANTITIES": [item.quantity for item in self.items],
            "LINE_ITEM_PRICES": [item.unit_price for item in self.items],
            "LINE_ITEM_TOTAL_PRICES": [item.total for item in self.items],
            "IS_GST_INCLUDED": self.totals.gst is not None,
            "GST_AMOUNT": self.totals.gst,
            "TOTAL_AMOUNT": self.totals.total,
        }


def printed_items(items: list[LineItem]) -> list[list[str]]:
    """Table cells of the line items: description, quantity, unit price, line total."""
    return [[i.description, show_number(i.quantity), show_money(i.unit_price), show_money(i.total)] for i in items]


def compute_totals(items: list[LineItem], gst_mode: str) -> Totals:
    subtotal = sum((item.total for item in items), Decimal("0.00"))
    if gst_mode == "added":
        gst = (subtotal * GST_RATE).quantize(CENT, ROUND_HALF_UP)
        return Totals(subtotal, gst, subtotal + gst)
    if gst_mode == "included":
        return Totals(subtotal, (subtotal / 11).quantize(CENT, ROUND_HALF_UP), subtotal)
    if gst_mode == "none":
        return Totals(subtotal, None, subtotal)
    raise ValueError(f"unknown GST mode {gst_mode!r}; known: {GST_MODES}")


def line_items(rng: random.Random, products: tuple[Product, ...], count: int) -> list[LineItem]:
    """`count` distinct products with random quantities and prices (count capped by the catalogue)."""
    chosen = rng.sample(products, min(count, len(products)))
    return [_line_item(rng, product) for product in chosen]


def _line_item(rng: random.Random, product: Product) -> LineItem:
    if product.hours:
        quantity = Decimal(rng.randint(2, product.max_qty * 2)) / 2
        price = fake.money(rng, product.low, product.high, endings=(0,))
    else:
        quantity = Decimal(rng.randint(1, product.max_qty))
        endings = (0, 50, 95, 99) if product.high >= 20 else ()
        price = fake.money(rng, product.low, product.high, endings)
    return LineItem(product.description, quantity, price)


def make_sale(rng: random.Random, trades: dict[str, tuple[Product, ...]], gst_mode: str,
              payer: fake.Party | None, items: tuple[int, int], number: str) -> Sale:
    """A sale by a random business of one of `trades` with between items[0] and items[1] lines."""
    trade = rng.choice(sorted(trades))
    supplier = fake.business(rng, trade)
    lines = line_items(rng, trades[trade], rng.randint(*items))
    return Sale(supplier, payer, fake.document_date(rng), number, lines, gst_mode, compute_totals(lines, gst_mode))


def pick_gst_mode(rng: random.Random, usual: str, none_share: float = 0.12) -> str:
    """`usual`, or (rarely) a supplier that charges no GST."""
    return "none" if rng.random() < none_share else usual
