"""Command line: `python -m docvlm.synth --out DIR [--seed N] [--invoices 3 ...]`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from docvlm.errors import run_command
from docvlm.synth.corpus import DEFAULT_COUNTS, FORMATS, all_layouts, generate_corpus, generate_samples, prepare_folder


def _parser() -> argparse.ArgumentParser:
    layouts = ", ".join(f"{t}: {'/'.join(names)}" for t, names in all_layouts().items())
    parser = argparse.ArgumentParser(
        prog="python -m docvlm.synth",
        description="Generate synthetic invoices, receipts and bank statements with a ground_truth.csv.",
        epilog=f"Layouts - {layouts}",
    )
    parser.add_argument("--out", type=Path, required=True, help="a new or empty folder (created if missing)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier sample set in --out (other files there are left alone)")
    parser.add_argument("--seed", type=int, default=0, help="same seed -> identical files (default 0)")
    parser.add_argument("--samples", action="store_true",
                        help="the small demo set (2 invoices, 2 receipts, 3 statements); ignores the counts")
    parser.add_argument("--invoices", type=int, default=DEFAULT_COUNTS["INVOICE"])
    parser.add_argument("--receipts", type=int, default=DEFAULT_COUNTS["RECEIPT"])
    parser.add_argument("--statements", type=int, default=DEFAULT_COUNTS["BANK_STATEMENT"])
    parser.add_argument("--layouts", default="", help="comma-separated layout names to use (default: all)")
    parser.add_argument("--formats", default="png", help=f"comma-separated subset of {','.join(FORMATS)}")
    parser.add_argument("--degrade", action="store_true", help="skew, blur, noise and JPEG artefacts")
    parser.add_argument("--max-pages", type=int, default=1,
                        help="bank statements get 1..N pages; multi-page ones are PDF only (default 1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_command(lambda: _generate(args))


def _generate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    prepare_folder(args.out, args.overwrite)
    if args.samples:
        csv_path = generate_samples(args.out, seed=args.seed)
    else:
        counts = {"INVOICE": args.invoices, "RECEIPT": args.receipts, "BANK_STATEMENT": args.statements}
        layouts = [name.strip() for name in args.layouts.split(",") if name.strip()] or None
        formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
        csv_path = generate_corpus(args.out, counts, args.seed, args.degrade, formats, layouts, args.max_pages)
    with csv_path.open(encoding="utf-8") as handle:
        documents = sum(1 for _ in handle) - 1
    print(f"wrote {documents} documents and their ground truth ({csv_path}) in {time.perf_counter() - started:.1f} s")
    return 0
