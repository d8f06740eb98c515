"""The answer corpus (tests/corpus/*.yaml): realistic model answers -> exact expected results."""

from pathlib import Path

import pytest
import yaml

from docvlm import bank, detection, extraction
from docvlm.prompts import load_prompts
from docvlm.schema import load_schema

CORPUS = Path(__file__).parent / "corpus"
SCHEMA = load_schema()
PROMPTS = load_prompts()


def _cases(name: str) -> list:
    cases = yaml.safe_load((CORPUS / name).read_text())["cases"]
    return [pytest.param(case, id=case["id"]) for case in cases]


def test_corpus_is_large_enough():
    total = sum(len(yaml.safe_load(p.read_text())["cases"]) for p in CORPUS.glob("*.yaml"))
    assert total >= 40


@pytest.mark.parametrize("case", _cases("detection.yaml"))
def test_detection(case):
    found = detection.parse_detection(case["answer"], SCHEMA, PROMPTS)
    expect = case["expect"]
    assert found.document_type == expect["document_type"]
    assert found.fell_back == expect["fell_back"]
    for key in ("rule", "headers", "paid"):
        if key in expect:
            assert found.evidence.get(key) == expect[key], key


@pytest.mark.parametrize("case", _cases("extraction.yaml"))
def test_extraction(case):
    spec = SCHEMA.type_spec(case["doc_type"])
    fields = extraction.parse_extraction(case["answer"], spec, SCHEMA)
    expected = {name: SCHEMA.not_found for name in spec.field_names}
    expected.update({name: str(value) for name, value in case["expect"].items()})
    expected["DOCUMENT_TYPE"] = case["doc_type"]
    assert fields == expected


@pytest.mark.parametrize("case", _cases("bank_headers.yaml"))
def test_bank_headers_turn(case):
    plan = bank.plan_rows_turn(case["answer"], PROMPTS, SCHEMA)
    expect = case["expect"]
    assert plan.headers == expect["headers"]
    assert plan.strategy == expect["strategy"]
    assert plan.mapping == expect.get("mapping", plan.mapping)
    if plan.strategy == "direct":
        assert plan.prompt == PROMPTS.bank_direct
    else:
        assert all(plan.mapping.get(role, "") in plan.prompt for role in plan.columns)


@pytest.mark.parametrize("case", _cases("bank_rows.yaml"))
def test_bank_rows_turn(case):
    plan = bank.plan_rows_turn(case["headers"], PROMPTS, SCHEMA)
    fields, details = bank.finish_statement(plan, case["answer"], SCHEMA, finished=case.get("finished", True))
    expected = {name: SCHEMA.not_found for name in SCHEMA.type_spec("BANK_STATEMENT").field_names}
    expected.update({name: str(value) for name, value in case["expect"].items()})
    expected["DOCUMENT_TYPE"] = "BANK_STATEMENT"
    assert fields == expected
    for key, value in case.get("expect_details", {}).items():
        got = len(details[key]) if key == "corrections" else details[key]
        if key == "loop_cut":
            got = bool(got)
        assert got == value, key
    lengths = {len(fields[f].split(" | ")) for f in ("LINE_ITEM_DESCRIPTIONS", "TRANSACTION_DATES", "TRANSACTION_AMOUNTS_PAID")}
    assert len(lengths) == 1  # equal-length lists
