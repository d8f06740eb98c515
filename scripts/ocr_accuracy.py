"""Accuracy and speed of the OCR engine (model=ocr) on generated documents, per type and layout, and
on folders of real documents with (partial) ground truth.

    python scripts/ocr_accuracy.py [--per-layout 8] [--seed 7] [--threads 1] [--one-core] [--out DIR]
                                   [--real FOLDER ...] [--ocr-cache DIR] [--skip-generated]
                                   [--reader-engine rapidocr-onnxruntime|rapidocr]

For each layout, clean and degraded (scan-like: skew, blur, noise, JPEG), a fresh corpus is generated
(docvlm.synth), read by the engine and scored by docvlm.evaluate. Printed: mean field F1 per
type/layout (bank statements: all five fields and the three debit lists), per-field F1 per type,
and speed (documents/s; CPU seconds per document). Layouts marked * were held out while the rules
were written.

Each --real FOLDER (documents + ground_truth.csv, partial: empty cells and absent columns are not
scored; + statements.csv with file,payments_out for statements) is read as model=ocr reads it (PDF
pages from their text layer, scans OCR'd) and printed: type accuracy, per labelled field its n, the
strict accuracy (names/addresses exact after normalising case, spaces and punctuation; "similar":
edit similarity >= 0.8; money within 0.01; dates equal: docvlm/strict.py) and the project's own
comparators (mean field F1), documents/s per core for scanned (OCR) and born-digital (text layer)
pages, and for statements the share whose debits add up to the printed payments out.
--ocr-cache DIR keeps OCR lines per document (DIR/<stem>.pkl) so that rule changes are re-measured
without OCR; cached documents are not timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

from docvlm.ocr import OcrEngine, load_ocr_rules
from docvlm.ocr.accuracy import HELD_OUT, EngineRun, RealRun, run_folder, run_real_folder, speed_by_source, \
    statement_debit_check
from docvlm.ocr.reader import ENGINES
from docvlm.schema import load_schema
from docvlm.synth import all_layouts, generate_corpus


def main() -> None:
    args = _arguments()
    if args.one_core:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    schema = load_schema()
    rules = load_ocr_rules()
    if args.reader_engine:
        rules = replace(rules, reader=replace(rules.reader, engine=args.reader_engine))
    engine = OcrEngine(rules, threads=args.threads)
    for folder in args.real:
        _print_real(run_real_folder(engine, Path(folder), schema, Path(args.ocr_cache) if args.ocr_cache else None),
                    schema)
    if args.skip_generated:
        return
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
    parser.add_argument("--real", nargs="*", default=[], help="folders of real documents with ground_truth.csv")
    parser.add_argument("--ocr-cache", help="folder of cached OCR lines for --real (read and written)")
    parser.add_argument("--skip-generated", action="store_true", help="only the --real folders")
    parser.add_argument("--reader-engine", choices=ENGINES, help="the RapidOCR package (default: conf/ocr reader.engine)")
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


def _print_real(run: RealRun, schema) -> None:
    records = run.records
    sources = {source: sum(r["source"] == source for r in records) for source in ("ocr", "text_layer")}
    print(f"\nReal documents: {run.folder} ({len(records)} documents: {sources['ocr']} OCR'd, "
          f"{sources['text_layer']} from their text layer)")
    if run.evaluation is not None:
        overall = run.evaluation["overall"]
        print(f"  type accuracy {overall['type_accuracy']:.3f} on {run.evaluation['documents_scored']} labelled documents")
        print(f"  {'type':15s} {'field':26s} {'n':>4s} {'strict':>7s} {'similar':>8s} {'project F1':>11s}")
        for doc_type, fields in run.evaluation["strict"].items():
            for name, row in fields.items():
                similar = "" if row["similar"] is None else f"{row['similar']:.3f}"
                print(f"  {doc_type:15s} {name:26s} {row['n']:4d} {row['strict']:7.3f} {similar:>8s} "
                      f"{row['project_f1']:11.3f}")
    statements = run.folder / "statements.csv"
    if statements.exists():
        check = statement_debit_check(records, statements, schema)
        print(f"  statements whose debits add up to the printed payments out: {check['right']}/{check['statements']}"
              f" ({check['share']:.2f})")
        for row in check["rows"]:
            if not row["right"]:
                print(f"    wrong: {row['file']}: {row['n_debits']} debits sum {row['debits']:.2f}, "
                      f"payments out {row['payments_out']:.2f}, pages typed statement {row['pages_typed_statement']}")
    for source, speed in speed_by_source(records).items():
        kind = "scanned (OCR)" if source == "ocr" else "born-digital (text layer)"
        print(f"  speed, {kind}: {speed['docs_per_cpu_s']:.2f} documents/s per core "
              f"({speed['docs_per_s']:.2f}/s wall, {speed['documents']} timed)")


if __name__ == "__main__":
    main()
