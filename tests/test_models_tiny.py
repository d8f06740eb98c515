"""The tiny-model builder: real classes, deterministic, offline-loadable, safe under racing processes."""

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from docvlm.models.tiny import FAMILIES, build_tiny_model, ensure_tiny_model, tiny_model_path

CLASSES = {
    "internvl": "InternVLForConditionalGeneration",
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "mllama": "MllamaForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
}

LOAD_ALL = """
import sys, torch
from transformers import AutoModelForImageTextToText, AutoProcessor
for path in sys.argv[1:]:
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32, use_safetensors=True)
    processor = AutoProcessor.from_pretrained(path)
    print(type(model).__name__, type(processor).__name__)
"""


def test_the_session_models_are_the_real_classes_and_small(tiny_models):
    assert sorted(tiny_models) == sorted(FAMILIES)
    for family, path in tiny_models.items():
        assert path == tiny_model_path(family, path.parents[1])
        config = json.loads((path / "config.json").read_text())
        assert config["architectures"] == [CLASSES[family]]
        assert (path / "model.safetensors").is_file() and not list(path.glob("*.bin"))
        assert (path / "chat_template.jinja").is_file()
        size = sum(file.stat().st_size for file in path.iterdir())
        assert size < 6_000_000, f"{family} tiny model is {size} bytes"


def test_the_cache_env_points_at_the_session_models(tiny_models):
    assert Path(os.environ["DOCVLM_CACHE"]) == tiny_models["internvl"].parents[1]


def test_they_load_through_the_auto_classes_with_the_hub_offline(tiny_models):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    paths = [str(tiny_models[family]) for family in FAMILIES]
    out = subprocess.run(
        [sys.executable, "-c", LOAD_ALL, *paths], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == [
        "InternVLForConditionalGeneration", "InternVLProcessor",
        "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor",
        "MllamaForConditionalGeneration", "MllamaProcessor",
        "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor",
    ]  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_files_other_seed_other_weights(tmp_path, tiny_models, family):
    again = build_tiny_model(family, tmp_path / "again", seed=0)
    other = build_tiny_model(family, tmp_path / "other", seed=1)
    reference = tiny_models[family]
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (reference / name).read_bytes(), name
    assert (other / "model.safetensors").read_bytes() != (reference / "model.safetensors").read_bytes()


def test_ensure_builds_once_and_survives_racing_builders(tmp_path):
    path = tmp_path / "tiny" / "internvl"
    errors: list[BaseException] = []

    def build() -> None:
        try:
            ensure_tiny_model("internvl", path)
        except BaseException as error:  # noqa: BLE001 - reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model("internvl", path) == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in path.parent.iterdir() if not p.name.endswith(".lock")] == ["internvl"]  # no temp left


def test_ensure_refuses_to_replace_a_folder_that_is_not_a_model(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds files but no model"):
        ensure_tiny_model("qwen3_vl", folder)
    assert (folder / "notes.txt").read_text() == "keep me"


def test_unknown_family_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown model family 'pixtral'"):
        build_tiny_model("pixtral", tmp_path / "x")
