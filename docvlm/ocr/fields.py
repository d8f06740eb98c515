"""The fields of an invoice or receipt page, assembled from the rules of sale.py and items.py."""

from __future__ import annotations

from typing import Any

from docvlm.normalize import normalize_fields
from docvlm.ocr.items import derive_quantities, read_items
from docvlm.ocr.page import Page, has_phrase
from docvlm.ocr.rules import OcrRules
from docvlm.ocr import parties, sale
from docvlm.schema import DocTypeSpec, Schema


def read_sale(page: Page, spec: DocTypeSpec, rules: OcrRules, schema: Schema) -> tuple[dict[str, str], dict[str, Any]]:
    """Normalised fields of `spec` (INVOICE or RECEIPT) and how they were found."""
    payer, payer_block = parties.find_payer(page, rules)
    supplier, supplier_lines = parties.read_supplier(page, rules, schema, payer=payer_block)
    amounts = sale.find_amounts(page, rules)
    total, gst = sale.total_and_gst(amounts, rules)
    items, item_shape = read_items(page, rules)
    derived = derive_quantities(items) if rules.derive_quantities else 0
    no_gst = has_phrase(page.text, rules.label("no_gst"))
    gst_included = gst is not None and gst != 0 and not no_gst
    # "false" needs evidence too: a total without GST, or a no-GST note (a blank page says nothing)
    gst_flag = "true" if gst_included else ("false" if total is not None or no_gst else None)
    sep = schema.list_separator
    raw = {
        "DOCUMENT_TYPE": spec.name,
        "BUSINESS_ABN": sale.find_abn(page, rules),
        "SUPPLIER_NAME": supplier,
        "BUSINESS_ADDRESS": parties.supplier_address(page, rules, schema, skip=payer_block, supplier=supplier_lines),
        "PAYER_NAME": payer,
        "PAYER_ADDRESS": parties.address_from(payer_block, rules),
        "INVOICE_DATE": sale.find_document_date(page, rules, schema),
        "LINE_ITEM_DESCRIPTIONS": sep.join(" ".join(i.description).rstrip(" :") or schema.not_found for i in items),
        "LINE_ITEM_QUANTITIES": sep.join(i.quantity or schema.not_found for i in items),
        "LINE_ITEM_PRICES": sep.join(i.price or schema.not_found for i in items),
        "LINE_ITEM_TOTAL_PRICES": sep.join(i.total or schema.not_found for i in items),
        "IS_GST_INCLUDED": gst_flag,
        "GST_AMOUNT": str(gst) if gst is not None and not no_gst else None,  # "0.00" on a tax-exempt invoice
        "TOTAL_AMOUNT": str(total) if total is not None else None,
    }
    details = {"items": item_shape, "derived_quantities": derived, "amounts": [vars(a) for a in amounts],
               "supplier_lines": [line.text for line in supplier_lines]}
    return normalize_fields({k: v for k, v in raw.items() if k in spec.field_names}, spec, schema), details
