"""The `docvlm` console script: what users do besides the main job (which is launch.py).

  docvlm make-samples --out DIR [--seed N]      synthetic documents + ground_truth.csv
  docvlm make-tiny-models [--cache DIR]         the three tiny test models (real classes, random weights)
  docvlm evaluate RESULTS.jsonl GROUND_TRUTH [--out DIR]   score an existing run again
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="docvlm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    samples = sub.add_parser("make-samples", help="generate synthetic documents with ground truth")
    samples.add_argument("--out", type=Path, required=True)
    samples.add_argument("--seed", type=int, default=0)
    samples.add_argument("--invoices", type=int, default=None)
    samples.add_argument("--receipts", type=int, default=None)
    samples.add_argument("--statements", type=int, default=None)
    samples.add_argument("--degrade", action="store_true", help="add noise, blur, skew and JPEG artefacts")

    tiny = sub.add_parser("make-tiny-models", help="build the tiny test models into the cache")
    tiny.add_argument("--cache", type=Path, default=None, help="default: $DOCVLM_CACHE or ~/.cache/docvlm")

    evaluate = sub.add_parser("evaluate", help="evaluate an existing results.jsonl against ground truth")
    evaluate.add_argument("results", type=Path)
    evaluate.add_argument("ground_truth", type=Path)
    evaluate.add_argument("--out", type=Path, default=None, help="default: the results file's folder")

    args = parser.parse_args(argv)
    return {"make-samples": _make_samples, "make-tiny-models": _make_tiny, "evaluate": _evaluate}[args.command](args)


def _make_samples(args: argparse.Namespace) -> int:
    from docvlm.synth import generate_corpus, generate_samples

    counts = {"INVOICE": args.invoices, "RECEIPT": args.receipts, "BANK_STATEMENT": args.statements}
    if all(v is None for v in counts.values()) and not args.degrade:
        truth = generate_samples(args.out, seed=args.seed)
    else:
        truth = generate_corpus(args.out, {k: v or 0 for k, v in counts.items()}, seed=args.seed, degrade=args.degrade)
    print(f"wrote {truth}")
    return 0


def _make_tiny(args: argparse.Namespace) -> int:
    from docvlm.models.tiny import build_all
    from docvlm.paths import cache_dir

    for path in build_all(args.cache or cache_dir()).values():
        print(f"tiny model ready: {path}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from docvlm.evaluate import main as evaluate_main

    evaluation = evaluate_main(args.results, args.ground_truth, args.out or args.results.parent)
    print(json.dumps(evaluation.get("overall", {}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
