"""Loading a model: path checks before any weights load, then an engine over the model and its family's adapter."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel, ProcessorMixin
from transformers.utils import logging as hf_logging

from docvlm.models.patch_embedding import linear_patch_embeddings
from docvlm.models.protocol import (
    BatchResult,
    Conversations,
    ModelNotFoundError,
    ModelSpec,
    Reply,
    Request,
    VisionLanguageModel,
)
from docvlm.models.registry import FAMILIES, adapter_class, engine_class


def check_model_path(cfg: ModelSpec) -> Path:
    """Fail fast, before any weights load, when the model folder is missing or not a model."""
    adapter = adapter_class(cfg.family)
    if cfg.random_weights:
        return Path(cfg.path)  # nothing is read from disk
    path = Path(cfg.path).expanduser()
    if (path / "config.json").is_file():
        if not cfg.allow_pickle_weights and not any(path.glob("*.safetensors")) \
                and any(path.glob("*.bin")):
            raise ModelNotFoundError(
                f"model folder {path} has only pickled weights (*.bin), no *.safetensors; pickles can run code "
                "when loaded. Convert them to safetensors, or set model.allow_pickle_weights=true if you trust them")
        return path
    if cfg.tiny and not (path.exists() and any(path.iterdir())):
        return path  # load_model builds the tiny model here
    problem = "does not exist" if not path.exists() else "has no config.json"
    weights = cfg.hub_id or adapter.weights
    raise ModelNotFoundError(
        f"model folder {path} {problem} (family {cfg.family}). Get the weights with: "
        f"hf download {weights} --local-dir {path}"
        + ("" if cfg.tiny else "   (or set model.tiny=true for a tiny random model)")
    )


def build_engine(engine: str, model: PreTrainedModel, processor: ProcessorMixin, spec: ModelSpec,
                 device: torch.device) -> VisionLanguageModel:
    """The engine `engine` over a loaded model: the family's adapter (from `spec.family`) in between.
    Degenerate 3-D convolutions (Qwen-VL's patch embeddings) run as matrix products (patch_embedding.py)."""
    linear_patch_embeddings(model)
    name = spec.name or f"{spec.family}:{Path(spec.path).name}"
    adapter = adapter_class(spec.family)(model, processor, spec, name)
    return engine_class(engine)(model, processor, adapter, spec, device)


def load_model(cfg: ModelSpec, device: torch.device) -> VisionLanguageModel:
    """Load the model of `cfg.family` from `cfg.path` onto `device` (building the tiny one if asked)."""
    path = check_model_path(cfg)
    engine = cfg.engine
    engine_class(engine)  # an unknown engine fails before any weights load
    device = torch.device(device)
    hf_logging.disable_progress_bar()  # one bar per rank per load would drown docvlm's own progress
    if cfg.random_weights:
        return _random_weights(cfg, device, engine)
    if cfg.tiny:
        from docvlm.models.tiny import ensure_tiny_model

        ensure_tiny_model(cfg.family, path)
    from docvlm.models.hf_engine import load_pretrained

    model, processor = load_pretrained(cfg, path, device)
    return build_engine(engine, model, processor, cfg, device)


def _random_weights(cfg: ModelSpec, device: torch.device, engine: str) -> VisionLanguageModel:
    """Benchmarks: the full-size architecture `cfg.name` with random weights (replicas.py), or, named
    tiny_<family>, that family's tiny model (random weights too)."""
    from docvlm.models.hf_engine import load_pretrained
    from docvlm.models.replicas import build_replica, replica_names
    from docvlm.models.tiny import ensure_tiny_model, tiny_model_path

    if cfg.name in replica_names():
        built = build_replica(cfg.name, device, cfg.max_tiles)
        return build_engine(engine, built.model, built.processor, built.spec, device)
    family = cfg.name.removeprefix("tiny_")
    if family not in FAMILIES:
        known = [*replica_names(), *(f"tiny_{name}" for name in FAMILIES)]
        raise ValueError(f"unknown random-weights model {cfg.name!r}; known: {', '.join(known)}")
    path = ensure_tiny_model(family, tiny_model_path(family))
    spec = ModelSpec(family=family, path=str(path), tiny=True, max_tiles=cfg.max_tiles, engine=engine)
    model, processor = load_pretrained(spec, path, device)
    return build_engine(engine, model, processor, spec, device)
