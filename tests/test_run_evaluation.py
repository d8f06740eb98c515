"""The evaluation of a whole run (in process, one rank): partial ground truth with PDF pages, the
check of ground-truth rows against the documents found, and report.md's figures after a resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

import docvlm.config  # noqa: F401  registers the config schema and resolvers
from docvlm.ground_truth import GroundTruthError
from docvlm.paths import CONF_DIR
from docvlm.synth import generate_corpus

FAST = ["model=tiny_internvl", "processing.max_new_tokens.detect=8", "processing.max_new_tokens.extract=24",
        "processing.max_new_tokens.bank_headers=8", "processing.max_new_tokens.bank_rows=24",
        "processing.batch_size=2"]


def run_job(data: Path, out: Path, truth: Path, *overrides: str) -> dict:
    from docvlm.run import run

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"data.dir={data}", f"output.dir={out}",
                                                       f"data.ground_truth={truth}", *overrides])
    return run(cfg)


@pytest.fixture(scope="module")
def documents(tmp_path_factory) -> Path:
    """Two generated PNGs and a two-page PDF made of them."""
    data = tmp_path_factory.mktemp("docs")
    generate_corpus(data, {"INVOICE": 1, "RECEIPT": 1}, seed=5)
    (data / "ground_truth.csv").unlink()
    first, second = (Image.open(p).convert("RGB") for p in sorted(data.glob("*.png")))
    first.save(data / "two.pdf", "PDF", resolution=150, save_all=True, append_images=[second])
    return data


def test_partial_truth_pages_and_a_resume_that_did_nothing(documents, tmp_path, tiny_models, caplog):
    png = sorted(p.name for p in documents.glob("*.png"))[0]
    truth = tmp_path / "truth.csv"
    truth.write_text("image_file,DOCUMENT_TYPE,TOTAL_AMOUNT,SUPPLIER_NAME\n"
                     f"{png},INVOICE,$10.00,\n"
                     "two.pdf#page=1,INVOICE,,Acme Pty Ltd\n"
                     "gone.png,RECEIPT,$1.00,\n")
    out = tmp_path / "out"
    run_job(documents, out, truth, *FAST)
    assert "1 of 3 ground-truth rows match no document" in caplog.text and "gone.png" in caplog.text
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["scored_fields"]["INVOICE"]["scored"] == {"DOCUMENT_TYPE": 2, "SUPPLIER_NAME": 1, "TOTAL_AMOUNT": 1}
    assert list(ev["per_field"]["INVOICE"]) == ["DOCUMENT_TYPE", "SUPPLIER_NAME", "TOTAL_AMOUNT"]
    assert "two.pdf#page=2" in ev["documents_without_ground_truth"]  # never scored against page 1's row
    assert ev["model"] == {"name": "tiny_internvl", "random_weights": True}

    summary = run_job(documents, out, truth, *FAST)  # everything is recorded: nothing to do
    assert summary["processed_this_run"] == 0 and summary["documents_per_s"] == 0.0
    ev = json.loads((out / "evaluation.json").read_text())
    assert ev["throughput"]["docs_per_s"] == 0.0  # report.md said 167.853 documents/s here
    report = (out / "report.md").read_text()
    assert "0 documents processed by this run" in report and "0.000 documents/s" in report
    assert "random weights: its answers are meaningless" in report.split("## ")[0]


def test_truth_matching_no_document_stops_before_any_model_work(documents, tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("image_file,DOCUMENT_TYPE,TOTAL_AMOUNT\nelsewhere/a.png,RECEIPT,$1.00\n")
    out = tmp_path / "out"
    with pytest.raises(Exception) as info:  # noqa: PT011 - the job wraps a rank's error; its cause is checked
        run_job(documents, out, truth, "model=ocr")
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    assert any(isinstance(e, GroundTruthError) for e in chain), chain
    assert "none of its 1 rows matches any of the 4 documents" in str(info.value)
    assert not (out / "results.jsonl").exists()
