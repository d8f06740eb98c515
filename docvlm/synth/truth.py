"""Ground truth: typed values from the generators rendered as the evaluator's strings, by field kind.

Generators return Python values (Decimal money, `date`, `bool`, lists, None for "not on the page");
this module turns them into the conventions of the schema (money "$1020.22", dates DD/MM/YYYY,
lists joined with the schema's separator, the schema's NOT_FOUND marker), so the formatting rules
live in one place and every generated value is already in normalised form.
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any, Mapping

from docvlm.schema import FieldSpec, Schema

Value = Any  # str | Decimal | date | tuple[date, date] | bool | None | list of those


def render_fields(values: Mapping[str, Value], doc_type: str, schema: Schema) -> dict[str, str]:
    """One CSV row (every schema field) for a document of `doc_type`.

    `values` must hold exactly the type's fields: a generator that misses one (e.g. after a field was
    added to the schema YAML) is an error, never a silently wrong ground truth.
    """
    expected = schema.type_spec(doc_type).field_names
    missing = [name for name in expected if name not in values]
    extra = [name for name in values if name not in expected]
    if missing or extra:
        raise ValueError(f"synthetic {doc_type} generator: missing fields {missing}, unexpected fields {extra}")
    row = {name: schema.not_found for name in schema.all_field_names}
    for name in expected:
        row[name] = render_value(values[name], schema.fields[name], schema)
    return row


def render_value(value: Value, spec: FieldSpec, schema: Schema) -> str:
    if spec.is_list:
        if value is None or len(value) == 0:
            return schema.not_found
        return schema.list_separator.join(_render_item(item, spec, schema) for item in value)
    return _render_item(value, spec, schema)


def _render_item(value: Value, spec: FieldSpec, schema: Schema) -> str:
    if value is None:
        return schema.not_found
    kind = spec.kind
    if kind == "money":
        return f"${Decimal(value):.2f}"
    if kind == "date":
        return _date(value)
    if kind == "date_range":
        start, end = value
        return f"{_date(start)} - {_date(end)}"
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "number":
        return format(Decimal(value).normalize(), "f")
    if kind == "id":
        return re.sub(r"\D", "", str(value))
    if kind in ("text", "doc_type"):
        return " ".join(str(value).split())
    raise ValueError(f"field {spec.name}: no ground-truth rendering for kind {kind!r}")


def _date(value: date) -> str:
    return value.strftime("%d/%m/%Y")
