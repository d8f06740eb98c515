"""Which families and engines exist: one line each. Names only until one is used, so config validation
reads this without importing a model class."""

from __future__ import annotations

import importlib
from typing import Any

# family -> its adapter's module (docvlm/models/families/<family>.py, whose ADAPTER is the class)
FAMILIES = {
    "internvl": "docvlm.models.families.internvl",
    "qwen3_vl": "docvlm.models.families.qwen3_vl",
    "mllama": "docvlm.models.families.mllama",
    "qwen2_5_vl": "docvlm.models.families.qwen2_5_vl",
}
# engine -> module:class; each takes (model, processor, adapter, spec, device)
ENGINES = {
    "static": "docvlm.models.static_engine:StaticEngine",  # owned decode loop (CUDA graphs on GPU)
    "hf": "docvlm.models.hf_engine:HFEngine",  # transformers `generate`: the reference
}


def known_families() -> list[str]:
    return sorted(FAMILIES)


def adapter_class(family: str) -> Any:
    """The `FamilyAdapter` subclass of `family`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(known_families())}")
    return importlib.import_module(FAMILIES[family]).ADAPTER


def engine_class(engine: str) -> Any:
    if engine not in ENGINES:
        raise ValueError(f"unknown model engine {engine!r}; known: {', '.join(ENGINES)}")
    module, _, name = ENGINES[engine].partition(":")
    return getattr(importlib.import_module(module), name)


def replicas() -> dict[str, Any]:
    """Every family's full-size random replicas by name (benchmarks, conf/model/random_*.yaml)."""
    return {replica.name: (family, replica) for family in FAMILIES for replica in adapter_class(family).replicas}
