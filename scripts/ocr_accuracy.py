"""Accuracy and speed of the OCR engine (model=ocr) on generated documents, per type and layout.

    python scripts/ocr_accuracy.py [--per-layout 8] [--seed 7] [--threads 1] [--one-core] [--out DIR]

For each layout, clean and degraded (scan-like: skew, blur, noise, JPEG), a fresh corpus is generated
(docvlm.synth), read by the engine and scored by docvlm.evaluate. Printed: mean field F1 per
type/layout (bank statements: all five fields and the three debit lists), per-field F1 per type,
and speed (documents/s; CPU seconds per document). Layouts marked * were held out while the rules
were written.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from docvlm.ocr import OcrEngine
from docvlm.ocr.accuracy import HELD_OUT, EngineRun, run_folder
from docvlm.schema import load_schema
from docvlm.synth import all_layouts, generate_corpus


def main() -> None:
    args = _arguments()
    if args.one_core:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    schema = load_schema()
    engine = OcrEngine(threads=args.threads)
    out = Path(args.out or tempfile.mkdtemp(prefix="ocr-accuracy-"))
    runs: dict[tuple[str, str, bool], EngineRun] = {}
    for doc_type, layouts in all_layouts().items():
        for layout in layouts:
            for degraded in (False, True):
                folder = out / f"{layout}-{'degraded' if degraded else 'clean'}"
                if not (folder / "ground_truth.csv").exists():
                    generate_corpus(folder, counts={doc_type: args.per_layout}, seed=args.seed, degrade=degraded,
                                    layouts=[layout], schema=schema)
                runs[(doc_type, layout, degraded)] = run_folder(engine, folder, schema)
    _print_scores(runs, schema)
    _print_fields(runs, schema)
    _print_speed(runs, engine.threads, args.one_core)
    print(f"\ndocuments and per-document results under {out}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-layout", type=int, default=8, help="documents per layout and condition")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    parser.add_argument("--one-core", action="store_true", help="pin the process to one CPU core")
    parser.add_argument("--out", help="work folder (kept); a temporary folder by default")
    return parser.parse_args()


def _lists_f1(run: EngineRun, schema) -> float:
    """Bank statements: mean F1 of the list fields (descriptions, dates, amounts paid)."""
    names = [f.name for f in schema.type_spec("BANK_STATEMENT").fields if f.is_list]
    return statistics.fmean(run.evaluation["per_field"]["BANK_STATEMENT"][n]["mean"] for n in names)


def _print_scores(runs: dict[tuple[str, str, bool], EngineRun], schema) -> None:
    print("\nMean field F1 (document mean) by type and layout; * = held out while the rules were written")
    print(f"{'type':15s} {'layout':15s} {'n':>3s} {'clean':>7s} {'degraded':>9s} {'type acc (clean/degr.)':>24s}")
    for (doc_type, layout, degraded), run in runs.items():
        if degraded:
            continue
        other = runs[(doc_type, layout, True)]
        marker = "*" if HELD_OUT.get(doc_type) == layout else " "
        scores = [r.evaluation["per_type"][doc_type]["document_f1_mean"] for r in (run, other)]
        accuracy = [r.evaluation["overall"]["type_accuracy"] for r in (run, other)]
        print(f"{doc_type:15s} {layout + marker:15s} {run.evaluation['documents_scored']:3d} {scores[0]:7.3f} "
              f"{scores[1]:9.3f} {accuracy[0]:12.2f} / {accuracy[1]:.2f}")
        if doc_type == "BANK_STATEMENT":
            lists = [_lists_f1(r, schema) for r in (run, other)]
            print(f"{'':15s} {'  debit lists':15s} {'':3s} {lists[0]:7.3f} {lists[1]:9.3f}")


def _print_fields(runs: dict[tuple[str, str, bool], EngineRun], schema) -> None:
    for doc_type, spec in schema.types.items():
        print(f"\n{doc_type}: per-field F1 over all its layouts (clean / degraded)")
        for name in spec.field_names:
            means = []
            for degraded in (False, True):
                values = [r.evaluation["per_field"][doc_type][name]["mean"]
                          for (t, _, d), r in runs.items() if t == doc_type and d == degraded]
                means.append(statistics.fmean(values))
            print(f"  {name:26s} {means[0]:.3f} / {means[1]:.3f}")


def _print_speed(runs: dict[tuple[str, str, bool], EngineRun], threads: int, one_core: bool) -> None:
    docs = sum(len(r.records) for r in runs.values())
    wall = sum(r.wall_s for r in runs.values())
    cpu = sum(r.cpu_s for r in runs.values())
    where = "pinned to 1 core" if one_core else f"{len(os.sched_getaffinity(0))} cores visible"
    print(f"\nSpeed: {docs} documents, ONNX Runtime threads={threads}, {where}: "
          f"{docs / wall:.3f} documents/s wall, {cpu / docs:.2f} CPU s/document")
    for doc_type in sorted({t for t, _, _ in runs}):
        chosen = [r for (t, _, _), r in runs.items() if t == doc_type]
        n = sum(len(r.records) for r in chosen)
        print(f"  {doc_type:15s} {sum(r.wall_s for r in chosen) / n:.2f} s/document wall, "
              f"{sum(r.cpu_s for r in chosen) / n:.2f} CPU s/document")


if __name__ == "__main__":
    main()
