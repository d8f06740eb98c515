"""summary.json's figures: stage timings also for OCR runs (the engine keeps no batch statistics)."""

from __future__ import annotations

from docvlm.config import ModelConfig, RunConfig
from docvlm.records import DocumentRecord
from docvlm.summary import build_summary


def _ocr_record(index: int, load_s: float, read_s: float, rules_s: float) -> DocumentRecord:
    timings = {"load_s": load_s, "ocr_read_s": read_s, "ocr_rules_s": rules_s, "extract_s": read_s + rules_s}
    timings["total_s"] = load_s + timings["extract_s"]
    return DocumentRecord(index=index, image=f"doc{index}.png", document_type="INVOICE", timings=timings)


def _summary(records: list[DocumentRecord], earlier: set[str]) -> dict:
    cfg = RunConfig(model=ModelConfig(name="ocr", family="ocr", path=""))
    new = len(records) - len(earlier)
    rank_stats = [{"rank": 0, "documents": new, "busy_s": 1.0, "load_model_s": 0.0, "batch_size": 1, "stages": {}}]
    return build_summary(cfg, records, rank_stats, None, elapsed_s=2.0, gather_s=0.0, world=1, snapshot={},
                         earlier=earlier)


def test_ocr_runs_have_stage_timings_of_this_runs_documents():
    records = [_ocr_record(0, 0.1, 0.5, 0.25), _ocr_record(1, 0.3, 1.0, 0.5), _ocr_record(2, 9.0, 9.0, 9.0)]
    stages = _summary(records, earlier={"doc2.png"})["stages"]  # doc2 was recorded by an earlier run
    assert set(stages) == {"load", "ocr"}
    assert stages["load"]["documents"] == 2 and stages["load"]["seconds_sum"] == 0.4
    assert stages["ocr"]["documents"] == 2 and stages["ocr"]["seconds_sum"] == 2.25
    assert stages["ocr"]["read_s_sum"] == 1.5 and stages["ocr"]["rules_s_sum"] == 0.75


def test_a_failed_page_counts_in_load_only():
    failed = DocumentRecord(index=0, image="bad.png", timings={"load_s": 0.2, "total_s": 0.2},
                            error={"kind": "corrupt_image", "stage": "load", "message": "x"})
    stages = _summary([failed, _ocr_record(1, 0.1, 0.5, 0.5)], earlier=set())["stages"]
    assert stages["load"]["documents"] == 2 and stages["ocr"]["documents"] == 1
