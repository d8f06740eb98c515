"""The generic HF engine: batched greedy generation and multi-turn continuation by KV-cache reuse.

Family adapters (families.py) subclass `HFEngine` and override a few small hooks; everything else
(loading, chat template, per-row budgets, cache reuse, timings) is shared.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    DynamicCache,
    GenerationConfig,
    GenerationMixin,
    PreTrainedModel,
    ProcessorMixin,
    StoppingCriteria,
    StoppingCriteriaList,
)

from docvlm.models.protocol import BatchResult, Conversations, ModelSpec, Reply, Request

# Releases after 5.17 renamed generate's `past_key_values` to `cache` (the old name still works there,
# with a FutureWarning) while 5.17 knows only the old one: detect the name instead of pinning a version.
_CACHE_KWARG = (
    "cache"
    if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    else "past_key_values"
)
# Stands in for a previous reply when rendering the chat template of a follow-up turn.
SENTINEL = "@@DOCVLM-PREVIOUS-REPLY@@"
_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' is bf16 on CUDA and fp32 elsewhere (CPU tests compare token ids exactly)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in _DTYPES:
        raise ValueError(f"model dtype {name!r} is not one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[name]


def _rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _BudgetStop(StoppingCriteria):
    """Row i is done once it has generated budgets[i] tokens; also timestamps the first token."""

    def __init__(self, start: int, budgets: Sequence[int], device: torch.device):
        self.start = start
        self.budgets = torch.tensor(list(budgets), device=device)
        self.device = device
        self.first_token_at: float | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        if self.first_token_at is None:  # called right after prefill produced the first token
            _sync(self.device)
            self.first_token_at = time.perf_counter()
        return (input_ids.shape[1] - self.start) >= self.budgets


@dataclass
class _Run:
    """What one `model.generate` call produced."""

    sequences: torch.Tensor  # (batch, input length + generated)
    start: int  # input length
    generated: list[list[int]]  # sequences[:, start:] on the host
    lengths: list[int]  # real generated tokens per row
    finished: list[bool]
    prefill_s: float
    decode_s: float


class HFEngine:
    """A `VisionLanguageModel` over any transformers-native image-text-to-text model."""

    family: ClassVar[str] = ""  # set by `register_family`
    weights: ClassVar[str] = ""  # the Hub repo of the real checkpoint, for "how to get it" messages
    turn_end: ClassVar[str] = ""  # the token that closes a chat turn in the family's template

    def __init__(self, model: PreTrainedModel, processor: ProcessorMixin, spec: ModelSpec, device: torch.device):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"  # right padding breaks batched == one-at-a-time
        self.device = device
        self.dtype = model.dtype
        self.name = getattr(spec, "name", "") or f"{self.family}:{Path(spec.path).name}"
        self.turn_end_id = self._token_id(self.turn_end)
        self.eos_ids = self._end_ids()
        self.pad_id = self._pad_id()
        # The engine owns decoding (greedy, per-row budgets, end ids): drop the checkpoint's sampling defaults.
        self.model.generation_config = GenerationConfig(
            bos_token_id=model.generation_config.bos_token_id, pad_token_id=self.pad_id, do_sample=False
        )
        self.configure(spec)

    @classmethod
    def load(cls, spec: ModelSpec, path: Path, device: torch.device) -> HFEngine:
        dtype = resolve_dtype(spec.dtype, device)
        model = AutoModelForImageTextToText.from_pretrained(
            path,
            dtype=dtype,
            attn_implementation=spec.attn_implementation,
            trust_remote_code=spec.trust_remote_code,
            # None lets transformers fall back to pickled .bin weights; True refuses them.
            use_safetensors=None if spec.allow_pickle_weights else True,
            local_files_only=True,
            device_map=device,
        )
        processor = AutoProcessor.from_pretrained(
            path, trust_remote_code=spec.trust_remote_code, local_files_only=True
        )
        return cls(model.eval(), processor, spec, device)

    # ---- family hooks -------------------------------------------------------------------------

    def configure(self, spec: ModelSpec) -> None:
        """Apply `spec.max_tiles` to the processor and check it agrees with the model."""

    def image_kwargs(self) -> dict[str, Any]:
        """Extra processor arguments for images."""
        return {}

    def images_arg(self, images: list[Image.Image]) -> list:
        """Images in the layout the processor wants (one image per row)."""
        return images

    def state_extras(self, model_inputs: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
        """Family state to keep after a turn whose sequence is now `length` long."""
        return {}

    def continuation_inputs(self, state: Conversations, length: int) -> dict[str, torch.Tensor]:
        """Family inputs for continuing `state` with a sequence of `length` (may restore model state)."""
        return {}

    # ---- public API ---------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self, requests: Sequence[Request], keep_state: bool = False, force_length: bool = False
    ) -> BatchResult:
        if not requests:
            return BatchResult([], None, 0.0, 0.0, 0)
        inputs = self.encode(requests)
        budgets = [request.max_new_tokens for request in requests]
        cache = self._new_cache(len(requests))
        run = self._run(inputs, budgets, force_length, cache)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        return self._result(run, inputs, inputs["attention_mask"], prompt_tokens, cache, keep_state)

    @torch.inference_mode()
    def continue_(
        self,
        state: Conversations,
        prompts: Sequence[str],
        max_new_tokens: Sequence[int],
        keep_state: bool = False,
        force_length: bool = False,
    ) -> BatchResult:
        self._check_continuation(state, prompts, max_new_tokens)
        turns = [self.turn_ids(prompt, ended) for prompt, ended in zip(prompts, state.ended_with_turn_end)]
        new_ids, new_mask = self._left_pad(turns)
        mask = torch.cat([state.mask, new_mask], dim=1)
        inputs = {"input_ids": torch.cat([state.ids, new_ids], dim=1), "attention_mask": mask}
        inputs.update(self.continuation_inputs(state, mask.shape[1]))
        state.consumed = True  # generate extends the cache in place
        run = self._run(inputs, list(max_new_tokens), force_length, state.cache)
        return self._result(run, inputs, mask, [len(turn) for turn in turns], state.cache, keep_state)

    @torch.inference_mode()
    def select(self, state: Conversations, rows: Sequence[int]) -> Conversations:
        """The conversations of `rows` only (their cache rows kept, the others dropped); consumes `state`."""
        if state.consumed:
            raise ValueError("this conversation state was already continued; use the state the last turn returned")
        index = torch.tensor(list(rows), dtype=torch.long, device=state.ids.device)
        cache = self._select_cache(state.cache, index)
        state.consumed = True
        extras = {key: value[index] for key, value in state.extras.items()}
        ended = [state.ended_with_turn_end[row] for row in rows]
        return Conversations(cache, state.ids[index], state.mask[index], ended, extras)

    def encode(self, requests: Sequence[Request]) -> dict[str, torch.Tensor]:
        """Processor output for first turns on the device: chat template, image placeholders, left padding."""
        return {key: self._to_device(value) for key, value in self.preprocess(requests).items()}

    def preprocess(self, requests: Sequence[Request]) -> dict[str, Any]:
        """The processor's work (CPU only, so it can run in a background thread)."""
        texts = [self._render([self._user(request.prompt, image=True)]) for request in requests]
        images = [_rgb(request.image) for request in requests]
        return dict(self.processor(
            images=self.images_arg(images),
            text=texts,
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,  # the rendered template already holds BOS where the family needs it
            **self.image_kwargs(),
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

    # ---- internals ----------------------------------------------------------------------------

    def _new_cache(self, rows: int) -> Any:
        """The KV cache of a new conversation batch."""
        return DynamicCache(config=self.model.config.get_text_config(decoder=True))

    def _select_cache(self, cache: Any, index: torch.Tensor) -> Any:
        cache.batch_select_indices(index)
        return cache

    def _run(
        self, inputs: dict[str, torch.Tensor], budgets: list[int], force_length: bool, cache: Any
    ) -> _Run:
        start = inputs["input_ids"].shape[1]
        stop = _BudgetStop(start, budgets, self.device)
        config = GenerationConfig(
            max_new_tokens=max(budgets),
            do_sample=False,
            num_beams=1,
            eos_token_id=None if force_length else self.eos_ids,
            pad_token_id=self.pad_id,
        )
        _sync(self.device)
        began = time.perf_counter()
        sequences = self.model.generate(
            **inputs,
            generation_config=config,
            stopping_criteria=StoppingCriteriaList([stop]),
            **{_CACHE_KWARG: cache},
        )
        _sync(self.device)
        ended = time.perf_counter()
        first = stop.first_token_at or ended
        return self._make_run(sequences, start, budgets, force_length, first - began, ended - first)

    def _make_run(self, sequences: torch.Tensor, start: int, budgets: list[int], force_length: bool,
                  prefill_s: float, decode_s: float) -> _Run:
        generated = sequences[:, start:].tolist()
        lengths, finished = self._reply_lengths(generated, budgets, force_length)
        return _Run(sequences, start, generated, lengths, finished, prefill_s, decode_s)

    def _reply_lengths(
        self, generated: list[list[int]], budgets: list[int], force_length: bool
    ) -> tuple[list[int], list[bool]]:
        """A row's reply ends at its first end id (kept) or at its budget; the rest is padding garbage."""
        lengths, finished = [], []
        for row, budget in zip(generated, budgets):
            limit = min(budget, len(row))
            end = None if force_length else next((i for i in range(limit) if row[i] in self.eos_ids), None)
            lengths.append(limit if end is None else end + 1)
            finished.append(end is not None)
        return lengths, finished

    def _result(
        self,
        run: _Run,
        inputs: dict[str, torch.Tensor],
        input_mask: torch.Tensor,
        prompt_tokens: list[int],
        cache: Any,
        keep_state: bool,
    ) -> BatchResult:
        replies = []
        for row, (length, finished) in enumerate(zip(run.lengths, run.finished)):
            ids = run.generated[row][:length]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            replies.append(Reply(text, ids, int(prompt_tokens[row]), finished))
        state = self._state(run, inputs, input_mask, cache) if keep_state else None
        return BatchResult(replies, state, run.prefill_s, run.decode_s, sum(run.lengths))

    def _state(
        self, run: _Run, inputs: dict[str, torch.Tensor], input_mask: torch.Tensor, cache: Any
    ) -> Conversations:
        generated = run.sequences.shape[1] - run.start
        mask = torch.cat([input_mask, input_mask.new_zeros(input_mask.shape[0], generated)], dim=1)
        for row, length in enumerate(run.lengths):
            mask[row, run.start : run.start + length] = 1  # garbage after the real end stays 0
        ended = [length > 0 and row[length - 1] == self.turn_end_id for row, length in zip(run.generated, run.lengths)]
        extras = self.state_extras(inputs, run.sequences.shape[1])
        return Conversations(cache, run.sequences, mask, ended, extras)

    def _check_continuation(self, state: Conversations, prompts: Sequence[str], budgets: Sequence[int]) -> None:
        if state.consumed:
            raise ValueError("this conversation state was already continued; use the state the last turn returned")
        if not len(prompts) == len(budgets) == len(state):
            raise ValueError(
                f"continue_ needs one prompt and one budget per row: state has {len(state)} rows, "
                f"got {len(prompts)} prompts and {len(budgets)} budgets"
            )
        if any(budget < 1 for budget in budgets):
            raise ValueError(f"max_new_tokens must be >= 1, got {list(budgets)}")

    def _left_pad(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                ids[i, width - len(row) :] = torch.tensor(row)
                mask[i, width - len(row) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _user(self, prompt: str, image: bool) -> dict[str, Any]:
        content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": prompt}]
        return {"role": "user", "content": content}

    def _render(self, messages: list[dict[str, Any]]) -> str:
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _to_device(self, value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        if value.is_floating_point():
            return value.to(self.device, dtype=self.dtype)
        return value.to(self.device)

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"{self.name}: the tokenizer has no {token!r} token")
        return token_id

    def _end_ids(self) -> list[int]:
        """The checkpoint's end ids plus the template's end-of-turn token."""
        configured = self.model.generation_config.eos_token_id
        ids = configured if isinstance(configured, list) else [configured] if configured is not None else []
        return sorted(set(ids) | {self.turn_end_id})

    def _pad_id(self) -> int:
        if self.tokenizer.pad_token_id is None:  # some checkpoints ship without one: pad with an end token
            self.tokenizer.pad_token = self.turn_end
        return self.tokenizer.pad_token_id
