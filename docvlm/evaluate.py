"""Scoring: field comparators, per-document scores, and the aggregate metrics of evaluation.json.

Every field is scored as matched items over predicted and true items (F1 = 2*matched / (n_pred + n_true)):
a scalar is a list of one item; NOT_FOUND is an item too, so NOT_FOUND on both sides is correct and on one
side only is wrong. Lists are compared position by position with the comparator of their items' kind.
Each document is scored on the fields of its TRUE type, so a misclassification costs what it should,
and only on the fields its ground truth labels (partial ground truth: an absent column or an empty cell
is not scored). docvlm/strict.py adds the strict comparisons real-document labels support.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Collection

from docvlm.ground_truth import TYPE_COLUMN, GroundTruth, Truth, load_ground_truth
from docvlm.normalize import normalize_fields, normalize_value, parse_money, split_list
from docvlm.outputs import atomic_write_text, read_results, write_json
from docvlm.schema import DocTypeSpec, FieldSpec, Schema, load_schema

NO_TYPE = "NONE"  # confusion-matrix label of a document without a predicted type (e.g. it failed)

DEFINITIONS = {
    "field_f1": "2*matched/(n_pred+n_true); items compared by the field kind's comparator; a scalar is one "
                "item; NOT_FOUND is an item (both sides = 1, one side = 0); lists compared by position",
    "document_f1": "mean field F1 over the fields of the document's TRUE type that its ground truth labels",
    "macro_f1": "per type: mean over its fields of the per-field mean F1; overall: mean over types",
    "micro_f1": "2*sum(matched)/(sum(n_pred)+sum(n_true)) over every field of every document",
    "ci95": "mean +- t(0.975, n-1)*SD/sqrt(n); null when n < 2; clipped to [0, 1] for F1 figures and "
            "at 0 for seconds",
    "n": "documents on which the field was scored: those whose ground truth labels it (an absent column "
         "or an empty cell is not labelled; NOT_FOUND is a label: the field does not apply)",
    "strict": "share of documents with the field exactly right: text equal after removing case, spaces and "
              "punctuation; money within 0.01; dates, ids, numbers, booleans and the type equal; lists item "
              "by item; NOT_FOUND on both sides is right",
    "similar": "text fields: share with edit similarity >= 0.8 (case, spaces and punctuation removed)",
    "bank_truth": "bank-statement truth restricted to debit rows (rows whose paid amount is not NOT_FOUND)",
    "throughput": "documents processed by this run / its elapsed wall time (records kept from an earlier "
                  "run are not counted), as summary.json's documents_per_s",
}
F1_RANGE = (0.0, 1.0)
SECONDS_RANGE = (0.0, None)


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


# ---------------------------------------------------------------- aggregates

_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)  # Student t, 97.5% quantile, df = 1..30


def _t975(df: int) -> float:
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964  # Cornish-Fisher expansion about the normal quantile; < 1e-4 off for df > 30
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def summarize(values: list[float], clip: tuple[float | None, float | None] = F1_RANGE) -> dict[str, Any]:
    """Mean, sample SD, 95% confidence interval of the mean (clipped to `clip`, None: open), median and n."""
    n = len(values)
    if n == 0:
        return {"mean": None, "sd": None, "ci95": None, "median": None, "n": 0}
    mean = statistics.fmean(values)
    if n < 2:
        return {"mean": mean, "sd": None, "ci95": None, "median": mean, "n": 1}
    sd = statistics.stdev(values)
    half = _t975(n - 1) * sd / math.sqrt(n)
    low, high = mean - half, mean + half
    if clip[0] is not None:
        low = max(clip[0], low)
    if clip[1] is not None:
        high = min(clip[1], high)
    return {"mean": mean, "sd": sd, "ci95": [low, high], "median": statistics.median(values), "n": n}


def _micro_f1(field_scores: list[FieldScore]) -> float | None:
    total = sum(s.n_pred + s.n_true for s in field_scores)
    return 2 * sum(s.matched for s in field_scores) / total if total else None


def _per_type(scores: list[DocumentScore], schema: Schema) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per scored field (mean, SD, CI, n) and per type (macro/micro F1, document F1) for each true type."""
    per_field: dict[str, Any] = {}
    per_type: dict[str, Any] = {}
    for doc_type, spec in schema.types.items():
        docs = [s for s in scores if s.true_type == doc_type]
        if not docs:
            continue
        per_field[doc_type] = {f: summarize([d.fields[f].f1 for d in docs if f in d.fields])
                               for f in spec.field_names if any(f in d.fields for d in docs)}
        doc_f1 = summarize([d.f1 for d in docs])
        per_type[doc_type] = {
            "documents": len(docs),
            "macro_f1": statistics.fmean(v["mean"] for v in per_field[doc_type].values()),
            "micro_f1": _micro_f1([fs for d in docs for fs in d.fields.values()]),
            "document_f1_mean": doc_f1["mean"],
            "document_f1_median": doc_f1["median"],
        }
    return per_field, per_type


def _overall(scores: list[DocumentScore], per_type: dict[str, Any]) -> dict[str, Any]:
    doc_f1 = summarize([s.f1 for s in scores])
    correct_type = sum(s.true_type == s.predicted_type for s in scores)
    return {
        "documents": len(scores),
        "macro_f1": statistics.fmean(t["macro_f1"] for t in per_type.values()) if per_type else None,
        "micro_f1": _micro_f1([fs for s in scores for fs in s.fields.values()]),
        "document_f1_mean": doc_f1["mean"],
        "document_f1_median": doc_f1["median"],
        "document_f1_ci95": doc_f1["ci95"],
        "type_accuracy": correct_type / len(scores) if scores else None,
    }


def confusion_matrix(scores: list[DocumentScore], schema: Schema) -> dict[str, Any]:
    """Rows: true type; columns: predicted type (schema types, then any other label, then NONE)."""
    labels = list(schema.types)
    predicted = [s.predicted_type or NO_TYPE for s in scores]
    extra = sorted({p for p in predicted if p not in labels and p != NO_TYPE})
    columns = labels + extra + ([NO_TYPE] if NO_TYPE in predicted else [])
    matrix = [[0] * len(columns) for _ in labels]
    for s, p in zip(scores, predicted):
        matrix[labels.index(s.true_type)][columns.index(p)] += 1
    return {"true": labels, "predicted": columns, "matrix": matrix}


def scored_fields(scores: list[DocumentScore], schema: Schema) -> dict[str, Any]:
    """Per true type: documents, fields scored (with how many documents each) and fields never labelled."""
    out: dict[str, Any] = {}
    for doc_type, spec in schema.types.items():
        docs = [s for s in scores if s.true_type == doc_type]
        if docs:
            counts = {f: sum(f in d.fields for d in docs) for f in spec.field_names}
            out[doc_type] = {"documents": len(docs), "scored": {f: n for f, n in counts.items() if n},
                             "not_labelled": [f for f, n in counts.items() if not n]}
    return out


def is_partial(fields: dict[str, Any]) -> bool:
    """True when some field of a scored type was not labelled on every document of that type."""
    return any(n < t["documents"] or t["not_labelled"] for t in fields.values() for n in t["scored"].values())


def times_by_type(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """timings.total_s of each record by PREDICTED type (the type decides the work the pipeline did)."""
    times: dict[str, list[float]] = {}
    for r in records:
        total = (r.get("timings") or {}).get("total_s")
        if total is not None:
            times.setdefault(r.get("document_type") or NO_TYPE, []).append(float(total))
    return dict(sorted(times.items()))


def throughput(records: list[dict[str, Any]], elapsed_s: float | None, processed: int | None = None) -> dict[str, Any]:
    """Documents this run processed per second of its wall time, and per-document time by predicted type.

    `processed`: the documents this run did itself (records kept from an earlier run excluded: a resume
    that did nothing processed 0 documents, whatever its wall time); None: every record.
    """
    processed = len(records) if processed is None else processed
    rate = processed / elapsed_s if elapsed_s else None
    return {
        "documents": len(records),
        "processed_this_run": processed,
        "elapsed_s": elapsed_s,
        "docs_per_s": rate,
        "docs_per_min": rate * 60 if rate is not None else None,
        "time_per_document_s": {t: summarize(v, SECONDS_RANGE) for t, v in times_by_type(records).items()},
    }


def evaluate(records: list[dict[str, Any]], truth: GroundTruth, schema: Schema, elapsed_s: float | None = None,
             processed: int | None = None, model: str | None = None, random_weights: bool = False) -> dict[str, Any]:
    """The content of evaluation.json; also stores each document's score in record["evaluation"].

    `processed`: documents this run processed itself (see `throughput`); `model` and `random_weights`
    name the model that answered (a model with random weights gives meaningless answers: the report says so).
    """
    from docvlm.strict import strict_from_scores  # here: strict builds on this module's comparators

    scores: list[DocumentScore] = []
    without_truth: list[str] = []
    matched_keys: set[str] = set()
    for record in records:
        key = truth.match(record.get("image", ""))
        if key is None:
            without_truth.append(record.get("image", ""))
            record["evaluation"] = None
            continue
        matched_keys.add(key)
        score = score_document(record, truth[key], schema)
        record["evaluation"] = score.to_dict()
        scores.append(score)
    per_field, per_type = _per_type(scores, schema)
    fields = scored_fields(scores, schema)
    errors = [r.get("image", "") for r in records if r.get("error")]
    return {
        "ground_truth": str(truth.path),
        "model": {"name": model, "random_weights": random_weights} if model else None,
        "documents_scored": len(scores),
        "ground_truth_partial": is_partial(fields),
        "scored_fields": fields,
        "overall": _overall(scores, per_type),
        "per_field": per_field,
        "strict": strict_from_scores(scores, schema),
        "per_type": per_type,
        "confusion_matrix": confusion_matrix(scores, schema),
        "throughput": throughput(records, elapsed_s, processed),
        "documents": [{"image": s.image, "true_type": s.true_type, "predicted_type": s.predicted_type,
                       "f1": s.f1} for s in scores],
        "documents_without_ground_truth": without_truth,
        "ground_truth_without_results": [k for k in truth if k not in matched_keys],
        "documents_with_errors": errors,
        "comparators": schema.comparators,
        "definitions": DEFINITIONS,
    }


def main(results_path: str | Path, ground_truth: str | Path, out_dir: str | Path,
         schema: Schema | None = None, elapsed_s: float | None = None) -> dict[str, Any]:
    """Evaluate an existing results.jsonl: writes evaluation.json, report.md, plots/ and the results
    with per-document scores (results.jsonl) into out_dir. Returns the evaluation.

    The run's wall time, documents processed and model are read from the summary.json beside the
    results, if any (`elapsed_s` overrides the wall time).
    """
    from docvlm.report import write_report  # here, not at the top: report imports this module

    schema = schema or load_schema()
    truth = load_ground_truth(ground_truth, schema)  # fails on a bad file before anything is written
    results_path = Path(results_path)
    if not results_path.is_file():
        raise ValueError(f"results file not found: {results_path}")
    records = read_results(results_path)
    truth.check_documents([r.get("image", "") for r in records], str(results_path))
    run = _summary_facts(results_path.parent / "summary.json")
    if elapsed_s is not None:
        run["elapsed_s"] = elapsed_s
    evaluation = evaluate(records, truth, schema, **run)
    out = Path(out_dir)
    write_json(out / "evaluation.json", evaluation)
    atomic_write_text(out / "results.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    write_report(evaluation, records, out)
    return evaluation


def _summary_facts(path: Path) -> dict[str, Any]:
    """evaluate()'s run arguments from a run's summary.json; {} without a readable one (throughput is
    then reported as unknown, not guessed)."""
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
        facts: dict[str, Any] = {"elapsed_s": float(summary["elapsed_s"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if isinstance(summary.get("processed_this_run"), int):
        facts["processed"] = summary["processed_this_run"]
    model = (summary.get("config") or {}).get("model") or {}
    if model.get("name"):
        facts["model"] = model["name"]
        facts["random_weights"] = bool(model.get("tiny") or model.get("random_weights"))
    return facts
