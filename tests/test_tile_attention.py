"""Llama-3.2-Vision's vision tower with its attention split in two unmasked parts (real queries over all
keys, padding queries over the real keys) gives what transformers' masked attention gives."""

import pytest
import torch

from docvlm.models import ModelSpec, Request, load_model
from docvlm.models import tile_attention
from docvlm.models.tile_attention import tile_split
from test_models_engine import noise_image

SIZES = [(40, 40), (56, 112), (150, 40), (120, 120), (40, 160)]  # 1 to 4 tiles of the tiny model's 56 pixels


def test_split_indices_follow_the_tiles():
    split = tile_split(torch.tensor([[1, 0, 0], [1, 1, 0]]), tile_tokens=4, real_per_tile=3, device=torch.device("cpu"))
    assert split.length == 12
    assert split.real.tolist() == [0, 1, 2, 12, 13, 14, 16, 17, 18]
    assert split.pad.tolist() == [3, 4, 5, 6, 7, 8, 9, 10, 11, 15, 19, 20, 21, 22, 23]
    assert split.real_bounds == [0, 3, 9] and split.pad_bounds == [0, 9, 15]
    assert split.image_starts.tolist() == [0, 12, 24]


@pytest.fixture(scope="module")
def mllama(tiny_models):
    return load_model(ModelSpec(family="mllama", path=str(tiny_models["mllama"]), max_tiles=4, engine="static"),
                      torch.device("cpu"))


def test_vision_states_equal_transformers_masked_attention(mllama, monkeypatch):
    adapter = mllama.adapter
    inputs = [mllama.chat.encode([Request(noise_image(h, w, i), "Read it.", 4)]) for i, (h, w) in enumerate(SIZES)]
    tiles = [int(single["aspect_ratio_mask"].sum()) for single in inputs]
    assert len(set(tiles)) >= 3, tiles  # images of different tile counts in one pass
    calls = []
    monkeypatch.setattr(tile_attention, "_sdpa", lambda *args, real=tile_attention._sdpa: calls.append(1) or real(*args))
    with torch.no_grad():
        ours = adapter._vision_states(inputs)
        model = mllama.model.model
        pixels = {key: torch.cat([single[key] for single in inputs]) for key in ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")}
        reference = model.multi_modal_projector(model.vision_model(**pixels).last_hidden_state)
    layers = len(model.vision_model.transformer.layers) + len(model.vision_model.global_transformer.layers)
    assert len(calls) == 2 * len(SIZES) * layers  # every layer split, two parts an image
    assert torch.allclose(ours, reference.reshape(ours.shape), atol=1e-5, rtol=1e-4)
    assert model.vision_model.config._attn_implementation != tile_attention.TILE_SPLIT  # switched back


def test_flash_varlen_only_where_flash_attention_runs(monkeypatch):
    """Packed prefill and the tile split take varlen flash attention only on CUDA half precision of an
    sm80+ GPU; a V100 (sm70) or T4 (sm75) takes the SDPA path, as CPUs and fp32 do."""
    from types import SimpleNamespace

    from docvlm.models.packing import runs_flash_varlen

    def query(is_cuda, dtype):
        return SimpleNamespace(is_cuda=is_cuda, dtype=dtype, device="cuda:0")

    for capability, expected in (((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device, c=capability: c)
        assert runs_flash_varlen(query(True, torch.bfloat16)) is expected
        assert runs_flash_varlen(query(True, torch.float16)) is expected
        assert runs_flash_varlen(query(True, torch.float32)) is False
    assert runs_flash_varlen(torch.zeros(1, dtype=torch.bfloat16)) is False  # CPU
