"""The static engine on its fused path (half precision: fused norms, rotary, residual adds, merged
projections, Triton attention) against transformers' generate on the tiny models, through a first turn
and a follow-up; run in a process of its own under TRITON_INTERPRET=1 (test_fused.py) with the families
to check as arguments. Prints "<family> same" or "<family> differs ..." per family."""

import sys

import torch
from test_models_engine import requests

from docvlm.models import ModelSpec, build_engine, load_model
from docvlm.models.tiny import ensure_tiny_model, tiny_model_path


def conversation(engine) -> list[list[list[int]]]:
    first = engine.generate(requests([3, 5, 2]), keep_state=True)
    second = engine.continue_(first.state, ["GST_AMOUNT?", "TOTAL?", "ROWS"], [3, 2, 4])
    return [[reply.token_ids for reply in turn.replies] for turn in (first, second)]


def check(family: str) -> str:
    spec = ModelSpec(family=family, path=str(ensure_tiny_model(family, tiny_model_path(family))), dtype="float16",
                     max_tiles=4, engine="hf")
    plain = load_model(spec, "cpu")
    static = build_engine("static", plain.model, plain.processor, spec, torch.device("cpu"))
    assert static.stack.fused_rotary and any(static.stack.merged), "the fused path is not taken"
    expected, got = conversation(plain), conversation(static)
    return f"{family} same" if got == expected else f"{family} differs: plain {expected}, static {got}"


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(check(name), flush=True)
