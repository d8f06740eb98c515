"""What a family must bring (README "Adding a model family"): every registered family's adapter says
what it is, builds a tiny model and a full-size replica, and has its conf/model YAMLs."""

from __future__ import annotations

import pytest
import yaml

from docvlm.models.adapter import FamilyAdapter
from docvlm.models.registry import FAMILIES, ENGINES, adapter_class, engine_class, replicas
from docvlm.paths import CONF_DIR


def model_yamls() -> list[dict]:
    return [yaml.safe_load(path.read_text()) for path in sorted((CONF_DIR / "model").glob("*.yaml"))]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_family_is_one_adapter_with_its_models_and_configs(family):
    adapter = adapter_class(family)
    assert issubclass(adapter, FamilyAdapter) and adapter.family == family
    assert adapter.weights.count("/") == 1 and adapter.turn_end and adapter.model_class.__name__.endswith(
        "ForConditionalGeneration")
    assert adapter.replicas and all(replicas()[replica.name] == (family, replica) for replica in adapter.replicas)
    configs = [cfg for cfg in model_yamls() if cfg.get("family") == family]
    assert {cfg["name"] for cfg in configs if cfg.get("tiny")} == {f"tiny_{family}"}
    random = {cfg["name"] for cfg in configs if cfg.get("random_weights")}
    real = [cfg for cfg in configs if not cfg.get("tiny") and not cfg.get("random_weights")]
    assert random == {replica.name for replica in adapter.replicas}  # random_<name>.yaml, named as the checkpoint
    assert {cfg["name"] for cfg in real} >= random and all(cfg.get("hub_id") for cfg in real)


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown model family 'pixtral'; known: internvl"):
        adapter_class("pixtral")
    with pytest.raises(ValueError, match="unknown model engine 'vllm'; known: static, hf"):
        engine_class("vllm")
    assert {engine_class(name).__name__ for name in ENGINES} == {"StaticEngine", "HFEngine"}
