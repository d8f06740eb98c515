"""Qwen-VL's patch embedding (a Conv3d whose kernel is its stride and its input) runs as F.linear: the
conv's numbers, every engine, other convolutions untouched."""

import pytest
import torch
from torch import nn

from docvlm.models import ModelSpec, load_model
from docvlm.models.patch_embedding import _linear_forward, linear_patch_embeddings


def test_a_patch_conv_is_its_linear_and_others_stay_convolutions():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv3d(3, 8, kernel_size=(2, 4, 4), stride=(2, 4, 4)),
                          nn.Conv3d(3, 8, kernel_size=3, stride=1),  # slides: a real convolution
                          nn.Conv2d(3, 8, kernel_size=4, stride=4))
    patches = torch.randn(10, 3, 2, 4, 4)
    expected = model[0](patches)
    assert linear_patch_embeddings(model) == 1 and linear_patch_embeddings(model) == 0  # once
    assert model[0].forward.__func__ is _linear_forward and model[1].forward.__func__ is nn.Conv3d.forward
    torch.testing.assert_close(model[0](patches), expected, rtol=1e-5, atol=1e-6)
    wider = torch.randn(2, 3, 4, 8, 8)  # several patches an input: still the convolution's answer
    torch.testing.assert_close(model[0](wider), nn.Conv3d.forward(model[0], wider))


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
@pytest.mark.parametrize("engine", ["hf", "static"])
def test_qwen_vl_engines_embed_patches_by_linear(tiny_models, family, engine):
    loaded = load_model(ModelSpec(family=family, path=str(tiny_models[family]), max_tiles=4, engine=engine),
                        torch.device("cpu"))
    proj = loaded.model.model.visual.patch_embed.proj
    assert isinstance(proj, nn.Conv3d) and proj.forward.__func__ is _linear_forward
