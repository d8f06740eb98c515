"""Document type detection: an evidence prompt and the rule that turns the evidence into a type.

The model is asked what it sees (table headers, paid cues, row count), not for a label, and the
rule decides: any debit/credit/balance column -> BANK_STATEMENT; else paid -> RECEIPT; else INVOICE.
A type line the model volunteers anyway is honoured (through the schema's aliases) when the table
does not already show a bank statement. No structured line at all -> the schema's default type,
with `fell_back=True`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Optional

from docvlm.bank_headers import marker_roles
from docvlm.normalize import canonical_type, parse_bool
from docvlm.parse import answer_lines, canonical_key, parse_json, split_key_value, strip_thinking
from docvlm.prompts import Prompts, load_prompts
from docvlm.schema import Schema


@dataclass
class Detection:
    document_type: str
    fell_back: bool
    evidence: dict[str, Any] = field(default_factory=dict)


def detection_prompt(prompts: Prompts, schema: Schema) -> str:
    return prompts.detection


def parse_detection(text: str, schema: Schema, prompts: Optional[Prompts] = None) -> Detection:
    """The document type from a detection answer (see the module docstring for the rule)."""
    evidence = read_evidence(text, schema, prompts)
    markers = marker_roles(evidence.get("headers") or [], schema)
    if markers:
        return Detection(_type_for("bank_columns", schema), False, {**evidence, "rule": "bank_columns", "marker_roles": markers})
    if evidence.get("type"):
        return Detection(evidence["type"], False, {**evidence, "rule": "explicit_type"})
    if evidence.get("paid") is not None:
        rule = "paid" if evidence["paid"] else "not_paid"
        return Detection(_type_for(rule, schema), False, {**evidence, "rule": rule})
    if "headers" in evidence:  # a table but no word on payment: not shown as paid
        return Detection(_type_for("not_paid", schema), False, {**evidence, "rule": "no_paid_cue"})
    return Detection(schema.default_type, True, {**evidence, "rule": "default"})


def _type_for(rule: str, schema: Schema) -> str:
    """The type a detection rule leads to (schema.detection_types in YAML); default_type if unset."""
    return schema.detection_types.get(rule, schema.default_type)


def read_evidence(text: str, schema: Schema, prompts: Optional[Prompts] = None) -> dict[str, Any]:
    """Evidence items read from the answer's structured lines only (prose is ignored).

    headers: list[str] ([] for NONE), paid: bool | None, rows: int | None, type: str (if stated).
    """
    keys = _answer_keys(prompts)
    evidence: dict[str, Any] = {}
    for key, value in _answer_pairs(text):
        item = keys.get(canonical_key(key)) if key else None
        if item and item not in evidence:
            found = _read_item(item, value, schema)
            if found is not None:
                evidence[item] = found
        elif not key and "type" not in evidence and canonical_type(value, schema):
            evidence["type"] = canonical_type(value, schema)  # a bare "RECEIPT" line
    return evidence


def _answer_pairs(text: str) -> list[tuple[str, str]]:
    """(key, value) per structured line, ("", line) for other lines. An empty value takes the
    lines below it ("TABLE_HEADERS:" then one header a line); a JSON object gives its items."""
    data = parse_json(strip_thinking(text))
    if isinstance(data, dict):
        return [(str(k), " | ".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in data.items()]
    pairs: list[tuple[str, str]] = []
    following: Optional[list[str]] = None
    for line in answer_lines(text):
        pair = split_key_value(line)
        if following is not None and line and not pair:
            following.append(line)
            continue
        if following:
            pairs[-1] = (pairs[-1][0], " | ".join(following))
        following = [] if pair and not pair[1] else None
        if pair:
            pairs.append(pair)
        elif line:
            pairs.append(("", line))
    if following:
        pairs[-1] = (pairs[-1][0], " | ".join(following))
    return pairs


def _answer_keys(prompts: Optional[Prompts]) -> dict[str, str]:
    prompts = prompts or _default_prompts()
    return {canonical_key(name): item for item, names in prompts.detection_keys.items() for name in names}


@lru_cache(maxsize=1)
def _default_prompts() -> Prompts:
    return load_prompts()  # conf/prompts/default.yaml, when the caller passes no prompts


def _read_item(item: str, value: str, schema: Schema) -> Any:
    if item == "headers":
        return _headers(value, schema)
    if item == "paid":
        return _paid(value, schema)
    if item == "rows":
        match = re.search(r"\d+", value)
        return int(match.group()) if match else None
    return canonical_type(value, schema)


def _headers(value: str, schema: Schema) -> list[str]:
    if value.strip().lower().strip(".") in schema.not_found_aliases | {"no table", "no"}:
        return []
    parts = re.split(r"\s*\|\s*|\s*,\s*|\t|\s*;\s*", value.strip().strip("|"))
    return [p.strip().strip("\"'") for p in parts if p.strip().strip("\"'")]


def _paid(value: str, schema: Schema) -> Optional[bool]:
    """YES/NO, or words: a paid cue ("EFTPOS", "PAID stamp") counts as paid unless negated first."""
    answer = parse_bool(value, schema)
    if answer is not None:
        return answer
    lowered = value.lower()
    if any(re.search(rf"(?<![a-z]){re.escape(cue)}(?![a-z])", lowered) for cue in schema.paid_cues):
        return True
    return None
