"""Per-document times of result records by predicted type: evaluation.json's throughput and the
report's time plot read the same grouping."""

from __future__ import annotations

from typing import Any

NO_TYPE = "NONE"  # the label of a document without a predicted type (e.g. it failed)


def times_by_type(records: list[dict[str, Any]]) -> dict[str, list[float]]:
    """timings.total_s of each record by PREDICTED type (the type decides the work the pipeline did)."""
    times: dict[str, list[float]] = {}
    for r in records:
        total = (r.get("timings") or {}).get("total_s")
        if total is not None:
            times.setdefault(r.get("document_type") or NO_TYPE, []).append(float(total))
    return dict(sorted(times.items()))
