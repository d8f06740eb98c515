"""A batch's packs start before every input is made: prompt lengths predicted from the images' sizes."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from docvlm.models import ModelSpec, Request, build_engine, load_model, static_engine
from docvlm.models.first_turn_inputs import FirstTurnInputs, PromptLengths
from test_models_engine import noise_image

CPU = torch.device("cpu")
PACKING = ["internvl", "qwen3_vl", "qwen2_5_vl"]  # the families whose first turns pack (and stream)
# page-like and odd sizes: portrait, landscape, tiny, very long, above the pixel cap at max_tiles=4
SIZES = [(1754, 1240), (989, 640), (40, 40), (150, 40), (56, 1120), (3000, 2200), (700, 700)]


@pytest.fixture(scope="module")
def engines(tiny_models):
    """family -> (hf engine, static engine) over one model."""
    out = {}
    for family in PACKING:
        spec = ModelSpec(family=family, path=str(tiny_models[family]), max_tiles=4, engine="hf")
        hf = load_model(spec, CPU)
        generation_config = copy.deepcopy(hf.model.generation_config)
        static = build_engine("static", hf.model, hf.processor, spec, CPU)
        hf.model.generation_config = generation_config
        out[family] = (hf, static)
    return out


def requests(prompts: list[str], seed: int = 0) -> list[Request]:
    return [Request(noise_image(h, w, seed + i), prompt, 6)
            for i, ((h, w), prompt) in enumerate(zip(SIZES, prompts))]


def ids(result) -> list[list[int]]:
    return [reply.token_ids for reply in result.replies]


@pytest.mark.parametrize("family", PACKING)
def test_predicted_lengths_are_the_processors(engines, family):
    """Each prompt's length from its image's size (the text part measured once a prompt) is exactly the
    processor's, for page-like, tiny, long and over-the-cap images and two prompts."""
    _, static = engines[family]
    batch = requests(["What type of document is this?", "Read the TOTAL_AMOUNT: answer with the amount only."] * 4)
    made = FirstTurnInputs(batch, lambda request: static.chat.preprocess([request]))
    lengths = PromptLengths(static.processor, static.adapter.image_kwargs(), static.name)
    predicted = lengths.predict(batch, made)
    assert sorted(made.made) == [0, 1]  # measured the text on one document of each prompt, made no other
    assert predicted == [made.length(row) for row in range(len(batch))]


@pytest.mark.parametrize("family", PACKING)
def test_packs_run_as_their_inputs_arrive(engines, family, monkeypatch):
    """A pack a document (PACK_TOKENS small): the first pack's prefill runs before the last document's
    inputs are made, and the tokens are transformers' (fp32)."""
    hf, static = engines[family]
    monkeypatch.setattr(static_engine, "PACK_TOKENS", 1)
    events, make, prefill = [], static._encode_one, static._prefill_pack
    monkeypatch.setattr(static, "_encode_one", lambda request: (events.append("made"), make(request))[1])
    monkeypatch.setattr(static, "_prefill_pack", lambda singles, rows, start: (events.append(f"pack {rows}"),
                                                                               prefill(singles, rows, start))[1])
    batch = requests(["What type of document is this?"] * 4, seed=3)
    result = static.generate(batch)
    assert events.index("pack [0]") < len(events) - 1 - events[::-1].index("made")  # a pack before the last input
    assert events.count("made") == len(batch) and ids(result) == ids(hf.generate(batch))
    assert result.inputs_s > 0


def test_a_wrong_prediction_falls_back_to_waiting_for_every_input(engines, monkeypatch, caplog):
    """A predicted length the processor does not give (a processor counting differently) is found before its
    pack runs: the batch runs again on the inputs already made, once, prediction off from then on, with
    transformers' tokens; a processor that cannot count image tokens is never asked."""
    hf, static = engines["qwen3_vl"]
    batch = requests(["How much?"] * 3, seed=5)
    lengths = static.prompt_lengths
    monkeypatch.setattr(lengths, "enabled", True)  # (on again after the test: the engines are the module's)
    monkeypatch.setattr(lengths, "text_tokens", {"How much?": 1})  # off by the text's tokens
    made = []
    make = static._encode_one
    monkeypatch.setattr(static, "_encode_one", lambda request: (made.append(request), make(request))[1])
    with caplog.at_level(logging.WARNING):
        result = static.generate(batch)
    assert ids(result) == ids(hf.generate(batch)) and len(made) == len(batch)  # nothing made twice
    assert "predicted" in caplog.text and not lengths.enabled
    assert lengths.predict(batch, FirstTurnInputs(batch, make)) is None

    class NoCount:
        pass

    blind = PromptLengths(NoCount(), {}, "blind")
    assert blind.predict(batch, FirstTurnInputs(batch, make)) is None
