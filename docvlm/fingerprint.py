"""Fingerprints that decide whether a record of an earlier run still belongs to this run (resume).

A part record is reused only when BOTH of its fingerprints match this run's:

- The document's: the size and modification time (ns) of its file, not a hash of its bytes.
  Discovery runs on every rank over the whole data folder at every (re)start; a content hash would
  read every byte of every document on every rank before any work (100,000 scans of a few MB each on
  a network file system: an hour), while the stat is nearly free. Every ordinary way of changing a
  document changes its mtime: rewriting or replacing it, copying other bytes over it (cp, scp), or
  pointing data.dir at another folder with the same names. The blind spot: other bytes of the same
  size written with the old mtime restored (`touch -d`, `rsync -t` of a different file).
- The settings': a digest of every setting that changes answers (model name and weights folder,
  engine, dtype, prompts, schema, token budgets, tiles, shared prefill, OCR rules, ...). Settings
  that change only speed or bookkeeping (batch size, ranks, sharding, timeouts, retries, limits) are
  left out, so a resume with more ranks or another batch size keeps every record.

The settings themselves sit in output.dir/parts/settings.json, so a run with other settings can name
what differs; it stops at the start rather than mixing answers of two settings in one results file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from docvlm.errors import UserError
from docvlm.outputs import PARTS_DIR, atomic_write_text
from docvlm.paths import CONF_DIR, yaml_mapping

if TYPE_CHECKING:
    from docvlm.config import RunConfig

SETTINGS_FILE = "settings.json"  # under output.dir/parts, beside the records it describes
UNREADABLE = "unreadable"  # a file that cannot be stat'ed: its record says why, at load time
_DIGESTS = ("schema", "prompts", "ocr rules")  # settings kept as a digest of their YAML content


def of_file(path: Path) -> str:
    """The document fingerprint: "size=N;mtime_ns=N" of the file (a symbolic link: of its target)."""
    try:
        info = os.stat(path)
    except OSError:
        return UNREADABLE
    return f"size={info.st_size};mtime_ns={info.st_mtime_ns}"


def run_settings(run_cfg: "RunConfig") -> dict[str, Any]:
    """Every setting that changes a document's answer, by config key (the YAML files by digest)."""
    model, processing = run_cfg.model, run_cfg.processing
    settings: dict[str, Any] = {
        "model.name": model.name,
        "model.family": model.family,
        "schema": _yaml_digest(run_cfg.schema, "schema"),
        "data.pdf_dpi": run_cfg.data.pdf_dpi,
        "data.extensions": sorted({e.lower() for e in run_cfg.data.extensions}),
        "validation.grounding": run_cfg.validation.grounding,
    }
    if model.family == "ocr" or run_cfg.validation.grounding:
        settings["ocr rules"] = _yaml_digest(None, "ocr")
    if model.family == "ocr":
        return settings  # the VLM knobs below do not touch the OCR engine's answers
    settings.update({
        "model.path": str(Path(model.path).expanduser().resolve()),
        "model.random_weights": model.random_weights,
        "model.dtype": model.dtype,
        "model.engine": model.engine,
        "model.attn_implementation": model.attn_implementation,
        "processing.max_tiles": processing.max_tiles,
        **{f"processing.max_new_tokens.{stage}": n for stage, n in vars(processing.max_new_tokens).items()},
        "processing.force_length": processing.force_length,
        "processing.shared_prefill": processing.shared_prefill,
        "debug.route_by_ground_truth": run_cfg.debug.route_by_ground_truth,
        "prompts": _yaml_digest(run_cfg.prompts, "prompts"),
    })
    return settings


def _yaml_digest(source: Any, group: str) -> str:
    """Digest of a config group's content: the composed node, or conf/<group>/default.yaml (None)."""
    return digest(yaml_mapping(source, CONF_DIR / group / "default.yaml", group)[0])


def digest(value: Any) -> str:
    """A short, stable digest of JSON-like data (key order does not matter)."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def check_output_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    """Raise UserError when output.dir holds records made with other settings (or with unknown ones)."""
    parts_dir = out_dir / PARTS_DIR
    if not _has_records(parts_dir):
        return  # nothing recorded yet (or only a crash before the first record): nothing to mix with
    stored = _read_settings(parts_dir)
    ways_out = "use output.overwrite=true to start again there (deletes those results), or another output.dir"
    if stored is None:
        raise UserError(f"output.dir={out_dir} holds results without a record of their settings (an older "
                        f"docvlm): {ways_out}")
    if stored != settings:
        raise UserError(f"output.dir={out_dir} holds results of other settings ({differences(stored, settings)}): "
                        f"{ways_out}")


def write_settings(out_dir: Path, settings: dict[str, Any]) -> None:
    """The settings of the records under output.dir/parts (rank 0, once the check passed)."""
    atomic_write_text(out_dir / PARTS_DIR / SETTINGS_FILE, json.dumps(
        {"fingerprint": digest(settings), "settings": settings}, indent=2, ensure_ascii=False) + "\n")


def differences(old: dict[str, Any], new: dict[str, Any], most: int = 4) -> str:
    """'model.name: 'ocr' there, 'tiny_internvl' now; schema: changed', the first `most` keys."""
    keys = [*new, *(key for key in old if key not in new)]  # the same order on every rank
    changed = [key for key in keys if old.get(key) != new.get(key)]
    parts = [_difference(key, old.get(key), new.get(key)) for key in changed[:most]]
    more = f"; {len(changed) - most} more" if len(changed) > most else ""
    return "; ".join(parts) + more


def _difference(key: str, old: Any, new: Any) -> str:
    if key in _DIGESTS and old is not None and new is not None:
        return f"{key}: changed"  # a digest of a YAML file means nothing to a reader
    return f"{key}: {_shown(key, old)} there, {_shown(key, new)} now"


def _shown(key: str, value: Any) -> str:
    if value is None:
        return "not used"
    return "used" if key in _DIGESTS else repr(value)


def _has_records(parts_dir: Path) -> bool:
    return any(part.stat().st_size > 0 for part in parts_dir.glob("rank-*.jsonl"))


def _read_settings(parts_dir: Path) -> Optional[dict[str, Any]]:
    try:
        return json.loads((parts_dir / SETTINGS_FILE).read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
