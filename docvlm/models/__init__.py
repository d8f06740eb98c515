"""Model layer: the protocol the pipeline codes against, the family/engine registry and model loading.

A model is an engine (registry.ENGINES: `static` or `hf`) over a loaded transformers model, its
processor and its family's adapter (registry.FAMILIES, docvlm/models/families/). The names below load
on first use, so `docvlm.models.registry` (config validation) imports no torch or transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchResult": "protocol",
    "Conversations": "protocol",
    "ModelNotFoundError": "protocol",
    "ModelSpec": "protocol",
    "Reply": "protocol",
    "Request": "protocol",
    "VisionLanguageModel": "protocol",
    "ENGINES": "registry",
    "known_families": "registry",
    "build_engine": "loading",
    "check_model_path": "loading",
    "load_model": "loading",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
