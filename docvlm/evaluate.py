"""Evaluation: the aggregate metrics of evaluation.json over per-document scores (docvlm/scoring.py),
their strict counterpart (docvlm/strict.py), and `main`, which evaluates an existing results file.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from docvlm.ground_truth import GroundTruth, load_ground_truth
from docvlm.outputs import atomic_write_text, read_results, write_json
from docvlm.report import write_report
from docvlm.schema import Schema, load_schema
from docvlm.scoring import DocumentScore, FieldScore, score_document
from docvlm.strict import strict_from_scores
from docvlm.timings import NO_TYPE, times_by_type

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
