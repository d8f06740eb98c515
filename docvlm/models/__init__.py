"""Model layer: the protocol the pipeline codes against, a family registry and model loading."""

from __future__ import annotations

from pathlib import Path

import torch

from docvlm.models.protocol import (
    BatchResult,
    Conversations,
    ModelNotFoundError,
    ModelSpec,
    Reply,
    Request,
    VisionLanguageModel,
)

_FAMILIES: dict[str, type] = {}  # family -> plain adapter (transformers `generate`)
_STATIC: dict[str, type] = {}  # family -> the same adapter on the static engine (owned decode loop)
ENGINES = ("static", "hf")


def register_family(name: str):
    """Class decorator: adapters register themselves under their config `family` key."""

    def register(cls: type) -> type:
        cls.family = name
        _FAMILIES[name] = cls
        return cls

    return register


def register_static(cls: type) -> type:
    """Class decorator: the static-engine variant of an already registered family adapter."""
    _STATIC[cls.family] = cls
    return cls


def known_families() -> list[str]:
    return sorted(_FAMILIES)


def _adapter(family: str, engine: str = "static") -> type:
    if family not in _FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(known_families())}")
    if engine not in ENGINES:
        raise ValueError(f"unknown model engine {engine!r}; known: {', '.join(ENGINES)}")
    return _STATIC[family] if engine == "static" else _FAMILIES[family]


def check_model_path(cfg: ModelSpec) -> Path:
    """Fail fast, before any weights load, when the model folder is missing or not a model."""
    _adapter(cfg.family)
    if getattr(cfg, "random_weights", False):
        return Path(cfg.path)  # nothing is read from disk
    path = Path(cfg.path).expanduser()
    if (path / "config.json").is_file():
        if not getattr(cfg, "allow_pickle_weights", False) and not any(path.glob("*.safetensors")) \
                and any(path.glob("*.bin")):
            raise ModelNotFoundError(
                f"model folder {path} has only pickled weights (*.bin), no *.safetensors; pickles can run code "
                "when loaded. Convert them to safetensors, or set model.allow_pickle_weights=true if you trust them")
        return path
    if cfg.tiny and not (path.exists() and any(path.iterdir())):
        return path  # load_model builds the tiny model here
    problem = "does not exist" if not path.exists() else "has no config.json"
    weights = getattr(cfg, "hub_id", "") or _adapter(cfg.family).weights
    raise ModelNotFoundError(
        f"model folder {path} {problem} (family {cfg.family}). Get the weights with: "
        f"huggingface-cli download {weights} --local-dir {path}"
        + ("" if cfg.tiny else "   (or set model.tiny=true for a tiny random model)")
    )


def load_model(cfg: ModelSpec, device: torch.device) -> VisionLanguageModel:
    """Load the model of `cfg.family` from `cfg.path` onto `device` (building the tiny one if asked)."""
    path = check_model_path(cfg)
    if getattr(cfg, "random_weights", False):
        return _random_replica(cfg, torch.device(device))
    if cfg.tiny:
        from docvlm.models.tiny import ensure_tiny_model

        ensure_tiny_model(cfg.family, path)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per rank per load would drown docvlm's own progress
    return _adapter(cfg.family, getattr(cfg, "engine", "static")).load(cfg, path, torch.device(device))


def _random_replica(cfg: ModelSpec, device: torch.device) -> VisionLanguageModel:
    """The full-size architecture `cfg.name` with random weights, built on `device` (benchmarks)."""
    from docvlm.bench.architectures import build_model

    built = build_model(getattr(cfg, "name", ""), device, cfg.max_tiles)
    return _adapter(built.family, getattr(cfg, "engine", "static"))(built.model, built.processor, built.spec, device)


__all__ = [
    "BatchResult",
    "Conversations",
    "ModelNotFoundError",
    "ModelSpec",
    "Reply",
    "Request",
    "VisionLanguageModel",
    "check_model_path",
    "known_families",
    "load_model",
    "register_family",
]

# Imported last: the adapters register themselves through `register_family` above.
from docvlm.models import families as _families  # noqa: E402,F401
