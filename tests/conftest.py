"""Shared fixtures: every family's tiny model, built once per test session."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no model hub in tests; set before transformers is imported


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """family -> <session cache>/tiny/<family>; DOCVLM_CACHE points at the session cache meanwhile."""
    from docvlm.models.tiny import build_all

    cache = tmp_path_factory.mktemp("docvlm-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DOCVLM_CACHE", str(cache))
        yield build_all(cache)


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_models: dict[str, Path]) -> Callable[[str], Path]:
    """tiny_model_dir(family) -> the folder of that family's tiny model."""
    return tiny_models.__getitem__
