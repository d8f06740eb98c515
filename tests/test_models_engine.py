"""The HF engine on the tiny models of every family: batching, images, multi-turn cache reuse, budgets."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from docvlm.models import ModelSpec, Request, load_model
from docvlm.models.hf_engine import HFEngine
from docvlm.models.static_engine import StaticEngine

FAMILIES = ["internvl", "qwen3_vl", "mllama", "qwen2_5_vl"]
CPU = torch.device("cpu")
# Sizes chosen so each family gives the rows different tile / patch counts.
SIZES = [(40, 40), (56, 112), (150, 40)]


def noise_image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def requests(budgets: list[int], seed: int = 0) -> list[Request]:
    return [
        Request(noise_image(h, w, seed + i), f"List the TOTAL_AMOUNT and INVOICE_DATE of document {i}:", budget)
        for i, ((h, w), budget) in enumerate(zip(SIZES, budgets))
    ]


def load(path: Path, family: str) -> HFEngine:
    return load_model(ModelSpec(family=family, path=str(path), max_tiles=4), CPU)


@pytest.fixture(scope="module")
def engines(tiny_models) -> dict[str, HFEngine]:
    return {family: load(tiny_models[family], family) for family in FAMILIES}


def visual_size(engine: HFEngine, request: Request) -> int:
    """How much image the processor made of one request (tiles, patches)."""
    inputs = engine.encode([request])
    if "image_grid_thw" in inputs:
        return int(inputs["image_grid_thw"].prod())
    if "aspect_ratio_mask" in inputs:
        return int(inputs["aspect_ratio_mask"].sum())
    return inputs["pixel_values"].shape[0]


def recompute(engine: HFEngine, request: Request, history: list[int], budget: int) -> list[int]:
    """Reference: generate from scratch on the whole conversation (first turn with its image + history)."""
    inputs = dict(engine.encode([request]))
    extra = torch.tensor([history], dtype=torch.long, device=inputs["input_ids"].device)
    inputs["input_ids"] = torch.cat([inputs["input_ids"], extra], dim=1)
    inputs["attention_mask"] = torch.ones_like(inputs["input_ids"])
    if "mm_token_type_ids" in inputs:  # Qwen: the appended tokens are text
        inputs["mm_token_type_ids"] = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(extra)], dim=1)
    if "cross_attention_mask" in inputs:  # Mllama: the appended tokens see the image like the last one
        mask = inputs["cross_attention_mask"]
        inputs["cross_attention_mask"] = torch.cat([mask, mask[:, -1:].expand(-1, len(history), -1, -1)], dim=1)
    start = inputs["input_ids"].shape[1]
    out = engine.model.generate(
        **inputs, max_new_tokens=budget, do_sample=False, eos_token_id=engine.eos_ids, pad_token_id=engine.pad_id
    )
    generated = out[0, start:].tolist()
    ends = [i for i, token in enumerate(generated) if token in engine.eos_ids]
    return generated[: ends[0] + 1] if ends else generated


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_equals_one_at_a_time(engines, family):
    engine = engines[family]
    batch = requests([5, 9, 7])
    assert len({visual_size(engine, request) for request in batch}) == 3, "rows must differ in tile counts"

    result = engine.generate(batch)
    singles = [engine.generate([request]).replies[0] for request in batch]

    assert [reply.token_ids for reply in result.replies] == [reply.token_ids for reply in singles]
    assert [reply.prompt_tokens for reply in result.replies] == [reply.prompt_tokens for reply in singles]
    assert [len(reply.token_ids) for reply in result.replies] == [5, 9, 7]  # the random model never ends a turn
    assert result.new_tokens == 21 and result.prefill_s > 0 and result.decode_s > 0
    assert len({tuple(reply.token_ids) for reply in result.replies}) == 3
    assert all(reply.text for reply in result.replies)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_image_changes_the_output(engines, family):
    engine = engines[family]
    prompt = "What is the SUPPLIER_NAME?"
    first, second = (Request(noise_image(64, 96, seed), prompt, 8) for seed in (1, 2))
    replies = engine.generate([first, second]).replies
    assert replies[0].token_ids != replies[1].token_ids


@pytest.mark.parametrize("family", FAMILIES)
def test_continuation_reuses_the_cache_and_equals_recomputing(engines, family):
    engine = engines[family]
    batch = requests([4, 9, 6])
    turn2 = ["Now the GST_AMOUNT:", "And the PAYER_NAME?", "List the LINE_ITEM_PRICES | separated"]
    turn3 = ["Thanks. The BUSINESS_ABN?", "DOCUMENT_TYPE:", "Is GST included? true or false"]

    first = engine.generate(batch, keep_state=True)
    if not isinstance(engine, StaticEngine):  # the static engine keeps ONE live batch (test_static_engine.py)
        engine.generate(requests([3, 3]))  # another batch in between must not disturb the state
    second = engine.continue_(first.state, turn2, [6, 3, 5], keep_state=True)
    third = engine.continue_(second.state, turn3, [4, 5, 3])

    assert first.state.consumed and second.state.consumed and third.state is None
    for row, request in enumerate(batch):
        history = first.replies[row].token_ids + engine.turn_ids(turn2[row], first.state.ended_with_turn_end[row])
        assert second.replies[row].prompt_tokens == len(history) - len(first.replies[row].token_ids)
        assert second.replies[row].token_ids == recompute(engine, request, history, [6, 3, 5][row])
        history += second.replies[row].token_ids + engine.turn_ids(turn3[row], second.state.ended_with_turn_end[row])
        assert third.replies[row].token_ids == recompute(engine, request, history, [4, 5, 3][row])

    # Batched continuation == continuing each conversation on its own.
    for row, request in enumerate(batch):
        alone = engine.generate([request], keep_state=True)
        alone2 = engine.continue_(alone.state, [turn2[row]], [[6, 3, 5][row]])
        assert alone2.replies[0].token_ids == second.replies[row].token_ids


@pytest.fixture(scope="module")
def ending_engines(tiny_models) -> dict[str, HFEngine]:
    """Engines whose model ends its turn: the end-of-turn logits copy a token the model often emits.

    Row 0 of a reference batch emits `token` at its 4th step; giving the end-of-turn token that token's
    output embedding (1% larger) makes the model end its turn wherever it would have said `token`.
    """
    ending = {}
    for family in FAMILIES:
        engine = load(tiny_models[family], family)
        row0 = engine.generate(requests([12, 12, 12]), force_length=True).replies[0].token_ids
        token = next(t for i, t in enumerate(row0) if i >= 3 and t not in row0[:i])
        weights = engine.model.get_output_embeddings().weight
        with torch.no_grad():
            weights[engine.turn_end_id] = weights[token] * 1.01
        ending[family] = engine
    return ending


@pytest.mark.parametrize("family", FAMILIES)
def test_replies_that_end_their_turn_continue_like_recomputing(ending_engines, family):
    engine = ending_engines[family]
    batch = requests([12, 12, 12])
    first = engine.generate(batch, keep_state=True)
    ended = [reply.finished for reply in first.replies]
    assert ended[0] and len(first.replies[0].token_ids) < 12 and first.replies[0].token_ids[-1] == engine.turn_end_id
    assert first.state.ended_with_turn_end == ended

    prompts = ["GST_AMOUNT?", "TOTAL_AMOUNT: $", "Date of the statement DD/MM/YYYY"]
    second = engine.continue_(first.state, prompts, [7, 7, 7])
    for row, request in enumerate(batch):
        history = first.replies[row].token_ids + engine.turn_ids(prompts[row], ended[row])
        assert second.replies[row].token_ids == recompute(engine, request, history, 7)
    singles = [engine.generate([request]).replies[0] for request in batch]
    assert [reply.token_ids for reply in first.replies] == [reply.token_ids for reply in singles]


@pytest.mark.parametrize("family", FAMILIES)
def test_force_length_generates_exactly_the_budget(ending_engines, family):
    engine = ending_engines[family]
    assert engine.generate(requests([12, 12, 12])).replies[0].finished  # would stop early without force
    result = engine.generate(requests([12, 3, 8]), force_length=True, keep_state=True)
    assert [len(reply.token_ids) for reply in result.replies] == [12, 3, 8]
    assert not any(reply.finished for reply in result.replies)
    follow = engine.continue_(result.state, ["a", "b", "c"], [2, 5, 1], force_length=True)
    assert [len(reply.token_ids) for reply in follow.replies] == [2, 5, 1]


def test_turn_ids_keep_the_end_of_turn_only_when_the_reply_lacked_it(engines):
    for engine in engines.values():
        open_ids = engine.turn_ids("DOCUMENT_TYPE?", previous_ended=False)
        assert open_ids[0] == engine.turn_end_id
        assert engine.turn_ids("DOCUMENT_TYPE?", previous_ended=True) == open_ids[1:]
        text = engine.tokenizer.decode(open_ids)
        assert "DOCUMENT_TYPE?" in text and text.startswith(engine.turn_end)


def test_continuing_checks_its_arguments(engines):
    engine = engines["internvl"]
    result = engine.generate(requests([2, 2]), keep_state=True)
    with pytest.raises(ValueError, match="one prompt and one budget per row"):
        engine.continue_(result.state, ["only one"], [2])
    engine.continue_(result.state, ["a", "b"], [1, 1])
    with pytest.raises(ValueError, match="already continued"):
        engine.continue_(result.state, ["a", "b"], [1, 1])
    with pytest.raises(ValueError, match="max_new_tokens"):
        Request(noise_image(8, 8, 0), "x", 0)
    assert engine.generate([]).replies == []


def test_non_rgb_images_are_converted(engines):
    engine = engines["qwen3_vl"]
    gray = noise_image(64, 96, 3).convert("L")
    batch = [Request(gray, "TOTAL_AMOUNT?", 6), Request(gray.convert("RGB"), "TOTAL_AMOUNT?", 6)]
    replies = engine.generate(batch).replies
    assert replies[0].token_ids == replies[1].token_ids
