"""What the pipeline codes against: requests, replies, batch results and the model protocol."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Protocol

import torch
from PIL import Image

from docvlm.errors import UserError
from docvlm.models.spec import ModelSpec  # noqa: F401  (re-exported: the model config type)


class ModelNotFoundError(UserError):
    """The configured model folder is missing or holds no model (no config.json): one line for the user."""


@dataclass
class Request:
    image: Image.Image  # RGB, already upright
    prompt: str  # user text; the adapter adds the image and the chat template
    max_new_tokens: int  # per-request budget (rows of one batch may differ)
    # Tokens the conversation's later turns will add (their prompts and budgets), when it is kept
    # (keep_state): the static engine reserves that many KV columns. None: not known, a default reserve.
    later_tokens: Optional[int] = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.later_tokens is not None and self.later_tokens < 0:
            raise ValueError(f"later_tokens must be >= 0, got {self.later_tokens}")


@dataclass
class Reply:
    text: str  # decoded generated text, special tokens stripped
    token_ids: list[int]  # generated ids (incl. the end-of-turn token if produced)
    prompt_tokens: int  # real (unpadded) prompt length of this row for this turn
    finished: bool  # True if it ended with an end-of-turn token, False if the budget was hit


@dataclass
class Conversations:
    """Batch state for multi-turn continuation; opaque to the pipeline.

    The KV cache covers `ids[:, :-1]` (generate never feeds the last sampled token). `mask` is 0 on
    left padding AND on every position after a row's real end (pad tokens generate fed after EOS or
    budget), so continuing gives the same positions and attention as recomputing the conversation.
    Continuing a state extends its cache in place: a state can be continued once. The static engine
    keeps ONE live conversation batch (its KV buffers): a new `generate` retires the previous state.
    """

    cache: Any  # transformers Cache
    ids: torch.Tensor  # (batch, length) prompt + generated ids, left padded, garbage included
    mask: torch.Tensor  # (batch, length) 1 on real tokens only
    ended_with_turn_end: list[bool]  # per row: did the last reply end with the end-of-turn token
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # family state (rope deltas, cross mask)
    consumed: bool = False

    def __len__(self) -> int:
        return self.ids.shape[0]


@dataclass
class BatchResult:
    replies: list[Reply]
    state: Conversations | None  # present when keep_state=True
    prefill_s: float  # device-synchronised time to the first generated token
    decode_s: float  # device-synchronised time for the remaining tokens
    new_tokens: int  # real generated tokens over all rows
    inputs_s: float = 0.0  # first turns: waited for the processor's outputs (not prefetched in time) and uploads


class VisionLanguageModel(Protocol):
    name: str
    device: torch.device
    dtype: torch.dtype

    def generate(
        self, requests: Sequence[Request], keep_state: bool = False, force_length: bool = False
    ) -> BatchResult: ...

    def continue_(
        self,
        state: Conversations,
        prompts: Sequence[str],
        max_new_tokens: Sequence[int],
        keep_state: bool = False,
        force_length: bool = False,
    ) -> BatchResult:
        """Row i of `state` gets the new user turn prompts[i] (text only); the KV cache is reused."""
        ...

    def select(self, state: Conversations, rows: Sequence[int]) -> Conversations:
        """Keep only the conversations of `rows` (e.g. the statements of a mixed batch); consumes `state`."""
        ...

    def turn_ids(self, prompt: str, previous_ended: bool) -> list[int]:
        """The token ids a follow-up turn `prompt` appends (its length plans later turns' KV columns)."""
        ...
