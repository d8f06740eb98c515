"""The document schema (types, fields, kinds, aliases, header keywords), loaded from YAML.

All domain rules live in conf/schema/*.yaml; this module only gives them a typed shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from omegaconf import DictConfig

from docvlm.paths import CONF_DIR, yaml_mapping

FIELD_KINDS = ("money", "date", "date_range", "id", "boolean", "number", "text", "doc_type")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str
    is_list: bool = False


@dataclass(frozen=True)
class DocTypeSpec:
    name: str
    flow: str  # "single" (one extraction prompt) or "bank" (multi-turn)
    fields: tuple[FieldSpec, ...]

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


@dataclass(frozen=True)
class Schema:
    not_found: str
    not_found_aliases: frozenset[str]
    list_separator: str
    default_type: str
    fields: dict[str, FieldSpec]
    types: dict[str, DocTypeSpec]
    type_aliases: dict[str, str]
    bank_header_roles: dict[str, tuple[str, ...]]
    bank_marker_roles: tuple[str, ...]
    comparators: dict[str, dict[str, Any]] = field(default_factory=dict)
    bank_merged_roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    field_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    true_words: tuple[str, ...] = ()
    false_words: tuple[str, ...] = ()
    months: dict[str, int] = field(default_factory=dict)  # lower-case month name -> 1..12
    paid_cues: tuple[str, ...] = ()
    bank_opening_rows: tuple[str, ...] = ()
    bank_skip_rows: tuple[str, ...] = ()
    bank_balance_tolerance: float = 0.01
    detection_types: dict[str, str] = field(default_factory=dict)  # rule outcome -> type; missing -> default_type

    @property
    def all_field_names(self) -> list[str]:
        """Every field of every type, in schema order (the columns of results.csv)."""
        return list(self.fields)

    def type_spec(self, doc_type: Optional[str]) -> DocTypeSpec:
        """The type's spec; None (no type known) is the default type."""
        doc_type = doc_type or self.default_type
        try:
            return self.types[doc_type]
        except KeyError:
            raise ValueError(f"unknown document type {doc_type!r}; known: {sorted(self.types)}") from None


DEFAULT_SCHEMA_PATH = CONF_DIR / "schema" / "default.yaml"


def load_schema(source: Mapping[str, Any] | DictConfig | str | Path | None = None) -> Schema:
    """Build a Schema from a mapping (e.g. the Hydra `schema` node) or a YAML path.

    None loads conf/schema/default.yaml. Raises ValueError naming the problem.
    """
    raw, _ = yaml_mapping(source, DEFAULT_SCHEMA_PATH, "schema")
    try:
        fields = {
            name: FieldSpec(name, spec["kind"], bool(spec.get("list", False)))
            for name, spec in raw["fields"].items()
        }
        types = {
            name: DocTypeSpec(name, spec.get("flow", "single"), tuple(_lookup(fields, f, name) for f in spec["fields"]))
            for name, spec in raw["types"].items()
        }
        schema = Schema(
            not_found=raw["not_found"],
            not_found_aliases=frozenset(str(a).strip().lower() for a in raw.get("not_found_aliases", [])),
            list_separator=raw.get("list_separator", " | "),
            default_type=raw["default_type"],
            fields=fields,
            types=types,
            type_aliases={str(k).lower(): v for k, v in raw.get("type_aliases", {}).items()},
            bank_header_roles={role: tuple(str(k).lower() for k in kws) for role, kws in raw.get("bank_header_roles", {}).items()},
            bank_marker_roles=tuple(raw.get("bank_marker_roles", ())),
            comparators=dict(raw.get("comparators", {})),
            bank_merged_roles={role: tuple(parts) for role, parts in raw.get("bank_merged_roles", {}).items()},
            field_aliases={str(k).upper(): _as_tuple(v) for k, v in raw.get("field_aliases", {}).items()},
            true_words=_lower_tuple(raw.get("boolean_words", {}).get("true", ())),
            false_words=_lower_tuple(raw.get("boolean_words", {}).get("false", ())),
            months={str(name).lower(): i + 1 for i, names in enumerate(raw.get("months", [])) for name in names},
            paid_cues=_lower_tuple(raw.get("paid_cues", ())),
            bank_opening_rows=_lower_tuple(raw.get("bank_opening_rows", ())),
            bank_skip_rows=_lower_tuple(raw.get("bank_skip_rows", ())),
            bank_balance_tolerance=float(raw.get("bank_balance_tolerance", 0.01)),
            detection_types=dict(raw.get("detection_types", {})),
        )
    except KeyError as err:
        raise ValueError(f"schema: missing key {err}") from None
    _validate(schema)
    return schema


def _as_tuple(value: Any) -> tuple[str, ...]:
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


def _lower_tuple(values: Any) -> tuple[str, ...]:
    return tuple(str(v).strip().lower() for v in values)


def _lookup(fields: dict[str, FieldSpec], name: str, doc_type: str) -> FieldSpec:
    if name not in fields:
        raise ValueError(f"schema: type {doc_type} lists field {name!r} that is not declared under `fields`")
    return fields[name]


def _validate(schema: Schema) -> None:
    for spec in schema.fields.values():
        if spec.kind not in FIELD_KINDS:
            raise ValueError(f"schema: field {spec.name} has kind {spec.kind!r}; allowed: {FIELD_KINDS}")
    if schema.default_type not in schema.types:
        raise ValueError(f"schema: default_type {schema.default_type!r} is not one of {sorted(schema.types)}")
    for alias, target in schema.type_aliases.items():
        if target not in schema.types:
            raise ValueError(f"schema: alias {alias!r} points to unknown type {target!r}")
    for alias, targets in schema.field_aliases.items():
        unknown = [t for t in targets if t not in schema.fields]
        if unknown:
            raise ValueError(f"schema: field alias {alias!r} points to undeclared field(s) {unknown}")
    for outcome, target in schema.detection_types.items():
        if target not in schema.types:
            raise ValueError(f"schema: detection_types.{outcome} is {target!r}, not one of {sorted(schema.types)}")
    if schema.months and len(set(schema.months.values())) != 12:
        raise ValueError("schema: `months` must list names for all 12 months, January first")
    for spec in schema.types.values():
        if spec.flow not in ("single", "bank"):
            raise ValueError(f"schema: type {spec.name} has flow {spec.flow!r}; allowed: single, bank")
