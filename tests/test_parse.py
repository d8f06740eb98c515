"""Shapes of model text: think blocks, markdown, JSON repair, field names, repetition loops, prompts."""

import pytest

from docvlm.extraction import extraction_prompt, parse_extraction
from docvlm.parse import (clean_line, cut_repetition, parse_field_answer, parse_json, resolve_field,
                          strip_thinking)
from docvlm.prompts import DEFAULT_PROMPTS_PATH, load_prompts
from docvlm.schema import load_schema

SCHEMA = load_schema()
PROMPTS = load_prompts()
INVOICE = SCHEMA.type_spec("INVOICE")
BANK = SCHEMA.type_spec("BANK_STATEMENT")


def test_strip_thinking_shapes():
    assert strip_thinking("<think>a</think>B").strip() == "B"
    assert strip_thinking("<THINK>\na\n</THINK>\nB<think>c</think>").strip() == "B"
    assert strip_thinking("reasoning</think>answer") == "answer"
    assert strip_thinking("answer<think>never closed") == "answer"


@pytest.mark.parametrize("raw, clean", [
    ("- **SUPPLIER_NAME:** Acme", "SUPPLIER_NAME: Acme"), ("1. TOTAL: $5", "TOTAL: $5"),
    ("### Heading", "Heading"), ("* `ABN`: 1", "ABN: 1"), ("  2) - item", "item"), ("-5.00", "-5.00"),
    ("05.03.2024 | x", "05.03.2024 | x"),
])
def test_clean_line(raw, clean):
    assert clean_line(raw) == clean


@pytest.mark.parametrize("key, field", [
    ("SUPPLIER_NAME", "SUPPLIER_NAME"), ("supplier name", "SUPPLIER_NAME"), ("Line item description", "LINE_ITEM_DESCRIPTIONS"),
    ("LINE_ITEM_QUANTITY", "LINE_ITEM_QUANTITIES"), ("Line Item Description(s)", "LINE_ITEM_DESCRIPTIONS"),
    ("ABN", "BUSINESS_ABN"), ("Total", "TOTAL_AMOUNT"), ("Date", "INVOICE_DATE"), ("Invoice Number", None),
])
def test_resolve_field_invoice(key, field):
    assert resolve_field(key, INVOICE, SCHEMA) == field


def test_resolve_field_depends_on_the_type_and_list_context():
    assert resolve_field("Date", BANK, SCHEMA) == "TRANSACTION_DATES"
    assert resolve_field("TRANSACTION_AMOUNT_PAID", BANK, SCHEMA) == "TRANSACTION_AMOUNTS_PAID"
    assert resolve_field("total", INVOICE, SCHEMA, prefer_list=True) == "LINE_ITEM_TOTAL_PRICES"
    assert resolve_field("SUPPLIER_NAME", BANK, SCHEMA) is None


def test_parse_json_complete_trailing_comma_and_text_around():
    assert parse_json('Here: {"a": 1, "b": [1, 2,],} thanks') == {"a": 1, "b": [1, 2]}
    assert parse_json("no json here") is None


@pytest.mark.parametrize("text, expected", [
    ('{"a": "x", "b": "unfinish', {"a": "x"}),
    ('{"a": "x", "b": ["p", "q", "r', {"a": "x", "b": ["p", "q"]}),
    ('{"a": "x", "b": {"c": 1, "d": 2', {"a": "x", "b": {"c": 1, "d": 2}}),
    ('{"a": "x", "b":', {"a": "x"}),
    ('{"a": "x"', {"a": "x"}),
])
def test_parse_json_repairs_truncation_back_to_complete_values(text, expected):
    assert parse_json(text) == expected


def test_json_and_lines_give_the_same_fields():
    lines = "SUPPLIER_NAME: Acme\nLINE_ITEM_DESCRIPTIONS: A | B\nTOTAL_AMOUNT: $5.00"
    as_json = '{"SUPPLIER_NAME": "Acme", "LINE_ITEM_DESCRIPTIONS": ["A", "B"], "TOTAL_AMOUNT": "$5.00"}'
    assert parse_extraction(lines, INVOICE, SCHEMA) == parse_extraction(as_json, INVOICE, SCHEMA)


def test_later_value_replaces_an_earlier_not_found():
    assert parse_field_answer("TOTAL_AMOUNT: NOT_FOUND\nTOTAL_AMOUNT: $4", INVOICE, SCHEMA)["TOTAL_AMOUNT"] == "$4"


def test_document_type_is_the_type_asked_for():
    fields = parse_extraction("DOCUMENT_TYPE: RECEIPT\nSUPPLIER_NAME: X", INVOICE, SCHEMA)
    assert fields["DOCUMENT_TYPE"] == "INVOICE"


def test_cut_repetition_shapes():
    text, cut = cut_repetition("row 1\nrow 2\n" + "row 3\n" * 6 + "row")
    assert text == "row 1\nrow 2\nrow 3" and cut["kind"] == "lines"
    text, cut = cut_repetition("A\nB\nA\nB\nA\nB\nA\nB")
    assert text == "A\nB" and cut["block_lines"] == 2
    text, cut = cut_repetition("TOTAL: $5 " + "-" * 60)
    assert text == "TOTAL: $5" and cut["kind"] == "filler"
    assert cut_repetition("a\nb\na\nb\nc") == ("a\nb\na\nb\nc", None)  # twice is not a loop
    layout = "x" + " " * 80 + "y"
    assert cut_repetition(layout) == (layout, None)  # runs of spaces are layout


def test_long_filler_in_the_middle_is_cut_short_one_is_kept():
    kept = "SUPPLIER_NAME: A\n" + "-" * 30 + "\nTOTAL_AMOUNT: $1"
    assert cut_repetition(kept)[1] is None
    text, cut = cut_repetition("SUPPLIER_NAME: A " + "." * 300 + "\nTOTAL_AMOUNT: $1")
    assert text == "SUPPLIER_NAME: A" and cut["kind"] == "filler"


def test_extraction_prompt_lists_the_types_fields_with_hints():
    prompt = extraction_prompt(SCHEMA.type_spec("RECEIPT"), PROMPTS, SCHEMA)
    assert "receipt" in prompt and "DOCUMENT_TYPE" not in prompt
    for name in SCHEMA.type_spec("RECEIPT").field_names[1:]:
        assert f"\n{name}: " in prompt
    assert "INVOICE_DATE: the transaction date" in prompt  # per-type hint
    assert "do not explain" not in prompt.lower()


def test_prompts_loader_errors_and_dictconfig(tmp_path):
    from omegaconf import OmegaConf

    node = OmegaConf.load(DEFAULT_PROMPTS_PATH)
    assert load_prompts(node) == PROMPTS
    with pytest.raises(ValueError, match="prompts file not found"):
        load_prompts(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("detection: {prompt: hi}\n")
    with pytest.raises(ValueError, match="missing key"):
        load_prompts(broken)


def test_schema_rejects_an_alias_to_an_undeclared_field():
    from omegaconf import OmegaConf

    from docvlm.schema import DEFAULT_SCHEMA_PATH

    raw = OmegaConf.to_container(OmegaConf.load(DEFAULT_SCHEMA_PATH))
    raw["field_aliases"]["VENDOR"] = ["VENDOR_NAME"]
    with pytest.raises(ValueError, match="VENDOR"):
        load_schema(raw)


def _random_answers(count: int, seed: int = 7) -> list[str]:
    """Gibberish in the shapes tiny random models produce: fragments of keys, pipes, braces, tags."""
    import random

    rng = random.Random(seed)
    pieces = ["SUPPLIER_NAME:", "TOTAL_AMOUNT: $", "LINE_ITEM_DESCRIPTIONS:", "|", " | ", "\n", "{", "}", "[", "]",
              '"', ":", ",", "<think>", "</think>", "```", "**", "- ", "1. ", "NOT_FOUND", "05/03/2024", "31 Mar",
              "1,020.22", "-4.50", "DR", "CR", "Opening Balance", "Date", "Debit", "Balance", "PAID: YES",
              "TABLE_HEADERS:", "STATEMENT_PERIOD:", "...", "\u00e9", "\t", "0", "x" * 40]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 60))) for _ in range(count)]


def test_no_answer_makes_a_parser_raise():
    from docvlm import bank
    from docvlm.detection import parse_detection

    bank_fields = SCHEMA.type_spec("BANK_STATEMENT").field_names
    for text in _random_answers(300):
        assert parse_detection(text, SCHEMA, PROMPTS).document_type in SCHEMA.types
        assert list(parse_extraction(text, INVOICE, SCHEMA)) == INVOICE.field_names
        plan = bank.plan_rows_turn(text, PROMPTS, SCHEMA)
        for finished in (True, False):
            fields, _ = bank.finish_statement(plan, text, SCHEMA, finished=finished)
            assert list(fields) == bank_fields
            lists = [fields[f] for f in ("LINE_ITEM_DESCRIPTIONS", "TRANSACTION_DATES", "TRANSACTION_AMOUNTS_PAID")]
            assert len({len(v.split(" | ")) for v in lists}) == 1


def test_a_new_document_type_is_a_yaml_change():
    from omegaconf import OmegaConf

    from docvlm.schema import DEFAULT_SCHEMA_PATH

    raw = OmegaConf.to_container(OmegaConf.load(DEFAULT_SCHEMA_PATH))
    raw["fields"].update({"PASSENGER_NAME": {"kind": "text"}, "TRAVEL_DATES": {"kind": "date", "list": True}})
    raw["types"]["TRAVEL"] = {"fields": ["DOCUMENT_TYPE", "PASSENGER_NAME", "TRAVEL_DATES", "TOTAL_AMOUNT"]}
    raw["type_aliases"]["boarding pass"] = "TRAVEL"
    schema = load_schema(raw)
    travel = schema.type_spec("TRAVEL")
    prompt = extraction_prompt(travel, PROMPTS, schema)
    assert "\nPASSENGER_NAME:" in prompt and "\nTOTAL_AMOUNT: the total amount payable" in prompt
    fields = parse_extraction("Passenger name: Ann Lee\nTravel date: 3 May 2024, 9 May 2024\nTotal: $320", travel, schema)
    assert fields == {"DOCUMENT_TYPE": "TRAVEL", "PASSENGER_NAME": "Ann Lee", "TRAVEL_DATES": "03/05/2024 | 09/05/2024",
                      "TOTAL_AMOUNT": "$320.00"}
