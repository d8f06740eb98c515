"""Config cascade (dataclass < YAML < overrides), validation messages, num_gpus semantics."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

import docvlm.config  # noqa: F401  registers schema + resolvers
from docvlm.config import to_run_config
from docvlm.dist import check_gpu_request
from docvlm.errors import UserError
from docvlm.paths import CONF_DIR


def compose_cfg(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=["data.dir=/tmp/docs", *overrides])


def test_cascade_dataclass_then_yaml_then_overrides():
    cfg = to_run_config(compose_cfg())
    assert cfg.processing.group_window == 4  # only the dataclass sets it
    assert cfg.model.family == "internvl" and cfg.model.name == "internvl3_5_8b"  # conf/config.yaml default
    cfg = to_run_config(compose_cfg("model=tiny_qwen3_vl"))
    assert cfg.model.family == "qwen3_vl" and cfg.model.tiny  # YAML of the group beats the dataclass
    cfg = to_run_config(compose_cfg("model=tiny_qwen3_vl", "model.path=/elsewhere", "processing.batch_size=3"))
    assert cfg.model.path == "/elsewhere" and cfg.processing.batch_size == 3  # command line beats YAML


def test_keys_users_type_exist_with_documented_defaults():
    cfg = to_run_config(compose_cfg("data.ground_truth=/tmp/gt.csv", "output.dir=/tmp/out", "processing.max_tiles=6"))
    assert cfg.data.dir == "/tmp/docs" and cfg.data.ground_truth == "/tmp/gt.csv"
    assert cfg.output.dir == "/tmp/out"
    assert cfg.processing.batch_size is None and cfg.processing.num_gpus == 0
    assert cfg.model.max_tiles == 6  # the one knob reaches the model adapter


def test_debug_quick_overrides_budgets_and_limit():
    cfg = to_run_config(compose_cfg("debug=quick"))
    assert cfg.debug.limit == 4 and cfg.processing.max_new_tokens.extract == 32


@pytest.mark.parametrize(
    "override, key",
    [
        ("processing.batch_size=0", "processing.batch_size=0"),
        ("processing.num_gpus=-1", "processing.num_gpus=-1"),
        ("processing.max_tiles=0", "processing.max_tiles=0"),
        ("processing.device=tpu", "processing.device='tpu'"),
        ("model.family=gpt", "model.family='gpt'"),
        ("model.dtype=int3", "model.dtype='int3'"),
        ("processing.max_new_tokens.extract=0", "processing.max_new_tokens.extract=0"),
        ("debug.limit=0", "debug.limit=0"),
    ],
)
def test_invalid_values_name_key_value_and_allowed(override, key):
    with pytest.raises(ValueError) as err:
        to_run_config(compose_cfg(override))
    assert key in str(err.value) and "allowed" in str(err.value)


def test_wrong_type_and_unknown_key_fail_at_compose():
    with pytest.raises((ConfigCompositionException, ValidationError)):
        compose_cfg("processing.batch_size=many")
    with pytest.raises(ConfigCompositionException):
        compose_cfg("processing.batchsize=2")


def test_missing_data_dir_is_reported():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config")
    with pytest.raises(Exception) as err:
        to_run_config(cfg)
    assert "data.dir" in str(err.value)


def test_num_gpus_semantics():
    assert check_gpu_request(0, "auto", 1, available=0) == "cpu"
    assert check_gpu_request(0, "auto", 4, available=4) == "cuda"
    assert check_gpu_request(1, "auto", 1, available=8) == "cuda"
    assert check_gpu_request(3, "cpu", 2, available=0) == "cpu"
    with pytest.raises(ValueError, match=r"num_gpus=4 but only 2 GPUs"):
        check_gpu_request(4, "auto", 1, available=2)
    with pytest.raises(ValueError, match=r"num_gpus=2 .* 0 GPUs are visible"):
        check_gpu_request(2, "auto", 1, available=0)
    with pytest.raises(ValueError, match=r"4 ranks per node but processing.num_gpus=1"):
        check_gpu_request(1, "auto", 4, available=8)
    with pytest.raises(ValueError, match=r"4 ranks per node .* \(2 visible\)"):
        check_gpu_request(0, "auto", 4, available=2)


def test_a_near_miss_of_an_allowed_value_gets_a_suggestion():
    with pytest.raises(UserError, match=r"model\.family='qwen3vl': allowed one of .*; did you mean model\.family=qwen3_vl\?"):
        to_run_config(compose_cfg("model.family=qwen3vl"))
    with pytest.raises(UserError, match=r"processing\.device='cuad'.*did you mean processing\.device=cuda\?"):
        to_run_config(compose_cfg("processing.device=cuad"))


def test_unknown_keys_suggest_the_key_meant():
    from docvlm.config import unknown_key_message

    assert "did you mean processing.batch_size?" in unknown_key_message("processing.bach_size")
    assert "did you mean processing.batch_size?" in unknown_key_message("batch_size")  # the section left out
    assert "did you mean output.overwrite?" in unknown_key_message("output.overwrit")
    assert "did you mean" not in unknown_key_message("colour")  # nothing near: no guess
    with pytest.raises(UserError, match="unknown config key processing.max_tilez; did you mean processing.max_tiles"):
        to_run_config(compose_cfg("+processing.max_tilez=3"))  # Hydra lets +key through; the schema does not
