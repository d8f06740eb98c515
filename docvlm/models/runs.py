"""What both engines share after the model ran: replies, their lengths, the conversation state, timings.

Plain functions and one dataclass (`Run`), so an engine composes them instead of inheriting them.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationMixin

from docvlm.models.protocol import BatchResult, Conversations, Reply

# Releases after 5.17 renamed generate's `past_key_values` to `cache` (the old name still works there,
# with a FutureWarning) while 5.17 knows only the old one: detect the name instead of pinning a version.
CACHE_KWARG = (
    "cache"
    if "cache" in inspect.signature(GenerationMixin.prepare_inputs_for_generation).parameters
    else "past_key_values"
)


def sync(device: torch.device) -> None:
    """Wait for the device (timings measure work done, not work queued)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Run:
    """What one generation call produced (prefill + decode of one turn)."""

    sequences: torch.Tensor  # (batch, input length + generated)
    start: int  # input length
    generated: list[list[int]]  # sequences[:, start:] on the host
    lengths: list[int]  # real generated tokens per row
    finished: list[bool]
    prefill_s: float
    decode_s: float
    cache: Any  # the cache the state continues from (the static engine's lease may have grown)


def make_run(sequences: torch.Tensor, start: int, budgets: list[int], force_length: bool, end_ids: list[int],
             prefill_s: float, decode_s: float, cache: Any) -> Run:
    generated = sequences[:, start:].tolist()
    lengths, finished = reply_lengths(generated, budgets, force_length, end_ids)
    return Run(sequences, start, generated, lengths, finished, prefill_s, decode_s, cache)


def reply_lengths(generated: list[list[int]], budgets: list[int], force_length: bool,
                  end_ids: list[int]) -> tuple[list[int], list[bool]]:
    """A row's reply ends at its first end id (kept) or at its budget; the rest is padding garbage."""
    lengths, finished = [], []
    for row, budget in zip(generated, budgets):
        limit = min(budget, len(row))
        end = None if force_length else next((i for i in range(limit) if row[i] in end_ids), None)
        lengths.append(limit if end is None else end + 1)
        finished.append(end is not None)
    return lengths, finished


def batch_result(run: Run, tokenizer: Any, prompt_tokens: list[int], state: Conversations | None) -> BatchResult:
    replies = []
    for row, (length, finished) in enumerate(zip(run.lengths, run.finished)):
        ids = run.generated[row][:length]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        replies.append(Reply(text, ids, int(prompt_tokens[row]), finished))
    return BatchResult(replies, state, run.prefill_s, run.decode_s, sum(run.lengths))


def conversation_state(run: Run, input_mask: torch.Tensor, turn_end_id: int,
                       extras: dict[str, torch.Tensor]) -> Conversations:
    """The state a next turn continues from: the mask is 1 on real tokens only (see `Conversations`)."""
    generated = run.sequences.shape[1] - run.start
    mask = torch.cat([input_mask, input_mask.new_zeros(input_mask.shape[0], generated)], dim=1)
    for row, length in enumerate(run.lengths):
        mask[row, run.start : run.start + length] = 1  # garbage after the real end stays 0
    ended = [length > 0 and row[length - 1] == turn_end_id for row, length in zip(run.generated, run.lengths)]
    return Conversations(run.cache, run.sequences, mask, ended, extras)


def selected_rows(state: Conversations, index: torch.Tensor, cache: Any) -> Conversations:
    """The conversations of rows `index` of `state` over `cache` (the engine has moved their KV there);
    consumes `state`."""
    state.consumed = True
    extras = {key: value[index] for key, value in state.extras.items()}
    ended = [state.ended_with_turn_end[row] for row in index.tolist()]
    return Conversations(cache, state.ids[index], state.mask[index], ended, extras)


def check_continuation(state: Conversations, prompts: Sequence[str], budgets: Sequence[int]) -> None:
    if state.consumed:
        raise ValueError("this conversation state was already continued; use the state the last turn returned")
    if not len(prompts) == len(budgets) == len(state):
        raise ValueError(
            f"continue_ needs one prompt and one budget per row: state has {len(state)} rows, "
            f"got {len(prompts)} prompts and {len(budgets)} budgets"
        )
    if any(budget < 1 for budget in budgets):
        raise ValueError(f"max_new_tokens must be >= 1, got {list(budgets)}")


def check_selectable(state: Conversations) -> None:
    if state.consumed:
        raise ValueError("this conversation state was already continued; use the state the last turn returned")
