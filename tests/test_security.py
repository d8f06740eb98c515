"""Security: no remote code, no pickled weights unless asked, output names never escape output.dir."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from docvlm.config import ModelConfig
from docvlm.inputs import safe_name
from docvlm.models import hf_engine, load_model
from docvlm.paths import CONF_DIR


class _Stop(Exception):
    pass


def _loader_kwargs(monkeypatch, cfg: ModelConfig) -> dict:
    seen: dict = {}

    def record(path, **kwargs):
        seen.update(kwargs)
        raise _Stop

    monkeypatch.setattr(hf_engine.AutoModelForImageTextToText, "from_pretrained", record)
    with pytest.raises(_Stop):
        load_model(cfg, torch.device("cpu"))
    return seen


def test_trust_remote_code_and_pickle_stay_off_unless_set(monkeypatch, tiny_models):
    cfg = ModelConfig(family="internvl", path=str(tiny_models["internvl"]))
    kwargs = _loader_kwargs(monkeypatch, cfg)
    assert kwargs["trust_remote_code"] is False and kwargs["use_safetensors"] is True
    cfg.trust_remote_code, cfg.allow_pickle_weights = True, True
    kwargs = _loader_kwargs(monkeypatch, cfg)
    assert kwargs["trust_remote_code"] is True and kwargs["use_safetensors"] is None


def test_no_shipped_model_config_turns_remote_code_or_pickle_on():
    for path in sorted((CONF_DIR / "model").glob("*.yaml")):
        cfg = yaml.safe_load(path.read_text()) or {}
        assert not cfg.get("trust_remote_code") and not cfg.get("allow_pickle_weights"), path


def test_pickled_weights_are_refused_unless_allowed(tiny_models, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_models["internvl"], folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    cfg = ModelConfig(family="internvl", path=str(folder))
    with pytest.raises(Exception, match=r"(?i)safetensors") as refused:
        load_model(cfg, torch.device("cpu"))
    assert str(folder) in str(refused.value) or "model.safetensors" in str(refused.value)
    cfg.allow_pickle_weights = True
    assert load_model(cfg, torch.device("cpu")) is not None


@pytest.mark.parametrize("doc_id", ["../../etc/passwd", "a/../../b.png", "..", ".hidden", "/abs/x.png",
                                    "x\\..\\..\\y.png", "scan#page=2", "caf\udce9.png", "a" * 500])
def test_output_names_never_escape_the_output_dir(doc_id, tmp_path):
    name = safe_name(doc_id)
    target = (tmp_path / name).resolve()
    assert target.parent == tmp_path.resolve() and name not in ("", ".", "..")
    assert "/" not in name and "\\" not in name and not name.startswith(".")
    target.write_text("x")  # a real, writable file name


def test_different_ids_get_different_names():
    ids = ["a/b.png", "a_b.png", "a:b.png", "a b.png", "../a_b.png"]
    assert len({safe_name(i) for i in ids}) == len(ids)
