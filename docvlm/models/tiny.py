"""Tiny randomly initialised models of the REAL classes, for CPU tests and dry runs.

Each family's tiny model (its adapter's `tiny()`: 2-3 text layers, hidden 64, 2 vision layers, a
byte-level BPE tokenizer with the special tokens its processor looks up and a chat template shaped
like the real one) is a real transformers model class. It is saved with `save_pretrained`
(safetensors) and loads through the ordinary `AutoModelForImageTextToText` / `AutoProcessor` path, so
the engine code under test is the real one.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch

from docvlm.models import registry
from docvlm.paths import cache_dir as default_cache_dir

FAMILIES = tuple(registry.FAMILIES)


def _write(family: str, target: Path, seed: int) -> None:
    adapter = registry.adapter_class(family)
    tiny = adapter.tiny()
    with torch.random.fork_rng():  # seed the weights without touching the caller's random state
        torch.manual_seed(seed)
        model = adapter.model_class(tiny.config).eval()
    adapter.finish_tiny(model)
    model.generation_config = tiny.generation_config
    model.save_pretrained(target)
    tiny.processor.save_pretrained(target)


def is_built(path: Path) -> bool:
    return (Path(path) / "config.json").is_file()


@contextmanager
def _lock(path: Path):
    """An exclusive lock beside `path`: torchrun ranks race to build the same tiny model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_tiny_model(family: str, path: Path, seed: int = 0) -> Path:
    """Build the tiny model of `family` at `path` (replacing what is there); same seed -> same files."""
    if family not in registry.FAMILIES:
        raise ValueError(f"unknown model family {family!r}; tiny models exist for {', '.join(FAMILIES)}")
    path = Path(path)
    with _lock(path):
        return _build_locked(family, path, seed)


def _build_locked(family: str, path: Path, seed: int) -> Path:
    # Build in a temp dir beside the target, then rename: readers never see a half-written model.
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        _write(family, tmp, seed)
        if not is_built(tmp) or not any(tmp.glob("*.safetensors")):
            # e.g. save_pretrained on a non-zero torch.distributed rank writes no weights
            raise RuntimeError(f"building the tiny {family} model in {tmp} wrote no config/weights")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def ensure_tiny_model(family: str, path: Path, seed: int = 0) -> Path:
    """Build the tiny model only if `path` holds no model yet (safe when several processes race)."""
    path = Path(path)
    if is_built(path):
        return path
    with _lock(path):
        if is_built(path):  # another process built it while we waited
            return path
        if path.is_dir() and any(path.iterdir()):
            raise ValueError(f"{path} holds files but no model (no config.json); not replacing it with a tiny model")
        return _build_locked(family, path, seed)


def tiny_model_path(family: str, cache_dir: Path | None = None) -> Path:
    """Where the config's tiny models live: <cache_dir>/tiny/<family>."""
    return Path(cache_dir or default_cache_dir()) / "tiny" / family


def build_all(cache_dir: Path | None = None) -> dict[str, Path]:
    """Build every family's tiny model under `<cache_dir>/tiny/<family>` (default: $DOCVLM_CACHE)."""
    return {family: build_tiny_model(family, tiny_model_path(family, cache_dir)) for family in FAMILIES}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the tiny test models of every family.")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $DOCVLM_CACHE or ~/.cache/docvlm")
    args = parser.parse_args(argv)
    for family, path in build_all(args.cache_dir).items():
        print(f"{family}: {path}")


if __name__ == "__main__":
    main()
