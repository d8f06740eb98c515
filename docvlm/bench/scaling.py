"""Multi-GPU scaling report (issue 5): compare runs of the SAME workload with N = 1, 2, 4 ranks.

Each run is a normal `torchrun --nproc_per_node=N launch.py ...` job; this reads their summary.json
files and prints documents/s, scaling efficiency throughput_N / (N * throughput_1), the slowest and
fastest rank's busy time, model load time per rank, time to first result and gather time.

  python -m docvlm.bench.scaling OUT_N1 OUT_N2 OUT_N4 [--json scaling.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional, Sequence


def scaling_rows(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run; the run with the fewest ranks is the baseline for the efficiency."""
    runs = sorted(summaries, key=lambda s: s["world_size"])
    base = runs[0]["documents_per_s"] / runs[0]["world_size"]
    rows = []
    for s in runs:
        busy = [r["busy_s"] for r in s["ranks"]]
        rows.append({
            "ranks": s["world_size"],
            "documents": s["processed_this_run"],
            "elapsed_s": s["elapsed_s"],
            "documents_per_s": s["documents_per_s"],
            "efficiency": round(s["documents_per_s"] / (s["world_size"] * base), 3) if base else 0.0,
            "busy_s_max": max(busy),
            "busy_s_min": min(busy),
            "load_model_s": [r["load_model_s"] for r in s["ranks"]],
            "first_result_s": [r.get("first_result_s") for r in s["ranks"]],
            "gather_s": s["gather_s"],
            "documents_per_rank": [r["documents"] for r in s["ranks"]],
        })
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = "| ranks | docs | elapsed s | docs/s | efficiency | busy max / min s | load s per rank | first result s | gather s |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['ranks']} | {r['documents']} | {r['elapsed_s']:.1f} | {r['documents_per_s']:.3f} | "
            f"{r['efficiency']:.2f} | {r['busy_s_max']:.1f} / {r['busy_s_min']:.1f} | "
            f"{', '.join(f'{x:.1f}' for x in r['load_model_s'])} | "
            f"{', '.join('-' if x is None else f'{x:.1f}' for x in r['first_result_s'])} | {r['gather_s']:.3f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="output.dir of each run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    summaries = [json.loads((run / "summary.json").read_text()) for run in args.runs]
    rows = scaling_rows(summaries)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
