"""Benchmark numbers: per-configuration metrics, ratios to the baseline, the JSON file and a printed table.

Per stage: documents/s, tokens/s, prefill vs decode time, the roofline floor and the fraction reached.
Per flow: standard documents (detection + extraction) and bank statements (detection + two turns);
detection time is shared per document, since one detection batch mixes both flows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from docvlm.bench.roofline import CallShape, Floor, Hardware, ModelCost, floors_by_stage
from docvlm.bench.workload import PassResult, Workload

STANDARD_TYPES = ("INVOICE", "RECEIPT")
BANK_TYPES = ("BANK_STATEMENT",)
STANDARD_STAGES = ("extract",)
BANK_STAGES = ("bank_headers", "bank_rows")


def _rate(count: float, seconds: float) -> float:
    return round(count / seconds, 4) if seconds > 0 else 0.0


def _flow_seconds(per_stage: dict[str, float], detect_docs: int, docs: int, stages: tuple[str, ...]) -> float:
    """A flow's share of detection plus its own stages."""
    detect = per_stage.get("detect", 0.0) * docs / detect_docs if detect_docs else 0.0
    return detect + sum(per_stage.get(stage, 0.0) for stage in stages)


def pass_metrics(result: PassResult, workload: Workload, cost: ModelCost, hardware: list[Hardware]) -> dict[str, Any]:
    """Everything measured in one timed pass, with the floor under each hardware basis (first = primary)."""
    stats = result.ctx.stats
    seconds = {stage: s.seconds for stage, s in stats.items()}
    detect_docs = stats["detect"].documents if "detect" in stats else 0
    n_standard, n_bank = workload.count(STANDARD_TYPES), workload.count(BANK_TYPES)
    errors = [r for r in result.records if not r.ok]
    metrics: dict[str, Any] = {
        "wall_s": round(result.wall_s, 3),
        "documents": len(result.records),
        "errors": len(errors),
        "first_error": errors[0].error if errors else None,
        "documents_per_s": _rate(len(result.records), result.wall_s),
        "standard_docs_per_s": _rate(n_standard, _flow_seconds(seconds, detect_docs, n_standard, STANDARD_STAGES)),
        "statements_per_s": _rate(n_bank, _flow_seconds(seconds, detect_docs, n_bank, BANK_STAGES)),
        "prefill_s": round(sum(s.prefill_s for s in stats.values()), 3),
        "decode_s": round(sum(s.decode_s for s in stats.values()), 3),
        "stages": {stage: _stage_json(s.to_json(), [c for c in result.ctx.calls if c.stage == stage])
                   for stage, s in stats.items()},
        "roofline": {},
    }
    for hw in hardware:
        floors = floors_by_stage(result.ctx.calls, cost, hw)
        metrics["roofline"][hw.source] = _roofline_json(floors, result.wall_s, detect_docs, n_standard, n_bank,
                                                        len(result.records))
        for stage, floor in floors.items():
            fractions = metrics["stages"][stage].setdefault("fraction_of_roofline", {})
            fractions[hw.source] = _fraction(floor.total_s, seconds[stage])
    return metrics


def _stage_json(stage: dict[str, Any], calls: list[CallShape]) -> dict[str, Any]:
    # Decode steps per call: the longest row, less the token that prefill produced.
    steps = sum(max(call.generated, default=1) - 1 for call in calls)
    stage["documents_per_s"] = _rate(stage["documents"], stage["seconds"])
    # beside the prefill and decode: waiting for the inputs (`inputs_s`), allocation, graph capture, replies
    stage["other_s"] = round(stage["seconds"] - stage["prefill_s"] - stage["decode_s"], 4)
    stage["prompt_tokens"] = sum(sum(call.prompt) for call in calls)
    stage["vision_tokens"] = sum(call.vision_tokens for call in calls)
    stage["decode_steps"] = steps
    stage["ms_per_decode_step"] = round(1e3 * stage["decode_s"] / steps, 2) if steps else 0.0
    return stage


def _fraction(floor_s: float, measured_s: float) -> float:
    return round(floor_s / measured_s, 4) if measured_s > 0 else 0.0


def _roofline_json(floors: dict[str, Floor], wall_s: float, detect_docs: int, n_standard: int, n_bank: int,
                   n_docs: int) -> dict[str, Any]:
    totals = {stage: floor.total_s for stage, floor in floors.items()}
    floor_s = sum(totals.values())
    standard_s = _flow_seconds(totals, detect_docs, n_standard, STANDARD_STAGES)
    bank_s = _flow_seconds(totals, detect_docs, n_bank, BANK_STAGES)
    return {
        "floor_s": round(floor_s, 4),
        "prefill_floor_s": round(sum(f.prefill_s for f in floors.values()), 4),
        "decode_floor_s": round(sum(f.decode_s for f in floors.values()), 4),
        "documents_per_s": _rate(n_docs, floor_s),
        "standard_docs_per_s": _rate(n_standard, standard_s),
        "statements_per_s": _rate(n_bank, bank_s),
        "fraction": _fraction(floor_s, wall_s),
        "stages": {stage: {"prefill_s": round(f.prefill_s, 4), "decode_s": round(f.decode_s, 4)}
                   for stage, f in floors.items()},
    }


RATIO_KEYS = ("documents_per_s", "standard_docs_per_s", "statements_per_s")


def ratios(baseline: dict[str, Any], config: dict[str, Any]) -> dict[str, float]:
    return {key: round(config[key] / baseline[key], 3) if baseline[key] else 0.0 for key in RATIO_KEYS}


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically (temp + rename): a run cut short still leaves the last complete file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def table(configs: list[dict[str, Any]], primary: str) -> str:
    """A fixed-width summary: one row per configuration, the baseline first."""
    head = (f"{'config':<14}{'batch':>6}{'docs/s':>9}{'std/s':>8}{'stmt/s':>8}{'prefill':>9}{'decode':>9}"
            f"{'peakGiB':>8}{'floor/s':>9}{'of roof':>8}{'x base':>8}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for c in configs:
        roof = c["roofline"][primary]
        peak = c["peak_memory_gib"]
        lines.append(
            f"{c['name']:<14}{c['batch_size']:>6}{c['documents_per_s']:>9.3f}{c['standard_docs_per_s']:>8.3f}"
            f"{c['statements_per_s']:>8.3f}{c['prefill_s']:>9.1f}{c['decode_s']:>9.1f}"
            f"{'-' if peak is None else f'{peak:.1f}':>8}{roof['documents_per_s']:>9.2f}{roof['fraction']:>8.1%}"
            f"{c['ratio_to_baseline']['documents_per_s']:>7.2f}x"
        )
    return "\n".join(lines)
