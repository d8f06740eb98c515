"""Qwen-VL and InternVL processors hand on their normalised pixels in the model's dtype: exactly the values
the engine's cast gave afterwards, the processor still saved and reloaded as itself, float32 models
untouched."""

import copy
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from docvlm.models import ModelSpec, load_model
from docvlm.models.pixels_in_dtype import normalised_in_model_dtype

IMAGE_TEXT = {"qwen3_vl": "<|vision_start|><|image_pad|><|vision_end|>read",
              "qwen2_5_vl": "<|vision_start|><|image_pad|><|vision_end|>read",
              "internvl": "<IMG_CONTEXT>read"}
IMAGE_KWARGS = {"internvl": {"crop_to_patches": True, "max_patches": 6}}  # as the adapter asks: several tiles


def noise_page(width: int = 900, height: int = 1300) -> Image.Image:
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=generator)
    return Image.fromarray(pixels.numpy())


@pytest.mark.parametrize("family", sorted(IMAGE_TEXT))
def test_pixels_are_the_cast_of_the_processors_own(tiny_models, family, tmp_path):
    processor = AutoProcessor.from_pretrained(tiny_models[family])
    original_class = type(processor.image_processor)
    call = {"images": [noise_page()], "text": [IMAGE_TEXT[family]], "return_tensors": "pt",
            **IMAGE_KWARGS.get(family, {})}
    before = processor(**call)
    assert before["pixel_values"].dtype == torch.float32
    assert normalised_in_model_dtype(processor.image_processor, torch.bfloat16)
    assert normalised_in_model_dtype(processor.image_processor, torch.bfloat16)  # again: no second layer
    assert type(processor.image_processor).__mro__[1] is original_class
    after = processor(**call)
    assert after["pixel_values"].dtype == torch.bfloat16
    assert torch.equal(after["pixel_values"], before["pixel_values"].to(torch.bfloat16))
    assert after.keys() == before.keys()
    assert all(torch.equal(after[key], before[key]) for key in before if key != "pixel_values")
    # another dtype later: the processor's own method under it, not the bf16 one's
    assert normalised_in_model_dtype(processor.image_processor, torch.float16)
    assert torch.equal(processor(**call)["pixel_values"], before["pixel_values"].to(torch.float16))
    # a float32 model over it: the processor's own class again, float32 pixels
    assert not normalised_in_model_dtype(processor.image_processor, torch.float32)
    assert type(processor.image_processor) is original_class
    assert torch.equal(processor(**call)["pixel_values"], before["pixel_values"])
    # saved and reloaded as the processor it is, with nothing of ours in its settings; pickled and copied
    # with its dtype (as a process pool would send it)
    assert normalised_in_model_dtype(processor.image_processor, torch.bfloat16)
    for again in (pickle.loads(pickle.dumps(processor)), copy.deepcopy(processor)):
        assert type(again.image_processor).__mro__[1] is original_class
        assert torch.equal(again(**call)["pixel_values"], after["pixel_values"])
    processor.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved.get("image_processor", saved)["image_processor_type"] == original_class.__name__
    assert type(AutoProcessor.from_pretrained(tmp_path).image_processor) is original_class


def test_a_processor_without_the_method_or_returning_arrays_is_left_alone():
    class Plain:
        pass

    plain = Plain()
    assert not normalised_in_model_dtype(plain, torch.bfloat16) and type(plain) is Plain

    class Arrays:  # e.g. remote code normalising numpy arrays
        def rescale_and_normalize(self, images):
            return images * 2

    arrays = Arrays()
    assert normalised_in_model_dtype(arrays, torch.bfloat16)
    assert arrays.rescale_and_normalize(np.ones(3, dtype=np.float32)).dtype == np.float32
    assert arrays.rescale_and_normalize(torch.ones(3)).dtype == torch.bfloat16


@pytest.mark.parametrize("family", ["qwen3_vl", "internvl", "mllama"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float32"])
def test_the_adapters_ask_for_their_models_dtype_where_it_pays(tiny_models, family, dtype):
    loaded = load_model(ModelSpec(family=family, path=str(tiny_models[family]), max_tiles=2, engine="hf",
                                  dtype=dtype), torch.device("cpu"))
    pixels_dtype = getattr(type(loaded.chat.processor.image_processor), "pixels_dtype", torch.float32)
    # Llama-3.2-Vision pads its tiles into a float32 tensor after normalising: nothing to gain there
    assert pixels_dtype == (torch.float32 if family == "mllama" else getattr(torch, dtype))
