"""The processor side of a conversation: chat template, turn ids, end and pad ids, preprocessing.

One `Chat` per engine, over the family's processor and adapter (which says how images are passed and
which token closes a turn); both engines use it the same way.

The static engine's first turns are made in two parts, so the first can run in worker threads
(prefetch.py): `first_turn_host` (CPU only) and `first_turn_inputs` (on the engine's thread and device).
On a CUDA device the image work (resize, normalise, tiles or patches: ~15-40 ms a page on one host
core, most of what a run's first batch waited for) runs on the GPU in `first_turn_inputs`, from the
pages' uint8 pixels that `first_turn_host` page-locks: the processor is the same (transformers'
torchvision processors take `device=`), so are its outputs up to the GPU's rounding. On the engine's
thread, not the workers': kernels the workers launched while a decode graph is captured would break it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import GenerationConfig, PreTrainedModel, ProcessorMixin

from docvlm.models.adapter import FamilyAdapter
from docvlm.models.protocol import Conversations, Request

# Stands in for a previous reply when rendering the chat template of a follow-up turn.
SENTINEL = "@@DOCVLM-PREVIOUS-REPLY@@"
META = torch.device("meta")  # tensors of a shape, no data: the processor's image work skipped
SEQUENCE_INPUTS = ("input_ids", "attention_mask", "cross_attention_mask", "mm_token_type_ids")  # left-padded


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _pixels(image: Image.Image) -> torch.Tensor:
    """The image's RGB pixels, uint8 (3, height, width): what the processor makes of it first."""
    return torch.from_numpy(np.array(_rgb(image))).permute(2, 0, 1)


class Chat:
    """Constructing it takes over the model's generation config: the engines own decoding (greedy,
    per-row budgets, end ids), so the checkpoint's sampling defaults are dropped (its end ids kept here)."""

    def __init__(self, model: PreTrainedModel, processor: ProcessorMixin, adapter: FamilyAdapter,
                 device: torch.device, images_on_device: bool | None = None):
        self.processor, self.adapter, self.name = processor, adapter, adapter.name
        self.device, self.dtype = device, model.dtype
        self.images_on_device = device.type == "cuda" if images_on_device is None else images_on_device
        self.pin = device.type == "cuda"  # staged host tensors upload asynchronously
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # right padding breaks batched == one-at-a-time
        self.turn_end = adapter.turn_end
        self.turn_end_id = self._token_id(self.turn_end)
        self.eos_ids = self._end_ids(model.generation_config.eos_token_id)
        self.pad_id = self._pad_id()
        model.generation_config = GenerationConfig(
            bos_token_id=model.generation_config.bos_token_id, pad_token_id=self.pad_id, do_sample=False
        )

    def encode(self, requests: Sequence[Request]) -> dict[str, torch.Tensor]:
        """Processor output for first turns on the device: chat template, image placeholders, left padding."""
        if self.images_on_device:
            batch = self.preprocess(requests, self._uploaded([_pixels(request.image) for request in requests]),
                                    self.device)
        else:
            batch = self.preprocess(requests)
        return {key: self.to_device(value) for key, value in batch.items()}

    def first_turn_host(self, requests: Sequence[Request]) -> Any:
        """A first turn's CPU part (any thread): the processor's output with the adapter's `host_planned`
        inputs, staged for the upload (floating tensors in the model's dtype: the cast the upload makes
        anyway). Where the image work runs on the device, the processor gets a stand-in of each image's
        shape on the meta device: everything but the image math, which is left as meta tensors of the
        right shapes, with the page-locked pixels to make them from (`first_turn_inputs`)."""
        if not self.images_on_device:
            return self._planned(self.preprocess(requests))
        pixels = [self._staged(_pixels(request.image)) for request in requests]
        return pixels, self._planned(self.preprocess(requests, [image.to("meta") for image in pixels], META))

    def first_turn_inputs(self, requests: Sequence[Request], hosts: Sequence[Any]) -> list[dict[str, torch.Tensor]]:
        """Each request's model inputs on the device from its `first_turn_host([request])` (the static
        engine's first turns; on the engine's thread). On the device the image processor runs once for
        all of them: the processor's other work stays in the workers (a whole processor call a document
        held the engine's thread ~10 ms on an H100 host, one call for the batch 0.8 s for 64 pages)."""
        if self.images_on_device:
            images = self._uploaded([image for pixels, _ in hosts for image in pixels])
            made = self.processor.image_processor(self.adapter.images_arg(images), device=self.device,
                                                  return_tensors="pt", **self.adapter.image_kwargs())
            hosts = self._with_images([single for _, single in hosts], made)
        return [{key: self.to_device(value) for key, value in single.items()} for single in hosts]

    def _planned(self, single: dict[str, Any]) -> dict[str, Any]:
        return {key: self._staged(value) for key, value in {**single, **self.adapter.host_planned(single)}.items()}

    def _with_images(self, singles: list[dict[str, Any]], made: dict[str, Any]) -> list[dict[str, Any]]:
        """Each document's inputs with the image processor's tensors for the batch (`made`) in place of its
        meta stand-ins: split along the first dim, each document taking its stand-in's shape."""
        singles = [dict(single) for single in singles]
        for key, value in made.items():
            if not isinstance(value, torch.Tensor) or key not in singles[0]:
                continue
            start = 0
            for single in singles:
                piece = value[start : start + single[key].shape[0]]
                if piece.shape != single[key].shape:
                    raise ValueError(f"{self.name}: the image processor made {key} of {tuple(value.shape)} for a "
                                     f"batch whose documents' stand-ins say {[tuple(s[key].shape) for s in singles]}")
                single[key], start = piece, start + piece.shape[0]
        missing = [key for key, value in singles[0].items() if isinstance(value, torch.Tensor) and value.is_meta]
        if missing:
            raise ValueError(f"{self.name}: the image processor made no {', '.join(missing)}")
        return singles

    def preprocess(self, requests: Sequence[Request], images: Sequence[Any] | None = None,
                   device: torch.device | None = None) -> dict[str, Any]:
        """The processor's work on `requests` (their images, or `images` in their stead: pixels already
        made), the image work on `device` (None: where the images are)."""
        texts = [self._render([self._user(request.prompt, image=True)]) for request in requests]
        images = [_rgb(request.image) for request in requests] if images is None else list(images)
        return dict(self.processor(
            images=self.adapter.images_arg(images),
            text=texts,
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,  # the rendered template already holds BOS where the family needs it
            **({"device": device} if device is not None else {}),
            **self.adapter.image_kwargs(),
        ))

    def turn_ids(self, prompt: str, previous_ended: bool) -> list[int]:
        """Token ids that append a user turn `prompt` (and the assistant header) to a conversation.

        Rendered from the chat template with a sentinel standing in for the previous reply, taking the
        text after it, so the template's own turn separators are used without re-rendering the history.
        """
        messages = [
            self._user("x", image=True),
            {"role": "assistant", "content": SENTINEL},  # plain text: every family's template takes it
            self._user(prompt, image=False),
        ]
        rendered = self._render(messages)
        if rendered.count(SENTINEL) != 1:
            raise ValueError(f"{self.name}: the chat template does not render assistant turns verbatim")
        suffix = rendered.split(SENTINEL, 1)[1]
        ids = self.tokenizer(suffix, add_special_tokens=False)["input_ids"]
        if not ids or ids[0] != self.turn_end_id:
            raise ValueError(f"{self.name}: the chat template does not close a reply with {self.turn_end!r}")
        return ids[1:] if previous_ended else ids

    def follow_up_inputs(self, state: Conversations, prompts: Sequence[str]
                         ) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[int]]:
        """A follow-up turn's model inputs (the conversation's ids and mask with the new user turns
        appended, left-padded, plus the family's continuation inputs), its mask, and each turn's length."""
        turns = [self.turn_ids(prompt, ended) for prompt, ended in zip(prompts, state.ended_with_turn_end)]
        new_ids, new_mask = self.left_pad(turns)
        mask = torch.cat([state.mask, new_mask], dim=1)
        inputs = {"input_ids": torch.cat([state.ids, new_ids], dim=1), "attention_mask": mask}
        inputs.update(self.adapter.continuation_inputs(state, mask.shape[1]))
        return inputs, mask, [len(turn) for turn in turns]

    def left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                ids[i, width - len(row) :] = torch.tensor(row)
                mask[i, width - len(row) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def left_padded(self, singles: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """The batch view of one-document processor outputs, padded as the processor pads a batch."""
        width = max(single["input_ids"].shape[1] for single in singles)
        batch = {}
        for key in SEQUENCE_INPUTS:
            if key not in singles[0]:
                continue
            rows = []
            for single in singles:
                value = single[key]
                pad = width - value.shape[1]
                fill = self.pad_id if key == "input_ids" else 0
                rows.append(torch.cat([value.new_full((1, pad, *value.shape[2:]), fill), value], dim=1))
            batch[key] = torch.cat(rows, dim=0)
        return batch

    def to_device(self, value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        # Host to device never waits for the GPU's queue: from page-locked memory the copy is queued, from
        # pageable memory CUDA stages it before returning (a blocking copy would drain the queue first).
        asynchronous = value.device.type == "cpu"
        if value.is_floating_point():
            return value.to(self.device, dtype=self.dtype, non_blocking=asynchronous)
        return value.to(self.device, non_blocking=asynchronous)

    def _uploaded(self, pixels: list[torch.Tensor]) -> list[torch.Tensor]:
        return [image.to(self.device, non_blocking=True) for image in pixels]

    def _staged(self, value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or value.is_meta:
            return value
        if value.is_floating_point():
            value = value.to(self.dtype)
        return value.pin_memory() if self.pin else value

    def _user(self, prompt: str, image: bool) -> dict[str, Any]:
        content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": prompt}]
        return {"role": "user", "content": content}

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"{self.name}: the tokenizer has no {token!r} token")
        return token_id

    def _end_ids(self, configured: Any) -> list[int]:
        """The checkpoint's end ids plus the template's end-of-turn token."""
        ids = configured if isinstance(configured, list) else [configured] if configured is not None else []
        return sorted(set(ids) | {self.turn_end_id})

    def _pad_id(self) -> int:
        if self.tokenizer.pad_token_id is None:  # some checkpoints ship without one: pad with an end token
            self.tokenizer.pad_token = self.turn_end
        return self.tokenizer.pad_token_id
