"""Prompt texts (conf/prompts/*.yaml) in a typed shape; the modules that send them fill them in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from omegaconf import DictConfig

from docvlm.paths import CONF_DIR, yaml_mapping

DEFAULT_PROMPTS_PATH = CONF_DIR / "prompts" / "default.yaml"


@dataclass(frozen=True)
class Prompts:
    detection: str
    detection_keys: dict[str, tuple[str, ...]]  # evidence item -> accepted answer line names
    extraction_intro: str  # with {label}
    labels: dict[str, str]  # type -> how the prompt names it
    skip_fields: tuple[str, ...]
    hints: dict[str, str]  # field -> hint
    type_hints: dict[str, dict[str, str]]  # type -> field -> hint (overrides `hints`)
    bank_headers: str
    bank_rows: str  # with {columns} and {notes}
    bank_column_notes: dict[str, str]  # role -> note with {header}
    bank_default_headers: dict[str, str]
    bank_direct: str

    def hint(self, doc_type: str, field_name: str) -> str:
        return self.type_hints.get(doc_type, {}).get(field_name) or self.hints.get(field_name, "")


def load_prompts(source: Mapping[str, Any] | DictConfig | str | Path | None = None) -> Prompts:
    """Build Prompts from a mapping (e.g. the Hydra `prompts` node) or a YAML path.

    None loads conf/prompts/default.yaml. Raises ValueError naming the missing key.
    """
    raw, _ = yaml_mapping(source, DEFAULT_PROMPTS_PATH, "prompts")
    try:
        detection, extraction, bank = raw["detection"], raw["extraction"], raw["bank"]
        return Prompts(
            detection=detection["prompt"],
            detection_keys={k: tuple(str(v).upper() for v in vs) for k, vs in detection["answer_keys"].items()},
            extraction_intro=extraction["intro"],
            labels=dict(extraction.get("labels", {})),
            skip_fields=tuple(extraction.get("skip_fields", ())),
            hints=dict(extraction["hints"]),
            type_hints={t: dict(h) for t, h in extraction.get("type_hints", {}).items()},
            bank_headers=bank["headers"],
            bank_rows=bank["rows"],
            bank_column_notes=dict(bank["column_notes"]),
            bank_default_headers=dict(bank.get("default_headers", {})),
            bank_direct=bank["direct"],
        )
    except KeyError as err:
        raise ValueError(f"prompts: missing key {err}") from None
    except (TypeError, AttributeError) as err:
        raise ValueError(f"prompts: malformed section ({err})") from None
