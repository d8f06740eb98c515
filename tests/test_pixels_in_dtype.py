"""Qwen-VL processors patchify in the model's dtype: exactly the values the engine's cast gave afterwards,
the processor still saved and reloaded as itself, float32 models untouched."""

import json

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from docvlm.models import ModelSpec, load_model
from docvlm.models.pixels_in_dtype import patchify_in_model_dtype


def noise_page(width: int = 300, height: int = 420) -> Image.Image:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator)
    return Image.fromarray(pixels.numpy())


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_pixels_are_the_cast_of_the_processors_own(tiny_models, family, tmp_path):
    processor = AutoProcessor.from_pretrained(tiny_models[family])
    original_class = type(processor.image_processor)
    call = {"images": [noise_page()], "text": ["<|vision_start|><|image_pad|><|vision_end|>read"],
            "return_tensors": "pt"}
    before = processor(**call)
    assert before["pixel_values"].dtype == torch.float32
    assert patchify_in_model_dtype(processor.image_processor, torch.bfloat16)
    assert patchify_in_model_dtype(processor.image_processor, torch.bfloat16)  # again: no second layer
    assert type(processor.image_processor).__mro__[1] is original_class
    after = processor(**call)
    assert after["pixel_values"].dtype == torch.bfloat16
    assert torch.equal(after["pixel_values"], before["pixel_values"].to(torch.bfloat16))
    assert after.keys() == before.keys()
    assert all(torch.equal(after[key], before[key]) for key in before if key != "pixel_values")
    # another dtype later: the processor's own patchify under it, not the bf16 one's
    assert patchify_in_model_dtype(processor.image_processor, torch.float16)
    assert torch.equal(processor(**call)["pixel_values"], before["pixel_values"].to(torch.float16))
    # and a float32 model over it: the processor's own class again, float32 pixels
    assert not patchify_in_model_dtype(processor.image_processor, torch.float32)
    assert type(processor.image_processor) is original_class and torch.equal(processor(**call)["pixel_values"],
                                                                             before["pixel_values"])
    assert patchify_in_model_dtype(processor.image_processor, torch.bfloat16)
    # saved and reloaded as the processor it is, with nothing of ours in its settings
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    settings = saved.get("image_processor", saved)
    assert settings["image_processor_type"] == original_class.__name__
    assert type(AutoProcessor.from_pretrained(tmp_path).image_processor) is original_class


def test_float32_models_and_processors_without_the_hook_are_left_alone(tiny_models):
    processor = AutoProcessor.from_pretrained(tiny_models["qwen3_vl"])
    cls = type(processor.image_processor)
    assert not patchify_in_model_dtype(processor.image_processor, torch.float32)
    assert type(processor.image_processor) is cls
    internvl = AutoProcessor.from_pretrained(tiny_models["internvl"]).image_processor
    internvl_class = type(internvl)
    assert not patchify_in_model_dtype(internvl, torch.bfloat16) and type(internvl) is internvl_class


@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_the_qwen_vl_adapter_patchifies_in_its_models_dtype(tiny_models, dtype):
    loaded = load_model(ModelSpec(family="qwen3_vl", path=str(tiny_models["qwen3_vl"]), max_tiles=2, engine="hf",
                                  dtype=dtype), torch.device("cpu"))
    image_processor = loaded.chat.processor.image_processor
    assert getattr(type(image_processor), "patchify_dtype", torch.float32) == getattr(torch, dtype)
