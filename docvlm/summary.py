"""summary.json: what happened in this run, in numbers (counts, stage timings, throughput, config)."""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any, Collection, Optional

from docvlm.config import RunConfig
from docvlm.records import DocumentRecord


def build_summary(run_cfg: RunConfig, records: list[DocumentRecord], rank_stats: list[dict[str, Any]],
                  evaluation: Optional[dict[str, Any]], elapsed_s: float, gather_s: float, world: int,
                  snapshot: dict[str, Any], earlier: Collection[str] = ()) -> dict[str, Any]:
    """`earlier`: ids of the records an earlier run made (resume): not this run's stage timings."""
    processed = sum(s["documents"] for s in rank_stats)  # this run's work (resumed ones excluded)
    stages = _stages(rank_stats)
    if run_cfg.model.family == "ocr" and not stages:  # the OCR engine keeps no batch statistics
        done_before = set(earlier)
        stages = _ocr_stages([r for r in records if r.image not in done_before])
    return {
        "model": {"name": run_cfg.model.name, "family": run_cfg.model.family, "path": run_cfg.model.path},
        "world_size": world,
        "documents": len(records),
        "processed_this_run": processed,
        "ok": sum(r.ok for r in records),
        "errors": sum(not r.ok for r in records),
        "errors_by_kind": dict(Counter(r.error["kind"] for r in records if r.error)),
        "document_types": dict(Counter(r.document_type or "UNKNOWN" for r in records if r.ok)),
        "elapsed_s": round(elapsed_s, 3),
        "gather_s": round(gather_s, 4),
        "documents_per_s": round(processed / elapsed_s, 4) if elapsed_s > 0 else 0.0,
        "stages": stages,
        "ranks": [{k: v for k, v in s.items() if k != "stages"} for s in rank_stats],
        "ungrounded": _ungrounded(records),
        "evaluation": _headline(evaluation),
        "config": snapshot,
    }


def _stages(rank_stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Per stage: totals summed over ranks, batch statistics averaged over the ranks that ran it."""
    merged: dict[str, Any] = {}
    names = sorted({name for s in rank_stats for name in s.get("stages", {})})
    for name in names:
        per_rank = [s["stages"][name] for s in rank_stats if name in s.get("stages", {})]
        merged[name] = {
            "batches": sum(p["batches"] for p in per_rank),
            "documents": sum(p["documents"] for p in per_rank),
            "seconds_sum": round(sum(p["seconds"] for p in per_rank), 4),
            "prefill_s_sum": round(sum(p["prefill_s"] for p in per_rank), 4),
            "decode_s_sum": round(sum(p["decode_s"] for p in per_rank), 4),
            "new_tokens": sum(p["new_tokens"] for p in per_rank),
            "mean_batch_size_over_ranks": round(statistics.mean(p["mean_batch_size"] for p in per_rank), 3),
            "mean_seconds_over_ranks": round(statistics.mean(p["seconds"] for p in per_rank), 4),
        }
    return merged


def _ocr_stages(records: list[DocumentRecord]) -> dict[str, Any]:
    """model=ocr: one page at a time, so a stage's figures are sums over this run's records' timings:
    load (decode the file) and ocr (read the page + layout rules), with the ocr_* parts of the latter."""
    stages: dict[str, Any] = {}
    for name, key in (("load", "load_s"), ("ocr", "extract_s")):
        timed = [r for r in records if key in r.timings]
        if not timed:
            continue
        stage = {"batches": len(timed), "documents": len(timed),
                 "seconds_sum": round(sum(r.timings[key] for r in timed), 4), "mean_batch_size_over_ranks": 1.0}
        if name == "ocr":
            parts = sorted({k for r in timed for k in r.timings if k.startswith("ocr_")})
            stage.update({f"{k.removeprefix('ocr_')}_sum": round(sum(r.timings.get(k, 0.0) for r in timed), 4)
                          for k in parts})
        stages[name] = stage
    return stages


def _ungrounded(records: list[DocumentRecord]) -> Optional[dict[str, Any]]:
    """validation.grounding: how many documents and values the page did not back up, by field."""
    checked = [r for r in records if r.ungrounded_fields is not None]
    if not checked:
        return None
    by_field = Counter(f for r in checked for f in r.ungrounded_fields or [])
    return {"documents_checked": len(checked), "documents_flagged": sum(bool(r.ungrounded_fields) for r in checked),
            "values_flagged": sum(by_field.values()), "by_field": dict(by_field)}


def _headline(evaluation: Optional[dict[str, Any]]) -> Optional[dict[str, Any]]:
    if evaluation is None:
        return None
    return {k: evaluation[k] for k in ("overall", "documents_scored") if k in evaluation}
