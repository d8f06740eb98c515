"""The benchmark's models: full-size random-weight replicas of the real checkpoints, or the tiny ones.

A full-size replica is built by the model layer (docvlm/models/replicas.py, from its family adapter's
`Replica`: the real checkpoint's config, random weights, real image settings); the benchmark checks
its parameter count against the checkpoint and times the build. A tiny model (`tiny_<family>`) goes
through the ordinary loading path (`docvlm.models.load_model`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from transformers import GenerationConfig, PreTrainedModel, ProcessorMixin

from docvlm.models import ModelSpec, known_families, load_model
from docvlm.models.registry import replicas
from docvlm.models.replicas import build_replica
from docvlm.models.runs import sync
from docvlm.models.tiny import tiny_model_path

PARAM_TOLERANCE = 0.03
ARCHITECTURES = replicas()  # name -> (family, Replica)
TINY_MODELS = {f"tiny_{family}": family for family in known_families()}
MODEL_NAMES = (*ARCHITECTURES, *TINY_MODELS)


@dataclass
class BuiltModel:
    name: str
    family: str
    model: PreTrainedModel
    processor: ProcessorMixin
    spec: ModelSpec  # what the engines are constructed with
    generation_config: GenerationConfig  # as saved: end ids (an engine replaces the model's own copy)
    build_s: float  # device-synchronised build (or load) time
    params: int
    expected_params: float | None  # None for tiny models


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_param_count(name: str, params: int, expected: float) -> None:
    """A replica off by more than a few percent is not the architecture the numbers claim to be."""
    if abs(params - expected) > PARAM_TOLERANCE * expected:
        raise ValueError(f"{name}: replica has {params / 1e9:.3f}B parameters, the checkpoint {expected / 1e9:.2f}B")


def build_model(name: str, device: torch.device, max_tiles: int = 12) -> BuiltModel:
    """`name` from MODEL_NAMES: a full-size random replica on `device`, or a tiny model loaded there."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown benchmark model {name!r}; known: {', '.join(MODEL_NAMES)}")
    started = time.perf_counter()
    if name in TINY_MODELS:
        return _load_tiny(name, device, max_tiles, started)
    built = build_replica(name, device, max_tiles)
    sync(device)
    params = count_params(built.model)
    check_param_count(name, params, built.expected_params)
    return BuiltModel(name, built.family, built.model, built.processor, built.spec, built.generation_config,
                      time.perf_counter() - started, params, built.expected_params)


def _load_tiny(name: str, device: torch.device, max_tiles: int, started: float) -> BuiltModel:
    family = TINY_MODELS[name]
    spec = ModelSpec(family=family, path=str(tiny_model_path(family)), tiny=True, max_tiles=max_tiles)
    engine = load_model(spec, device)
    sync(device)
    model = engine.model
    generation = GenerationConfig.from_pretrained(spec.path, local_files_only=True)  # as saved with the model
    return BuiltModel(name, family, model, engine.processor, spec, generation, time.perf_counter() - started,
                      count_params(model), None)
