"""Multi-GPU scaling report (issue 5): compare runs of the SAME workload with N = 1, 2, 4 ranks.

Each run is a normal `torchrun --nproc_per_node=N launch.py ...` job; this reads their summary.json
files and prints documents/s, error records (a run with errors measured less work: its rate is not
comparable), scaling efficiency throughput_N / (N * throughput_1), the same against the fastest
1-rank run of any mode, the slowest and fastest rank's busy time, documents and estimated cost per rank, model load time per rank, time to
first result and gather time. Runs of both sharding modes (processing.shard=count / cost) may be
mixed: each mode's efficiency is against its own run with the fewest ranks.

  python -m docvlm.bench.scaling OUT_N1 OUT_N2 OUT_N4 [--json scaling.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional, Sequence


def scaling_rows(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run, by sharding mode then ranks; per mode, the run with the fewest ranks is the
    baseline for the efficiency."""
    runs = sorted(summaries, key=lambda s: (_shard(s) != "count", _shard(s), s["world_size"]))  # count first
    base: dict[str, float] = {}
    single = [s["documents_per_s"] for s in runs if s["world_size"] == 1]
    best = max(single) if single else 0.0
    rows = []
    for s in runs:
        base.setdefault(_shard(s), s["documents_per_s"] / s["world_size"])
        per_rank = base[_shard(s)]
        busy = [r["busy_s"] for r in s["ranks"]]
        rows.append({
            "shard": _shard(s),
            "ranks": s["world_size"],
            "documents": s["processed_this_run"],
            "errors": s.get("errors", 0),
            "elapsed_s": s["elapsed_s"],
            "documents_per_s": s["documents_per_s"],
            "efficiency": round(s["documents_per_s"] / (s["world_size"] * per_rank), 3) if per_rank else 0.0,
            "efficiency_vs_best_1": round(s["documents_per_s"] / (s["world_size"] * best), 3) if best else 0.0,
            "busy_s_max": max(busy),
            "busy_s_min": min(busy),
            "load_model_s": [r["load_model_s"] for r in s["ranks"]],
            "first_result_s": [r.get("first_result_s") for r in s["ranks"]],
            "gather_s": s["gather_s"],
            "documents_per_rank": [r["documents"] for r in s["ranks"]],
            "estimated_cost_per_rank": [r.get("estimated_cost") for r in s["ranks"]],
        })
    return rows


def _shard(summary: dict[str, Any]) -> str:
    """The run's processing.shard (runs from before the option: count)."""
    return summary["ranks"][0].get("shard", "count") if summary["ranks"] else "count"


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| shard | ranks | docs | errors | elapsed s | docs/s | efficiency | vs best 1-rank | busy max / min s | "
            "docs per rank | est. cost s per rank | load s per rank | first result s | gather s |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        lines.append(
            f"| {r['shard']} | {r['ranks']} | {r['documents']} | {r['errors']} | {r['elapsed_s']:.1f} | "
            f"{r['documents_per_s']:.3f} | {r['efficiency']:.2f} | {r['efficiency_vs_best_1']:.2f} | "
            f"{r['busy_s_max']:.1f} / {r['busy_s_min']:.1f} | "
            f"{', '.join(str(x) for x in r['documents_per_rank'])} | {_numbers(r['estimated_cost_per_rank'])} | "
            f"{_numbers(r['load_model_s'])} | {_numbers(r['first_result_s'])} | {r['gather_s']:.3f} |")
    return "\n".join(lines)


def _numbers(values: list[Optional[float]]) -> str:
    return ", ".join("-" if x is None else f"{x:.1f}" for x in values)


def main(argv: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="output.dir of each run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    summaries = [json.loads((run / "summary.json").read_text()) for run in args.runs]
    rows = scaling_rows(summaries)
    print(table(rows))
    invalid = [f"{r['shard']} N={r['ranks']}: {r['errors']}" for r in rows if r["errors"]]
    if invalid:  # error records are cheap: such a run measured less work than the others
        print(f"WARNING: runs with error records, their rates are not comparable: {'; '.join(invalid)}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
