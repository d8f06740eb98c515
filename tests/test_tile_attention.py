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


def test_both_ways_give_the_same_attention_and_the_faster_serves(monkeypatch):
    """The ways of the split (two varlen calls for all images; two SDPA calls an image, also at zero-padded
    head dims) give the same attention (varlen flash emulated here by SDPA a sequence); where flash runs,
    `fastest` picks between them."""
    def varlen_reference(q, k, v, q_starts, k_starts, longest_q, longest_k, causal, scale):
        qb, kb = q_starts.tolist(), k_starts.tolist()
        return torch.cat([tile_attention._sdpa(q[a:b], k[c:d], v[c:d], scale)
                          for a, b, c, d in zip(qb, qb[1:], kb, kb[1:])])

    monkeypatch.setattr(tile_attention, "flash_varlen", varlen_reference)
    split = tile_split(torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1]]), tile_tokens=4, real_per_tile=3,
                       device=torch.device("cpu"))
    query, key, value = (torch.randn(3, 2, 12, 8) for _ in range(3))
    flat = [t.transpose(1, 2).reshape(36, 2, 8) for t in (query, key, value)]
    varlen = tile_attention._varlen_parts(*flat, split, 0.3)
    an_image = tile_attention._parts_an_image(*flat, split, 0.3)
    torch.testing.assert_close(varlen, an_image)
    offered = {}

    def pick(what, key, ways, device):
        offered.update(ways)
        return ways["varlen flash"]()

    monkeypatch.setattr(tile_attention, "runs_flash_varlen", lambda q: True)
    monkeypatch.setattr(tile_attention, "fastest", pick)
    config = type("Config", (), {"_attn_implementation": "sdpa"})()
    with tile_attention.tile_split_attention(config, split):
        out, _ = tile_attention.split_attention(None, query, key, value, None, scaling=0.3)
    assert set(offered) == {"varlen flash", "SDPA an image"} | {
        f"SDPA an image, head dim padded to {width}" for width in (80, 96, 128)}
    torch.testing.assert_close(out, an_image.view(3, 12, 2, 8))
    for name, way in offered.items():  # zero-padded head dims: the same attention at the head dim's scale
        torch.testing.assert_close(way(), an_image, msg=name)
