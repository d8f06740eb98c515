"""A batch's first-turn inputs as the processor makes them, and their prompt lengths known beforehand.

Why: a first turn's KV is right-aligned in the buffers, so the prefill needs every prompt's length
before its first pack; waiting for the processor's outputs of a whole batch left the GPU idle ~1 s at a
run's first batch (64 Qwen3-VL documents on an H100: nothing to overlap with; BENCHMARKS 2026-12-05,
night). The length of a document's prompt is its prompt text's tokens plus its image's, and the image
part follows from the image size alone (the processor's own `_get_num_multimodal_tokens`, the count
vLLM relies on). So `PromptLengths` predicts every length at once, the text part measured once per
prompt on the first document made with it; the packs then take their documents' inputs as they come.
A prediction is checked against the processor's output before its pack runs (`Mispredicted`: the
engine then waits for all inputs, as without a prediction).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Optional, Sequence

import torch
from transformers import ProcessorMixin

from docvlm.models.protocol import Request

log = logging.getLogger(__name__)
Inputs = dict[str, torch.Tensor]


class Mispredicted(RuntimeError):
    """A document's prompt length is not the predicted one (the engine falls back to waiting for all)."""


class FirstTurnInputs:
    """Each request's model inputs, made (or waited for) once, in any order; `waited_s`: time spent waiting."""

    def __init__(self, requests: Sequence[Request], make: Callable[[Request], Inputs]):
        self.requests, self.make = requests, make
        self.made: dict[int, Inputs] = {}
        self.waited_s = 0.0

    def __call__(self, row: int) -> Inputs:
        if row not in self.made:
            start = time.perf_counter()
            self.made[row] = self.make(self.requests[row])
            self.waited_s += time.perf_counter() - start
        return self.made[row]

    def length(self, row: int) -> int:
        return self(row)["input_ids"].shape[1]

    def all(self) -> list[Inputs]:
        return [self(row) for row in range(len(self.requests))]


class PromptLengths:
    """First-turn prompt lengths from the images' sizes (see the module docstring). `predict` returns None
    where the processor cannot count image tokens (or a prediction was once wrong: not tried again)."""

    def __init__(self, processor: ProcessorMixin, image_kwargs: dict[str, Any], name: str):
        self.processor, self.image_kwargs, self.name = processor, image_kwargs, name
        self.text_tokens: dict[str, int] = {}  # prompt -> its tokens besides the image's
        self.enabled = hasattr(processor, "_get_num_multimodal_tokens")

    def predict(self, requests: Sequence[Request], inputs: FirstTurnInputs) -> Optional[list[int]]:
        if not self.enabled:
            return None
        image = self._image_tokens(requests)
        if image is None:
            return None
        for row, request in enumerate(requests):
            if request.prompt not in self.text_tokens:  # measured on the first document with this prompt
                self.text_tokens[request.prompt] = inputs.length(row) - image[row]
        return [self.text_tokens[request.prompt] + tokens for request, tokens in zip(requests, image)]

    def check(self, predicted: Sequence[int], actual: Sequence[int]) -> None:
        if list(predicted) != list(actual):
            self.enabled = False
            log.warning("%s: first-turn prompt lengths %s, predicted %s: first turns wait for the processor "
                        "from now on", self.name, list(actual), list(predicted))
            raise Mispredicted(f"{self.name}: prompt lengths {list(actual)}, predicted {list(predicted)}")

    def _image_tokens(self, requests: Sequence[Request]) -> Optional[list[int]]:
        sizes = [(request.image.height, request.image.width) for request in requests]
        try:
            counted = self.processor._get_num_multimodal_tokens(image_sizes=sizes, **self.image_kwargs)
            tokens = [int(n) for n in counted["num_image_tokens"]]
        except (AttributeError, KeyError, TypeError, ValueError, NotImplementedError) as err:
            self.enabled = False
            log.info("%s: the processor cannot count image tokens from sizes (%s): first turns wait for it",
                     self.name, err)
            return None
        return tokens if len(tokens) == len(requests) else None
