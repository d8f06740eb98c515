"""The OCR engine in the runner (model=ocr) and the grounding check on the VLM path."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

from docvlm.config import TokenBudgets
from docvlm.inputs import discover
from docvlm.models import ModelSpec, load_model
from docvlm.paths import REPO_ROOT
from docvlm.pipeline import stages
from docvlm.pipeline.document_pipeline import DocumentPipeline
from docvlm.pipeline.grounding import Grounding
from docvlm.pipeline.stages import StageContext
from docvlm.prompts import load_prompts
from docvlm.schema import load_schema
from docvlm.synth import generate_corpus
from test_end_to_end import launch, stable


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("ocr-docs")
    generate_corpus(data, {"INVOICE": 2, "RECEIPT": 1, "BANK_STATEMENT": 2}, seed=11)
    return data


def test_two_ranks_equal_one_rank_and_the_answers_are_right(docs_dir, tmp_path):
    truth = f"data.ground_truth={docs_dir / 'ground_truth.csv'}"
    one = launch(0, docs_dir, tmp_path / "one", "model=ocr", truth, env_cache=tmp_path / "cache")
    launch(2, docs_dir, tmp_path / "two", "model=ocr", truth, env_cache=tmp_path / "cache")
    assert stable(tmp_path / "one") == stable(tmp_path / "two")
    assert "macro F1" in one.stdout  # the evaluation summary is printed
    evaluation = json.loads((tmp_path / "two" / "evaluation.json").read_text())
    assert evaluation["overall"]["type_accuracy"] == 1.0
    assert evaluation["overall"]["macro_f1"] >= 0.9


def test_an_ocr_run_never_imports_transformers(tmp_path):
    """model=ocr needs no model library: importing transformers would cost every rank ~6 s of start."""
    generate_corpus(tmp_path / "data", {"RECEIPT": 1}, seed=3)
    code = ("import atexit, runpy, sys; atexit.register(lambda: print('transformers imported:', 'transformers' in "
            f"sys.modules)); sys.argv = ['launch.py', 'model=ocr', 'data.dir={tmp_path / 'data'}', "
            f"'output.dir={tmp_path / 'out'}']; runpy.run_path('launch.py', run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert "1 documents: 1 done" in proc.stdout, proc.stderr[-3000:]
    assert "transformers imported: False" in proc.stdout


def test_grounding_flags_values_the_page_does_not_show(docs_dir, tiny_models, monkeypatch):
    """Real pipeline, real OCR; the extraction parse is replaced by hand-made answers, since a tiny
    random model cannot write a real one: the true values for one document, altered ones for another."""
    schema = load_schema()
    with (docs_dir / "ground_truth.csv").open() as f:
        truth = {row["image_file"]: row for row in csv.DictReader(f)}
    docs = [d for d in discover(docs_dir, [".png"]) if truth[d.id]["DOCUMENT_TYPE"] == "INVOICE"]
    right, wrong = docs[0].id, docs[1].id

    def answers(text, spec, schema_):
        doc_id = current.pop(0)
        fields = {f: truth[doc_id][f] for f in spec.field_names}
        if doc_id == wrong:
            fields.update(TOTAL_AMOUNT="$98765.43", BUSINESS_ABN="99999999999", SUPPLIER_NAME="Zebra Quantum Holdings")
        return fields

    current = [d.id for d in docs]
    monkeypatch.setattr(stages.extraction, "parse_extraction", answers)
    model = load_model(ModelSpec(family="internvl", path=str(tiny_models["internvl"]), max_tiles=2), torch.device("cpu"))
    ctx = StageContext(model, schema, load_prompts(), TokenBudgets(detect=4, extract=4, bank_headers=4, bank_rows=4))
    pipeline = DocumentPipeline(ctx, batch_size=2, group_window=1, rank=0,
                                route_types={d.id: "INVOICE" for d in docs}, grounding=Grounding(schema))
    records = {r.image: r for r in pipeline.process(docs)}
    assert records[right].ungrounded_fields == []
    assert set(records[wrong].ungrounded_fields) == {"TOTAL_AMOUNT", "BUSINESS_ABN", "SUPPLIER_NAME"}
    # ... and the summary and the report count them
    from docvlm.report import _grounding_section
    from docvlm.summary import _ungrounded

    counted = _ungrounded(list(records.values()))
    assert counted["documents_flagged"] == 1 and counted["values_flagged"] == 3
    section = _grounding_section([r.to_json() for r in records.values()])
    assert "with values not found on the page: 1" in section and "| TOTAL_AMOUNT | 1 |" in section


def test_ocr_reads_a_page_while_the_next_one_loads(docs_dir, tmp_path, monkeypatch):
    """The next page decodes in a thread while the OCR engine reads this one; records stay in input
    order and an unreadable file is still an error record."""
    import threading
    from types import SimpleNamespace

    from docvlm.pipeline import ocr_pipeline

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16)
    docs = discover(docs_dir, [".png"])[:3]
    docs = [*docs, *discover(tmp_path, [".png"])]
    loaded = {doc.id: threading.Event() for doc in docs}
    real_load = ocr_pipeline.load_work_item

    def load(doc, rank, options):
        item = real_load(doc, rank, options)
        loaded[doc.id].set()
        return item

    class Engine:
        def __init__(self) -> None:
            self.current = 0

        def process(self, image, schema):
            following = docs[self.current + 1] if self.current + 1 < len(docs) else None
            self.current += 1
            if following is not None and not loaded[following.id].wait(timeout=10):
                raise RuntimeError("the next page was not loading while this one was read")
            return SimpleNamespace(document_type="INVOICE", fields={}, text="", details={})

    monkeypatch.setattr(ocr_pipeline, "load_work_item", load)
    records = list(ocr_pipeline.OcrPipeline(Engine(), load_schema(), rank=0).process(docs))
    assert [r.image for r in records] == [d.id for d in docs]
    assert [r.ok for r in records] == [True, True, True, False]
    assert records[-1].error["stage"] == "load"


def test_the_ocr_pipeline_is_a_pipeline_without_a_separate_detection(docs_dir):
    """The runner sees the OCR pipeline through the Pipeline protocol; shard=cost needs a detection
    of its own, which it has not; the progress bar it was built with shows its one phase."""
    from types import SimpleNamespace

    from docvlm.pipeline.ocr_pipeline import OcrPipeline
    from docvlm.pipeline.protocol import DetectingPipeline, Pipeline

    class Engine:
        def process(self, image, schema):
            return SimpleNamespace(document_type="RECEIPT", fields={}, text="", details={})

    class Phases:
        def __init__(self) -> None:
            self.seen: list[str] = []

        def phase(self, name: str) -> None:
            self.seen.append(name)

    progress = Phases()
    pipeline = OcrPipeline(Engine(), load_schema(), rank=0, progress=progress)  # type: ignore[arg-type]
    assert isinstance(pipeline, Pipeline) and not isinstance(pipeline, DetectingPipeline)
    assert progress.seen == []  # nothing shown before it runs
    records = list(pipeline.process(discover(docs_dir, [".png"])[:2]))
    assert [r.document_type for r in records] == ["RECEIPT", "RECEIPT"]
    assert progress.seen == ["extraction"] and pipeline.batch_size == 1 and pipeline.stage_stats() == {}
