"""Run the OCR engine over a folder of generated documents and score it with docvlm.evaluate.

Used by scripts/ocr_accuracy.py (the benchmark table) and by the tests (the accuracy floors).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from docvlm.evaluate import evaluate
from docvlm.ground_truth import load_ground_truth
from docvlm.ocr.engine import OcrEngine
from docvlm.schema import Schema
from docvlm.synth import GROUND_TRUTH

# One layout per type held out while the rules were written (reported separately).
HELD_OUT = {"INVOICE": "service", "RECEIPT": "tax_receipt", "BANK_STATEMENT": "date_grouped"}


@dataclass
class EngineRun:
    evaluation: dict[str, Any]
    records: list[dict[str, Any]]
    wall_s: float  # OCR + rules, summed over documents (image decoding excluded)
    cpu_s: float  # process CPU time over the same spans (all threads)


def run_folder(engine: OcrEngine, folder: Path, schema: Schema) -> EngineRun:
    """Process every PNG of `folder` (a generated corpus) and evaluate against its ground truth."""
    records: list[dict[str, Any]] = []
    wall = cpu = 0.0
    for path in sorted(Path(folder).glob("*.png")):
        with Image.open(path) as image:
            image.load()
            start, start_cpu = time.perf_counter(), time.process_time()
            result = engine.process(image, schema)
            wall += time.perf_counter() - start
            cpu += time.process_time() - start_cpu
        records.append({"image": path.name, "document_type": result.document_type, "fields": result.fields,
                        "details": result.details})
    truth = load_ground_truth(Path(folder) / GROUND_TRUTH, schema)
    return EngineRun(evaluate(records, truth, schema, elapsed_s=wall), records, wall, cpu)


def mean_document_f1(run: EngineRun, doc_type: str) -> float:
    return run.evaluation["per_type"][doc_type]["document_f1_mean"]
