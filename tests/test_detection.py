"""Detection: the evidence prompt and the rule (bank columns > stated type > paid cue > INVOICE)."""

from docvlm.detection import detection_prompt, parse_detection, read_evidence
from docvlm.prompts import load_prompts
from docvlm.schema import load_schema

SCHEMA = load_schema()
PROMPTS = load_prompts()


def test_prompt_asks_for_evidence_in_a_plain_user_message():
    prompt = detection_prompt(PROMPTS, SCHEMA)
    for key in ("TABLE_HEADERS:", "PAID:", "ROWS:"):
        assert key in prompt
    lowered = prompt.lower()
    assert "do not explain" not in lowered and "don't explain" not in lowered and "system" not in lowered


def test_any_bank_marker_column_wins_over_paid_and_stated_type():
    found = parse_detection("TABLE_HEADERS: Date | Details | Balance\nPAID: YES\nDOCUMENT_TYPE: receipt", SCHEMA, PROMPTS)
    assert found.document_type == "BANK_STATEMENT" and found.evidence["marker_roles"] == ["balance"]


def test_stated_type_goes_through_aliases():
    for said, expected in (("tax invoice", "INVOICE"), ("Sales Receipt", "RECEIPT"), ("account statement", "BANK_STATEMENT")):
        found = parse_detection(f"DOCUMENT_TYPE: {said}", SCHEMA, PROMPTS)
        assert (found.document_type, found.fell_back) == (expected, False)


def test_unknown_stated_type_falls_back_to_the_schema_default():
    found = parse_detection("DOCUMENT_TYPE: menu", SCHEMA, PROMPTS)
    assert found.document_type == SCHEMA.default_type and found.fell_back


def test_empty_and_garbage_answers_fall_back():
    for text in ("", "   ", "<think>still thinking", "Lorem ipsum dolor sit amet."):
        found = parse_detection(text, SCHEMA, PROMPTS)
        assert found.document_type == SCHEMA.default_type and found.fell_back and found.evidence["rule"] == "default"


def test_first_structured_line_of_a_kind_wins():
    evidence = read_evidence("PAID: NO\nPAID: YES\nROWS: about 7 rows", SCHEMA, PROMPTS)
    assert evidence == {"paid": False, "rows": 7}


def test_schema_default_type_is_configurable():
    import dataclasses

    other = dataclasses.replace(SCHEMA, default_type="RECEIPT")
    assert parse_detection("no idea", other, PROMPTS).document_type == "RECEIPT"


def test_parse_without_prompts_uses_the_default_answer_keys():
    assert parse_detection("TABLE_HEADERS: Item | Price\nPAID: yes", SCHEMA).document_type == "RECEIPT"
