"""The `hf` engine: transformers' `generate`, batched, with multi-turn continuation by KV-cache reuse.

One class for every family: it receives the model, its processor and the family's adapter
(docvlm/models/adapter.py), and asks the adapter where families differ.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    DynamicCache,
    GenerationConfig,
    PreTrainedModel,
    ProcessorMixin,
    StoppingCriteria,
    StoppingCriteriaList,
)

from docvlm.models.adapter import FamilyAdapter
from docvlm.models.chat import Chat
from docvlm.models.protocol import BatchResult, Conversations, ModelSpec, Request
from docvlm.models.runs import (
    CACHE_KWARG,
    Run,
    batch_result,
    check_continuation,
    check_selectable,
    conversation_state,
    make_run,
    selected_rows,
    sync,
)

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' is bf16 on CUDA and fp32 elsewhere (CPU tests compare token ids exactly)."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in _DTYPES:
        raise ValueError(f"model dtype {name!r} is not one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[name]


def load_pretrained(spec: ModelSpec, path: Path, device: torch.device) -> tuple[PreTrainedModel, ProcessorMixin]:
    """A saved transformers model and its processor from the local folder `path` (no hub access)."""
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
    processor = AutoProcessor.from_pretrained(path, trust_remote_code=spec.trust_remote_code, local_files_only=True)
    return model.eval(), processor


class _BudgetStop(StoppingCriteria):
    """Row i is done once it has generated budgets[i] tokens; also timestamps the first token."""

    def __init__(self, start: int, budgets: Sequence[int], device: torch.device):
        self.start = start
        self.budgets = torch.tensor(list(budgets), device=device)
        self.device = device
        self.first_token_at: float | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        if self.first_token_at is None:  # called right after prefill produced the first token
            sync(self.device)
            self.first_token_at = time.perf_counter()
        return (input_ids.shape[1] - self.start) >= self.budgets


class HFEngine:
    """A `VisionLanguageModel` over any transformers-native image-text-to-text model."""

    def __init__(self, model: PreTrainedModel, processor: ProcessorMixin, adapter: FamilyAdapter, spec: ModelSpec,
                 device: torch.device):
        self.model, self.processor, self.adapter = model, processor, adapter
        self.family = adapter.family
        self.device = device
        self.dtype = model.dtype
        self.name = adapter.name
        self.chat = Chat(model, processor, adapter, device)
        self.tokenizer = self.chat.tokenizer
        self.turn_end, self.turn_end_id = self.chat.turn_end, self.chat.turn_end_id
        self.eos_ids, self.pad_id = self.chat.eos_ids, self.chat.pad_id

    # ---- public API ---------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self, requests: Sequence[Request], keep_state: bool = False, force_length: bool = False
    ) -> BatchResult:
        if not requests:
            return BatchResult([], None, 0.0, 0.0, 0)
        waited = time.perf_counter()
        inputs = self.encode(requests)
        sync(self.device)
        waited = time.perf_counter() - waited
        budgets = [request.max_new_tokens for request in requests]
        cache = DynamicCache(config=self.model.config.get_text_config(decoder=True))
        run = self._run(inputs, budgets, force_length, cache)
        prompt_tokens = inputs["attention_mask"].sum(dim=1).tolist()
        return replace(self._result(run, inputs, inputs["attention_mask"], prompt_tokens, keep_state), inputs_s=waited)

    @torch.inference_mode()
    def continue_(
        self,
        state: Conversations,
        prompts: Sequence[str],
        max_new_tokens: Sequence[int],
        keep_state: bool = False,
        force_length: bool = False,
    ) -> BatchResult:
        check_continuation(state, prompts, max_new_tokens)
        inputs, mask, turn_lengths = self.chat.follow_up_inputs(state, prompts)
        state.consumed = True  # generate extends the cache in place
        run = self._run(inputs, list(max_new_tokens), force_length, state.cache)
        return self._result(run, inputs, mask, turn_lengths, keep_state)

    @torch.inference_mode()
    def select(self, state: Conversations, rows: Sequence[int]) -> Conversations:
        """The conversations of `rows` only (their cache rows kept, the others dropped); consumes `state`."""
        check_selectable(state)
        index = torch.tensor(list(rows), dtype=torch.long, device=state.ids.device)
        state.cache.batch_select_indices(index)
        return selected_rows(state, index, state.cache)

    def encode(self, requests: Sequence[Request]) -> dict[str, torch.Tensor]:
        return self.chat.encode(requests)

    def turn_ids(self, prompt: str, previous_ended: bool) -> list[int]:
        return self.chat.turn_ids(prompt, previous_ended)

    # ---- internals ----------------------------------------------------------------------------

    def _run(self, inputs: dict[str, torch.Tensor], budgets: list[int], force_length: bool, cache: Any) -> Run:
        start = inputs["input_ids"].shape[1]
        stop = _BudgetStop(start, budgets, self.device)
        config = GenerationConfig(
            max_new_tokens=max(budgets),
            do_sample=False,
            num_beams=1,
            eos_token_id=None if force_length else self.eos_ids,
            pad_token_id=self.pad_id,
        )
        sync(self.device)
        began = time.perf_counter()
        sequences = self.model.generate(
            **inputs,
            generation_config=config,
            stopping_criteria=StoppingCriteriaList([stop]),
            **{CACHE_KWARG: cache},
        )
        sync(self.device)
        ended = time.perf_counter()
        first = stop.first_token_at or ended
        return make_run(sequences, start, budgets, force_length, self.eos_ids, first - began, ended - first, cache)

    def _result(self, run: Run, inputs: dict[str, torch.Tensor], input_mask: torch.Tensor, prompt_tokens: list[int],
                keep_state: bool) -> BatchResult:
        state = None
        if keep_state:
            extras = self.adapter.state_extras(inputs, run.sequences.shape[1])
            state = conversation_state(run, input_mask, self.turn_end_id, extras)
        return batch_result(run, self.tokenizer, prompt_tokens, state)
