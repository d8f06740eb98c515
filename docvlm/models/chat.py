"""The processor side of a conversation: chat template, turn ids, end and pad ids, preprocessing.

One `Chat` per engine, over the family's processor and adapter (which says how images are passed and
which token closes a turn); both engines use it the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import GenerationConfig, PreTrainedModel, ProcessorMixin

from docvlm.models.adapter import FamilyAdapter
from docvlm.models.protocol import Conversations, Request

# Stands in for a previous reply when rendering the chat template of a follow-up turn.
SENTINEL = "@@DOCVLM-PREVIOUS-REPLY@@"
SEQUENCE_INPUTS = ("input_ids", "attention_mask", "cross_attention_mask", "mm_token_type_ids")  # left-padded


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


class Chat:
    """Constructing it takes over the model's generation config: the engines own decoding (greedy,
    per-row budgets, end ids), so the checkpoint's sampling defaults are dropped (its end ids kept here)."""

    def __init__(self, model: PreTrainedModel, processor: ProcessorMixin, adapter: FamilyAdapter,
                 device: torch.device):
        self.processor, self.adapter, self.name = processor, adapter, adapter.name
        self.device, self.dtype = device, model.dtype
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
        return {key: self.to_device(value) for key, value in self.preprocess(requests).items()}

    def preprocess(self, requests: Sequence[Request]) -> dict[str, Any]:
        """The processor's work (CPU only, so it can run in a background thread)."""
        texts = [self._render([self._user(request.prompt, image=True)]) for request in requests]
        images = [_rgb(request.image) for request in requests]
        return dict(self.processor(
            images=self.adapter.images_arg(images),
            text=texts,
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,  # the rendered template already holds BOS where the family needs it
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
        asynchronous = value.is_pinned()  # staged by the prefetcher: the copy need not hold this thread
        if value.is_floating_point():
            return value.to(self.device, dtype=self.dtype, non_blocking=asynchronous)
        return value.to(self.device, non_blocking=asynchronous)

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
