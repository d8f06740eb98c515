"""The `docvlm` console script: what users do besides the main job (which is launch.py).

  docvlm make-samples --out DIR [--seed N] [--overwrite]   synthetic documents + ground_truth.csv
  docvlm make-tiny-models [--cache DIR]         the three tiny test models (real classes, random weights)
  docvlm evaluate RESULTS.jsonl GROUND_TRUTH [--out DIR]   score an existing run again

A user's mistake (a missing file, a folder that already holds documents) is one line, exit status 2;
DOCVLM_DEBUG=1 shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from docvlm.errors import UserError, run_command


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="docvlm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    samples = sub.add_parser("make-samples", help="generate synthetic documents with ground truth")
    samples.add_argument("--out", type=Path, required=True, help="a new or empty folder")
    samples.add_argument("--seed", type=int, default=0)
    samples.add_argument("--invoices", type=int, default=None)
    samples.add_argument("--receipts", type=int, default=None)
    samples.add_argument("--statements", type=int, default=None)
    samples.add_argument("--degrade", action="store_true", help="add noise, blur, skew and JPEG artefacts")
    samples.add_argument("--overwrite", action="store_true",
                         help="replace an earlier sample set in --out (other files there are left alone)")

    tiny = sub.add_parser("make-tiny-models", help="build the tiny test models into the cache")
    tiny.add_argument("--cache", type=Path, default=None, help="default: $DOCVLM_CACHE or ~/.cache/docvlm")

    evaluate = sub.add_parser("evaluate", help="evaluate an existing results.jsonl against ground truth")
    evaluate.add_argument("results", type=Path)
    evaluate.add_argument("ground_truth", type=Path)
    evaluate.add_argument("--out", type=Path, default=None, help="default: the results file's folder")

    args = parser.parse_args(argv)
    command = {"make-samples": _make_samples, "make-tiny-models": _make_tiny, "evaluate": _evaluate}[args.command]
    return run_command(lambda: command(args))


def _make_samples(args: argparse.Namespace) -> int:
    from docvlm.synth import generate_corpus, generate_samples
    from docvlm.synth.corpus import prepare_folder

    others = prepare_folder(args.out, args.overwrite)
    counts = {"INVOICE": args.invoices, "RECEIPT": args.receipts, "BANK_STATEMENT": args.statements}
    if all(v is None for v in counts.values()) and not args.degrade:
        truth = generate_samples(args.out, seed=args.seed)
    else:
        truth = generate_corpus(args.out, {k: v or 0 for k, v in counts.items()}, seed=args.seed, degrade=args.degrade)
    print(f"wrote {_rows(truth)} documents and their ground truth ({truth})")
    if others:
        print(f"note: {len(others)} other files in {args.out} (e.g. {others[0].name}) stay; they have no ground truth")
    return 0


def _rows(csv_path: Path) -> int:
    with csv_path.open(encoding="utf-8") as handle:
        return sum(1 for _ in handle) - 1  # one row per document, after the header


def _make_tiny(args: argparse.Namespace) -> int:
    from docvlm.models.tiny import build_all
    from docvlm.paths import cache_dir

    for path in build_all(args.cache or cache_dir()).values():
        print(f"tiny model ready: {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from docvlm.evaluate import main as evaluate_main
    from docvlm.outputs import check_writable

    if not args.results.is_file():
        raise UserError(f"{args.results}: no such results file: give a run's results.jsonl (in its output.dir)")
    out_dir = args.out or args.results.parent
    check_writable(out_dir)  # before the work: evaluation.json, report.md and plots go there
    evaluation = evaluate_main(args.results, args.ground_truth, out_dir)
    print(json.dumps(evaluation.get("overall", {}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
