"""Scoring one document: the field comparators and per-field, per-document F1.

Every field is scored as matched items over predicted and true items (F1 = 2*matched / (n_pred + n_true)):
a scalar is a list of one item; NOT_FOUND is an item too, so NOT_FOUND on both sides is correct and on one
side only is wrong. Lists are compared position by position with the comparator of their items' kind.
Each document is scored on the fields of its TRUE type, so a misclassification costs what it should,
and only on the fields its ground truth labels (partial ground truth: an absent column or an empty cell
is not scored). The aggregates are docvlm/evaluate.py's; docvlm/strict.py judges the same scores strictly.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any, Callable, Collection

from docvlm.ground_truth import TYPE_COLUMN, Truth
from docvlm.normalize import normalize_fields, normalize_value, parse_money, split_list
from docvlm.schema import DocTypeSpec, FieldSpec, Schema


# ---------------------------------------------------------------- comparators (normalised strings in)

def _date(value: str) -> date | None:
    try:
        return datetime.strptime(value.strip(), "%d/%m/%Y").date()
    except ValueError:
        return None


def _same(pred: str, true: str) -> float:
    return float(pred.strip().casefold() == true.strip().casefold())


def compare_money(pred: str, true: str, settings: dict[str, Any]) -> float:
    p, t = parse_money(pred), parse_money(true)
    if p is None or t is None:
        return _same(pred, true)
    diff = abs(p - t)
    # a tiny epsilon so that exactly one cent off counts as within the 0.01 tolerance despite float error
    return float(diff <= settings["abs_tolerance"] + 1e-9 or diff <= settings["rel_tolerance"] * abs(t))


def compare_number(pred: str, true: str, settings: dict[str, Any]) -> float:
    try:
        return float(math.isclose(float(pred), float(true), rel_tol=1e-9, abs_tol=1e-9))
    except ValueError:
        return _same(pred, true)


def compare_date(pred: str, true: str, settings: dict[str, Any]) -> float:
    p, t = _date(pred), _date(true)
    return float(p == t) if p and t else _same(pred, true)


def compare_date_range(pred: str, true: str, settings: dict[str, Any]) -> float:
    p_ends, t_ends = pred.split(" - "), true.split(" - ")
    if len(p_ends) != 2 or len(t_ends) != 2:
        return _same(pred, true)
    return float(all(compare_date(p, t, settings) == 1.0 for p, t in zip(p_ends, t_ends)))


def compare_id(pred: str, true: str, settings: dict[str, Any]) -> float:
    p, t = re.sub(r"\D", "", pred), re.sub(r"\D", "", true)
    return float(p == t) if p and t else _same(pred, true)


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def text_similarity(pred: str, true: str) -> float:
    """1 - normalised edit distance, on lower-cased, whitespace-collapsed text (as in ANLS)."""
    p, t = " ".join(pred.casefold().split()), " ".join(true.casefold().split())
    if p == t:
        return 1.0
    return 1.0 - levenshtein(p, t) / max(len(p), len(t))


def compare_text(pred: str, true: str, settings: dict[str, Any]) -> float:
    similarity = text_similarity(pred, true)
    return similarity if similarity >= settings["threshold"] else 0.0


SETTINGS_NEEDED = {"money": ("abs_tolerance", "rel_tolerance"), "text": ("threshold",)}  # from schema.comparators

COMPARATORS: dict[str, Callable[[str, str, dict[str, Any]], float]] = {
    "money": compare_money,
    "number": compare_number,
    "date": compare_date,
    "date_range": compare_date_range,
    "id": compare_id,
    "boolean": lambda p, t, s: _same(p, t),
    "doc_type": lambda p, t, s: _same(p, t),
    "text": compare_text,
}


def check_comparator_settings(schema: Schema) -> None:
    """The comparators' tolerances live in the schema YAML (`comparators:`): fail clearly if one is missing."""
    for kind, keys in SETTINGS_NEEDED.items():
        missing = [k for k in keys if k not in schema.comparators.get(kind, {})]
        if missing:
            raise ValueError(f"schema: comparators.{kind} needs {', '.join(missing)}")


def compare_item(pred: str, true: str, kind: str, schema: Schema) -> float:
    """Score one normalised item in [0, 1]: NOT_FOUND rules first, then the kind's comparator."""
    pred_missing, true_missing = pred == schema.not_found, true == schema.not_found
    if pred_missing or true_missing:
        return float(pred_missing and true_missing)
    return COMPARATORS[kind](pred, true, schema.comparators.get(kind, {}))


# ---------------------------------------------------------------- one field, one document

@dataclass
class FieldScore:
    f1: float
    matched: float  # sum of item scores (the "true positives")
    n_pred: int
    n_true: int
    predicted: str
    truth: str


@dataclass
class DocumentScore:
    image: str
    true_type: str
    predicted_type: str | None
    fields: dict[str, FieldScore]

    @property
    def f1(self) -> float:
        return statistics.fmean(s.f1 for s in self.fields.values())

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "true_type": self.true_type, "predicted_type": self.predicted_type,
                "f1": self.f1, "fields": {name: asdict(s) for name, s in self.fields.items()}}


def items_of(value: str, schema: Schema) -> list[str]:
    """A normalised list value as items; a whole-list NOT_FOUND is one NOT_FOUND item."""
    if value == schema.not_found:
        return [value]
    return split_list(value, schema) or [schema.not_found]


def score_field(pred: str, true: str, spec: FieldSpec, schema: Schema) -> FieldScore:
    """Position-aware F1 of one normalised field (a scalar is a list of one item)."""
    pred_items = items_of(pred, schema) if spec.is_list else [pred]
    true_items = items_of(true, schema) if spec.is_list else [true]
    matched = sum(compare_item(p, t, spec.kind, schema) for p, t in zip(pred_items, true_items))
    f1 = 2 * matched / (len(pred_items) + len(true_items))
    return FieldScore(f1, matched, len(pred_items), len(true_items), pred, true)


def restrict_to_debit_rows(fields: dict[str, str], spec: DocTypeSpec, schema: Schema,
                           labelled: Collection[str] | None = None) -> dict[str, str]:
    """Bank truth lists every transaction, with the paid amount NOT_FOUND on credit rows; the pipeline
    extracts debits only, so keep the debit rows of every list field (normalised values in and out).

    The row filter is the type's money list (the amounts paid); types of another flow, and truth that
    does not label the amounts (`labelled`: the fields it labels), are returned as is.
    """
    amounts = [f for f in spec.fields if f.is_list and f.kind == "money"]
    if spec.flow != "bank" or len(amounts) != 1 or (labelled is not None and amounts[0].name not in labelled):
        return fields
    paid = items_of(fields[amounts[0].name], schema)
    keep = [i for i, amount in enumerate(paid) if amount != schema.not_found]
    restricted = dict(fields)
    for f in spec.fields:
        if f.is_list and fields[f.name] != schema.not_found:
            items = split_list(fields[f.name], schema)
            kept = [items[i] for i in keep if i < len(items)]
            restricted[f.name] = schema.list_separator.join(kept) if kept else schema.not_found
    if not keep:
        restricted[amounts[0].name] = schema.not_found
    return restricted


def score_document(record: dict[str, Any], truth: Truth, schema: Schema) -> DocumentScore:
    """Score a result record on the fields of its TRUE type that `truth` labels (a field absent from
    `truth` is not scored); prediction and truth share one normaliser."""
    check_comparator_settings(schema)
    spec = schema.type_spec(normalize_value(truth[TYPE_COLUMN], "doc_type", schema))
    predicted = dict(record.get("fields") or {})
    predicted.setdefault(TYPE_COLUMN, record.get("document_type") or schema.not_found)
    pred_norm = normalize_fields(predicted, spec, schema)
    true_norm = restrict_to_debit_rows(normalize_fields(truth, spec, schema), spec, schema, labelled=truth)
    scores = {f.name: score_field(pred_norm[f.name], true_norm[f.name], f, schema)
              for f in spec.fields if f.name in truth}  # DOCUMENT_TYPE always is
    return DocumentScore(record.get("image", ""), spec.name, record.get("document_type"), scores)
