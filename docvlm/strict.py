"""Strict per-field accuracy: the comparisons that labels of real documents support.

The project's comparators (docvlm/scoring.py) give partial credit (text by edit similarity above 0.5,
money within 1%). Figures on real documents are quoted strictly, as an independent evaluation scores them:

  text (names, addresses)  "strict": equal after removing case, spaces and punctuation;
                           "similar": edit similarity >= 0.8 (case and punctuation removed, spaces kept)
  money                    within 0.01
  date, date range, id, number, boolean, document type: equal after the one normaliser
  lists                    the same number of items, each right by its kind

NOT_FOUND is a value: right when both sides say it. Only fields the ground truth labels are scored.
The accuracy script calls `strict_accuracy(records, truth, schema)`; evaluation.json holds the same
figures under "strict".
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from docvlm.scoring import COMPARATORS, DocumentScore, FieldScore, items_of, levenshtein, score_document
from docvlm.ground_truth import GroundTruth
from docvlm.normalize import parse_money
from docvlm.schema import FieldSpec, Schema

MONEY_TOLERANCE = 0.01  # the metric's definition, not a tunable rule
SIMILARITY_THRESHOLD = 0.8


@dataclass(frozen=True)
class StrictField:
    strict: bool
    similar: bool | None  # text fields only


def _words(text: str) -> str:
    """Lower case, punctuation turned into spaces, spaces collapsed: "AEON CO. (M)" -> "aeon co m"."""
    return " ".join("".join(c if c.isalnum() else " " for c in text.casefold()).split())


def _letters(text: str) -> str:
    return _words(text).replace(" ", "")


def similarity(pred: str, true: str) -> float:
    """1 - edit distance / longer length, on `_words` of both."""
    p, t = _words(pred), _words(true)
    return 1.0 if p == t else 1.0 - levenshtein(p, t) / max(len(p), len(t))


def strict_item(pred: str, true: str, kind: str, schema: Schema) -> bool:
    """One normalised item exactly right by its kind."""
    if pred == schema.not_found or true == schema.not_found:
        return pred == true
    if kind == "text":
        return _letters(pred) == _letters(true)
    if kind == "money":
        p, t = parse_money(pred), parse_money(true)
        if p is not None and t is not None:
            return abs(p - t) <= MONEY_TOLERANCE + 1e-9  # exactly one cent off is within, despite float error
    return COMPARATORS[kind](pred, true, schema.comparators.get(kind, {})) == 1.0  # all-or-nothing kinds


def similar_item(pred: str, true: str, schema: Schema) -> bool:
    if pred == schema.not_found or true == schema.not_found:
        return pred == true
    return _letters(pred) == _letters(true) or similarity(pred, true) >= SIMILARITY_THRESHOLD


def strict_field(score: FieldScore, spec: FieldSpec, schema: Schema) -> StrictField:
    """A scored field (normalised prediction and truth) judged strictly; lists item by item."""
    pred = items_of(score.predicted, schema) if spec.is_list else [score.predicted]
    true = items_of(score.truth, schema) if spec.is_list else [score.truth]
    same_length = len(pred) == len(true)
    strict = same_length and all(strict_item(p, t, spec.kind, schema) for p, t in zip(pred, true))
    similar = None
    if spec.kind == "text":
        similar = same_length and all(similar_item(p, t, schema) for p, t in zip(pred, true))
    return StrictField(strict, similar)


def strict_document(score: DocumentScore, schema: Schema) -> dict[str, StrictField]:
    """Each scored field of one document, judged strictly."""
    return {name: strict_field(fs, schema.fields[name], schema) for name, fs in score.fields.items()}


def strict_from_scores(scores: list[DocumentScore], schema: Schema) -> dict[str, dict[str, dict[str, Any]]]:
    """Per true type, per scored field: n, strict (share right), similar (text fields) and the project's
    mean field F1 on the same documents."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    judged = [(s, strict_document(s, schema)) for s in scores]
    for doc_type, spec in schema.types.items():
        rows = {}
        for f in spec.fields:
            pairs = [(s.fields[f.name], j[f.name]) for s, j in judged if s.true_type == doc_type and f.name in j]
            if pairs:
                rows[f.name] = _field_row([p for p, _ in pairs], [j for _, j in pairs])
        if rows:
            out[doc_type] = rows
    return out


def _field_row(scores: list[FieldScore], judged: list[StrictField]) -> dict[str, Any]:
    n = len(judged)
    strict = sum(j.strict for j in judged)
    similar = None if judged[0].similar is None else sum(bool(j.similar) for j in judged)
    return {"n": n, "strict": strict / n, "strict_correct": strict,
            "similar": None if similar is None else similar / n, "similar_correct": similar,
            "project_f1": statistics.fmean(s.f1 for s in scores)}


def strict_accuracy(records: list[dict[str, Any]], truth: GroundTruth,
                    schema: Schema) -> dict[str, dict[str, dict[str, Any]]]:
    """Per-field strict accuracy with n of result records against ground truth (records are not changed).

    Records without a ground-truth row are left out; a failed record is scored like an empty answer.
    """
    scores = []
    for record in records:
        key = truth.match(record.get("image", ""), warn=False)
        if key is not None:
            scores.append(score_document(record, truth[key], schema))
    return strict_from_scores(scores, schema)
