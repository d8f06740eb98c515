"""The OCR engine's rules (conf/ocr/default.yaml) in a typed shape; patterns compiled once."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig

from docvlm.ocr.reader import ReaderSettings
from docvlm.paths import CONF_DIR, yaml_mapping

DEFAULT_RULES_PATH = CONF_DIR / "ocr" / "default.yaml"
ITEM_COLUMNS = ("description", "quantity", "price", "total")
# Amount label kinds, in the order a label is tried (conf/ocr/default.yaml `amounts`).
AMOUNT_KINDS = ("skip", "subtotal", "total_with_tax", "rounding", "tax_total", "gst", "due", "total")


@dataclass(frozen=True)
class OcrRules:
    reader: ReaderSettings
    row_overlap: float
    bank_min_roles: int
    bank_words: tuple[str, ...]
    bank_min_words: int
    receipt_words: tuple[str, ...]
    invoice_words: tuple[str, ...]
    invoice_titles: tuple[str, ...]
    titles: tuple[str, ...]
    supplier_rows: int
    abn_label: re.Pattern[str]
    abn_digits: int
    locality: re.Pattern[str]
    street: re.Pattern[str]
    postcodes: tuple[re.Pattern[str], ...]
    country_code: re.Pattern[str]
    street_words: re.Pattern[str]
    address_max_lines: int
    legal_forms: tuple[str, ...]
    supplier_strip: tuple[re.Pattern[str], ...]
    not_name: tuple[re.Pattern[str], ...]
    labels: dict[str, tuple[str, ...]]
    amounts: dict[str, tuple[re.Pattern[str], ...]]
    currencies: tuple[str, ...]
    rounding_max: float
    column_header_rows: int
    item_columns: dict[str, tuple[str, ...]]
    at_price: re.Pattern[str]
    derive_quantities: bool
    grounding_skip_kinds: tuple[str, ...]
    text_min_share: float
    list_min_share: float
    money_tolerance: float
    card_words: tuple[str, ...] = ()  # credit-card statement cues (detection.card_words)
    card_min_words: int = 2
    card_skip_rows: tuple[str, ...] = ()  # card table rows that are not transactions (detection.card_skip_rows)

    def label(self, name: str) -> tuple[str, ...]:
        return self.labels.get(name, ())


def load_ocr_rules(source: Mapping[str, Any] | DictConfig | str | Path | None = None) -> OcrRules:
    """Rules from a mapping (e.g. a Hydra node) or a YAML path; None loads conf/ocr/default.yaml.

    Raises ValueError naming the file and the problem.
    """
    raw, origin = yaml_mapping(source, DEFAULT_RULES_PATH, "OCR rules")
    try:
        rules = OcrRules(
            reader=_reader(raw.get("reader", {}), origin),
            row_overlap=float(raw["layout"]["row_overlap"]),
            bank_min_roles=int(raw["detection"]["bank_min_roles"]),
            bank_words=_words(raw["detection"]["bank_words"]),
            bank_min_words=int(raw["detection"]["bank_min_words"]),
            receipt_words=_words(raw["detection"]["receipt_words"]),
            invoice_words=_words(raw["detection"]["invoice_words"]),
            invoice_titles=_words(raw["detection"].get("invoice_titles", ())),
            titles=_words(raw["titles"]),
            supplier_rows=int(raw["supplier_rows"]),
            abn_label=_compile(raw["abn"]["label"], origin),
            abn_digits=int(raw["abn"]["digits"]),
            locality=_compile(raw["address"]["locality"], origin),
            street=_compile(raw["address"]["street"], origin),
            postcodes=tuple(_compile(p, origin, case=True) for p in raw["address"]["postcode"]),
            country_code=_compile(raw["address"]["country_code"], origin, case=True),
            street_words=_compile(raw["address"]["street_words"], origin),
            address_max_lines=int(raw["address"]["max_lines"]),
            legal_forms=_words(raw["supplier"]["legal_forms"]),
            supplier_strip=tuple(_compile(p, origin) for p in raw["supplier"]["strip"]),
            not_name=tuple(_compile(p, origin) for p in raw["supplier"]["not_name"]),
            labels={name: _words(words) for name, words in raw["labels"].items()},
            amounts={name: tuple(_compile(p, origin) for p in patterns) for name, patterns in raw["amounts"].items()},
            currencies=_words(raw["money"]["currencies"]),
            rounding_max=float(raw["money"]["rounding_max"]),
            column_header_rows=int(raw["money"]["column_header_rows"]),
            item_columns={name: _words(words) for name, words in raw["items"]["columns"].items()},
            at_price=_compile(raw["items"]["at_price"], origin),
            derive_quantities=bool(raw["items"]["derive_quantities"]),
            grounding_skip_kinds=tuple(raw["grounding"]["skip_kinds"]),
            text_min_share=float(raw["grounding"]["text_min_share"]),
            list_min_share=float(raw["grounding"]["list_min_share"]),
            money_tolerance=float(raw["grounding"]["money_tolerance"]),
            card_words=_words(raw["detection"].get("card_words", ())),
            card_min_words=int(raw["detection"].get("card_min_words", 2)),
            card_skip_rows=_words(raw["detection"].get("card_skip_rows", ())),
        )
    except KeyError as err:
        raise ValueError(f"{origin}: missing key {err}") from None
    _validate(rules, origin)
    return rules


def _reader(raw: Mapping[str, Any], origin: str) -> ReaderSettings:
    known = {f.name for f in fields(ReaderSettings)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{origin}: unknown reader settings {unknown}; known: {sorted(known)}")
    return ReaderSettings(**raw)


def _words(values: Any) -> tuple[str, ...]:
    return tuple(str(v).strip().lower() for v in values)


def _compile(pattern: str, origin: str, case: bool = False) -> re.Pattern[str]:
    """`case`: match case as written (postcodes: "SW1B 3BN" in capitals)."""
    try:
        return re.compile(pattern, 0 if case else re.IGNORECASE)
    except re.error as err:
        raise ValueError(f"{origin}: bad pattern {pattern!r}: {err}") from None


def _validate(rules: OcrRules, origin: str) -> None:
    missing = [c for c in ITEM_COLUMNS if c not in rules.item_columns]
    if missing:
        raise ValueError(f"{origin}: items.columns lacks {missing}")
    for name in AMOUNT_KINDS:
        if name not in rules.amounts:
            raise ValueError(f"{origin}: amounts lacks {name!r}")
    for name in ("payer", "invoice_date", "not_invoice_date", "period", "opening_balance", "no_gst"):
        if name not in rules.labels:
            raise ValueError(f"{origin}: labels lacks {name!r}")
    if not 0 < rules.row_overlap <= 1 or not 0 < rules.text_min_share <= 1 or not 0 < rules.list_min_share <= 1:
        raise ValueError(f"{origin}: row_overlap, text_min_share and list_min_share must be in (0, 1]")
    if {"qty", "price"} - set(rules.at_price.groupindex):
        raise ValueError(f"{origin}: items.at_price needs the named groups qty and price")
