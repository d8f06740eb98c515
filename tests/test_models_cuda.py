"""The engine on a GPU (skipped without CUDA): device placement, bf16 inputs, synced timings, cache reuse."""

import pytest
import torch
from test_models_engine import FAMILIES, recompute, requests

from docvlm.models import ModelSpec, build_engine, load_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def exact_fp32():
    """cuDNN convolutions (the patch embeddings) default to TF32; the equality checks need plain fp32."""
    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("family", FAMILIES)
def test_fp32_on_cuda_batches_and_continues_exactly(tiny_models, family):
    engine = load_model(ModelSpec(family=family, path=str(tiny_models[family]), dtype="float32", max_tiles=4), "cuda")
    assert next(engine.model.parameters()).device.type == "cuda"
    batch = requests([5, 9, 7])
    first = engine.generate(batch, keep_state=True)
    prompts = ["GST_AMOUNT?", "TOTAL_AMOUNT:", "PAYER_NAME"]
    second = engine.continue_(first.state, prompts, [4, 6, 5])
    for row, request in enumerate(batch):
        history = first.replies[row].token_ids + engine.turn_ids(prompts[row], first.state.ended_with_turn_end[row])
        reference = recompute(engine, request, history, [4, 6, 5][row])
        assert second.replies[row].token_ids == reference
    singles = [engine.generate([request]).replies[0].token_ids for request in batch]
    assert [reply.token_ids for reply in first.replies] == singles


@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_graph_decode_gives_the_plain_path_tokens(tiny_models, family):
    """The static engine's captured decode step == transformers generate, through a whole conversation."""
    spec = ModelSpec(family=family, path=str(tiny_models[family]), dtype="float32", max_tiles=4, engine="hf")
    plain = load_model(spec, "cuda")
    static = build_engine("static", plain.model, plain.processor, spec, torch.device("cuda"))
    assert static.decoder.graphs_on
    outputs = {}
    for name, engine in (("plain", plain), ("static", static)):
        first = engine.generate(requests([5, 30, 7]), keep_state=True)
        second = engine.continue_(first.state, ["GST_AMOUNT?", "TOTAL?", "ROWS"], [40, 6, 300], keep_state=True)
        third = engine.continue_(engine.select(second.state, [0, 2]), ["more", "rows"], [20, 20], force_length=True)
        outputs[name] = [[r.token_ids for r in turn.replies] for turn in (first, second, third)]
    assert outputs["static"] == outputs["plain"]
    assert static.captures > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_by_default_on_cuda(tiny_models, family):
    engine = load_model(ModelSpec(family=family, path=str(tiny_models[family]), max_tiles=4), torch.device("cuda"))
    assert engine.dtype == torch.bfloat16
    result = engine.generate(requests([6, 6, 6]), keep_state=True)
    assert [len(reply.token_ids) for reply in result.replies] == [6, 6, 6]
    assert result.prefill_s > 0 and result.decode_s > 0 and result.new_tokens == 18
    follow = engine.continue_(result.state, ["a", "b", "c"], [3, 3, 3], force_length=True)
    assert [len(reply.token_ids) for reply in follow.replies] == [3, 3, 3]


@pytest.mark.parametrize("family", ["internvl", "qwen3_vl", "qwen2_5_vl"])
def test_bf16_packed_prefill_matches_one_document_at_a_time(tiny_models, family):
    """bf16 on CUDA packs take the varlen flash kernel: the KV each document leaves in its buffer row and
    every layer matches the one-document-at-a-time prefill (flash as well), up to bf16 rounding; Qwen-VL
    (3-D positions per document, deepstack) leaves the same rope deltas."""
    spec = ModelSpec(family=family, path=str(tiny_models[family]), max_tiles=4)
    packed = load_model(spec, torch.device("cuda"))
    single = build_engine("static", packed.model, packed.processor, spec, torch.device("cuda"))
    single.packs_prefill = False
    assert packed.packs_prefill and packed.dtype == torch.bfloat16
    buffers, extras = {}, {}
    for name, engine in (("packed", packed), ("single", single)):
        result = engine.generate(requests([1, 1, 1]), keep_state=True)
        length = result.state.cache.length
        buffers[name] = [k[:3, :, :length].float().clone() for k in engine.buffers.keys]
        extras[name] = result.state.extras
    for a, b in zip(buffers["packed"], buffers["single"]):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, atol=3e-2, rtol=3e-2)
    assert extras["packed"].keys() == extras["single"].keys()
    assert all(torch.equal(extras["packed"][key], extras["single"][key]) for key in extras["packed"])


def test_triton_attention_bf16_matches_the_matmuls():
    from attention_check import DECODE_CASES, TURN_CASES, check

    check("cuda", torch.bfloat16, DECODE_CASES + [(64, 32, 8, 128, 4608, 2700, None), (7, 32, 8, 128, 4608, 2300, None)],
          TURN_CASES + [(16, 32, 8, 128, 4608, 2400, 630)], tolerance=3e-2)


def test_fused_kernels_bf16_match_transformers():
    from fused_check import check

    check("cuda", torch.bfloat16)


def test_bf16_tile_split_attention_matches_the_masked_attention():
    """Llama-3.2-Vision's vision attention at full size (16 heads of 80, 4 tiles of 1,608 tokens): the
    two unmasked parts (varlen flash, or SDPA an image, also at zero-padded head dims: the fastest serves)
    == SDPA with transformers' padding->padding mask, up to bf16 rounding."""
    from transformers.models.mllama.modeling_mllama import _prepare_aspect_ratio_attention_mask

    from docvlm.models import tile_attention
    from docvlm.models.tile_attention import split_attention, tile_split, tile_split_attention

    tiles_real = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    images, heads, length, dim = 3, 16, 4 * 1608, 80
    q, k, v = (torch.randn(images, heads, length, dim, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    mask = _prepare_aspect_ratio_attention_mask(tiles_real.cuda(), 1601, 1608, torch.bfloat16)
    reference = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=dim**-0.5)
    split = tile_split(tiles_real, 1608, 1601, torch.device("cuda"))
    config = type("Config", (), {"_attn_implementation": "sdpa"})()
    with tile_split_attention(config, split):
        ours, _ = split_attention(None, q, k, v, mask, scaling=dim**-0.5)
    torch.testing.assert_close(ours, reference.transpose(1, 2), atol=2e-2, rtol=2e-2)
    # both ways `fastest` chooses between, each against the masked attention
    flat = [t.transpose(1, 2).reshape(images * length, heads, dim) for t in (q, k, v)]
    ways = [tile_attention._varlen_parts(*flat, split, dim**-0.5), tile_attention._parts_an_image(*flat, split, dim**-0.5)]
    ways += [tile_attention._padded_parts_an_image(*flat, split, dim**-0.5, width) for width in (96, 128)]
    for out in ways:
        torch.testing.assert_close(out.reshape(images, length, heads, dim), reference.transpose(1, 2),
                                   atol=2e-2, rtol=2e-2)


def test_bf16_qwen_vision_attention_ways_match_sdpa_an_image():
    """Qwen3-VL's vision attention at full size (16 heads of 72, images of ~7,000 and 2,400 patches): every
    way `fastest_vision_attention` times (SDPA an image, padded head dims, one varlen flash call) and the
    one it serves == SDPA an image, up to bf16 rounding."""
    from docvlm.models import packing

    heads, dim, patches = 16, 72, (6988, 2400)
    qkv = torch.randn(sum(patches), 3, heads, dim, device="cuda", dtype=torch.bfloat16)
    query, key, value = (t.transpose(0, 1)[None] for t in qkv.unbind(1))  # transformers' views
    starts = torch.tensor([0, patches[0], sum(patches)], dtype=torch.int32, device="cuda")
    reference = torch.cat([torch.nn.functional.scaled_dot_product_attention(
        *(t[:, :, a:b].float() for t in (query, key, value))).transpose(1, 2)
        for a, b in ((0, patches[0]), (patches[0], sum(patches)))], dim=1)
    module = torch.nn.Module()
    module.is_causal, module.training = False, False
    ways = [packing._sdpa_each(module, query, key, value, starts, causal=False, scaling=dim**-0.5),
            packing._within_sequences(module, query, key, value, starts, max(patches), causal=False,
                                      scaling=dim**-0.5)]
    ways += [packing._padded_each(module, query, key, value, starts, dim**-0.5, width)
             for width in packing.PADDED_HEAD_DIMS]
    ways.append(packing.fastest_vision_attention(module, query, key, value, None, scaling=dim**-0.5,
                                                 cu_seq_lens_q=starts, max_length_q=max(patches))[0])
    for out in ways:
        torch.testing.assert_close(out.float(), reference, atol=2e-2, rtol=2e-2)


def test_bf16_mllama_vision_states_split_match_transformers(tiny_models):
    from test_tile_attention import SIZES
    from test_models_engine import noise_image
    from docvlm.models import Request

    engine = load_model(ModelSpec(family="mllama", path=str(tiny_models["mllama"]), max_tiles=4, engine="static"),
                        torch.device("cuda"))
    inputs = [engine.chat.encode([Request(noise_image(h, w, i), "Read it.", 4)]) for i, (h, w) in enumerate(SIZES)]
    inputs = [{key: engine.chat.to_device(value) for key, value in single.items()} for single in inputs]
    model = engine.model.model
    with torch.no_grad():
        ours = engine.adapter._vision_states(inputs)
        pixels = {key: torch.cat([single[key] for single in inputs]) for key in ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")}
        reference = model.multi_modal_projector(model.vision_model(**pixels).last_hidden_state).reshape(ours.shape)
    torch.testing.assert_close(ours.float(), reference.float(), atol=3e-2, rtol=3e-2)
