"""Invoice/receipt extraction: the prompt listing a type's fields, and its answer -> fields."""

from __future__ import annotations

from docvlm.normalize import normalize_fields
from docvlm.parse import parse_field_answer
from docvlm.prompts import Prompts
from docvlm.schema import DocTypeSpec, Schema


def extraction_prompt(doc_type: DocTypeSpec, prompts: Prompts, schema: Schema) -> str:
    """The intro, then one "FIELD: hint" line per field of the type, in schema order."""
    label = prompts.labels.get(doc_type.name, doc_type.name.lower().replace("_", " "))
    lines = [prompts.extraction_intro.format(label=label), ""]
    for name in doc_type.field_names:
        if name not in prompts.skip_fields:
            lines.append(f"{name}: {prompts.hint(doc_type.name, name)}".rstrip())
    return "\n".join(lines)


def parse_extraction(text: str, doc_type: DocTypeSpec, schema: Schema) -> dict[str, str]:
    """Every field of the type, normalised (NOT_FOUND where missing); DOCUMENT_TYPE = the type
    the answer was asked for (the detected one), whatever the model wrote."""
    raw = parse_field_answer(text, doc_type, schema)
    if "DOCUMENT_TYPE" in doc_type.field_names:
        raw["DOCUMENT_TYPE"] = doc_type.name
    return normalize_fields(raw, doc_type, schema)
