"""Registry and loading: family lookup, path checks before any weights load, dtype and tile settings."""

import pytest
import torch

from docvlm.config import ModelConfig
from docvlm.models import ModelNotFoundError, ModelSpec, check_model_path, known_families, load_model
from docvlm.models.hf_engine import resolve_dtype

CPU = torch.device("cpu")


def model_config(*args, **kwargs) -> ModelConfig:
    """The config's model section (a ModelSpec with validation), as tests here build it."""
    return ModelConfig(*args, **{"name": "", "max_tiles": 4, **kwargs})


def test_the_four_families_are_registered():
    assert known_families() == ["internvl", "mllama", "qwen2_5_vl", "qwen3_vl"]


@pytest.mark.parametrize(
    ("family", "repo"),
    [
        ("internvl", "OpenGVLab/InternVL3_5-8B-HF"),
        ("qwen3_vl", "Qwen/Qwen3-VL-8B-Instruct"),
        ("mllama", "meta-llama/Llama-3.2-11B-Vision-Instruct"),
        ("qwen2_5_vl", "Qwen/Qwen2.5-VL-7B-Instruct"),
    ],
)
def test_a_missing_model_names_the_path_and_how_to_get_it(tmp_path, family, repo):
    missing = tmp_path / "weights" / family
    spec = ModelSpec(family=family, path=str(missing))
    for call in (lambda: check_model_path(spec), lambda: load_model(spec, CPU)):
        with pytest.raises(ModelNotFoundError) as error:
            call()
        message = str(error.value)
        assert str(missing) in message and "does not exist" in message
        assert f"hf download {repo} --local-dir {missing}" in message
    assert not missing.exists()


def test_the_configs_hub_id_names_where_to_get_the_weights(tmp_path):
    spec = model_config(family="internvl", path=str(tmp_path / "none"))
    spec.hub_id = "OpenGVLab/InternVL3_5-2B-HF"
    with pytest.raises(ModelNotFoundError, match="hf download OpenGVLab/InternVL3_5-2B-HF --local-dir"):
        check_model_path(spec)


def test_a_folder_without_config_json_is_not_a_model(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match="has no config.json"):
        check_model_path(ModelSpec(family="internvl", path=str(tmp_path)))
    with pytest.raises(ModelNotFoundError, match="has no config.json"):  # tiny must not overwrite it either
        check_model_path(ModelSpec(family="internvl", path=str(tmp_path), tiny=True))
    assert isinstance(ModelNotFoundError("x"), ValueError)


def test_an_unknown_family_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown model family 'pixtral'; known: internvl, mllama, qwen2_5_vl, qwen3_vl"):
        check_model_path(ModelSpec(family="pixtral", path=str(tmp_path)))


def test_tiny_builds_the_model_where_the_config_points(tmp_path):
    path = tmp_path / "tiny" / "qwen3_vl"
    assert check_model_path(ModelSpec(family="qwen3_vl", path=str(path), tiny=True)) == path  # no error yet
    model = load_model(model_config(family="qwen3_vl", path=str(path), tiny=True), CPU)
    assert (path / "config.json").is_file()
    assert model.name == "qwen3_vl:qwen3_vl" and model.device == CPU and model.dtype == torch.float32
    assert type(model.model).__name__ == "Qwen3VLForConditionalGeneration"


def test_loading_applies_dtype_and_tiles(tiny_models):
    internvl = load_model(model_config("internvl", str(tiny_models["internvl"]), dtype="bfloat16", max_tiles=2), CPU)
    assert internvl.dtype == torch.bfloat16 and next(internvl.model.parameters()).dtype == torch.bfloat16
    assert internvl.adapter.image_kwargs()["max_patches"] == 2
    mllama = load_model(model_config("mllama", str(tiny_models["mllama"]), max_tiles=2), CPU)
    assert mllama.processor.image_processor.max_image_tiles == 2
    qwen = load_model(model_config("qwen3_vl", str(tiny_models["qwen3_vl"]), max_tiles=3), CPU)
    assert qwen.adapter.image_kwargs()["size"]["longest_edge"] == 3 * 256 * 32 * 32
    capped = load_model(model_config("mllama", str(tiny_models["mllama"]), max_tiles=12), CPU)
    assert capped.processor.image_processor.max_image_tiles == 4  # the model's own limit


def test_fewer_tiles_give_fewer_image_tokens(tiny_models):
    from PIL import Image

    from docvlm.models import Request

    request = Request(Image.new("RGB", (200, 40), "white"), "x", 1)
    counts = []
    for tiles in (1, 4):
        engine = load_model(model_config("internvl", str(tiny_models["internvl"]), max_tiles=tiles), CPU)
        counts.append(engine.generate([request]).replies[0].prompt_tokens)
    assert counts[0] < counts[1]


def test_dtype_resolution():
    assert resolve_dtype("auto", CPU) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda", 0)) == torch.bfloat16
    assert resolve_dtype("float16", CPU) == torch.float16
    with pytest.raises(ValueError, match="model dtype 'fp8'"):
        resolve_dtype("fp8", CPU)


def test_pickled_weights_are_refused_unless_allowed(tmp_path, tiny_models):
    """A checkpoint with only a pickled .bin: refused by default (safetensors only), loaded when allowed."""
    from safetensors.torch import load_file

    source = tiny_models["mllama"]
    target = tmp_path / "pickled"
    target.mkdir()
    for file in source.iterdir():
        if file.name != "model.safetensors":
            (target / file.name).write_bytes(file.read_bytes())
    torch.save(load_file(source / "model.safetensors"), target / "pytorch_model.bin")
    with pytest.raises(ModelNotFoundError, match=r"only pickled weights .* model.allow_pickle_weights=true"):
        load_model(model_config("mllama", str(target)), CPU)  # refused before transformers reads anything
    engine = load_model(model_config("mllama", str(target), allow_pickle_weights=True), CPU)
    expected = load_file(source / "model.safetensors")["language_model.lm_head.weight"]  # checkpoint key
    assert torch.equal(engine.model.get_output_embeddings().weight, expected)
