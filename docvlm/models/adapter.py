"""A model family as ONE object: everything that differs between families, held by the engines.

An engine (hf_engine.HFEngine, static_engine.StaticEngine) receives the model, its processor and the
family's adapter, and asks the adapter where families differ; it never branches on a family name.
An adapter describes its family (class attributes: checkpoint, end-of-turn token, tiny model and
full-size replicas) and, once constructed over a loaded model, answers the engines' questions
(instance methods: processor arguments, conversation state, rotary positions, sizes).

Adding a family: one file under docvlm/models/families/ with a `FamilyAdapter` subclass, one line in
docvlm/models/registry.py, one YAML per checkpoint under conf/model/ (README "Adding a model family").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from PIL import Image
from transformers import GenerationConfig, PretrainedConfig, PreTrainedModel, ProcessorMixin

from docvlm.models.protocol import Conversations, ModelSpec

PROMPT_TEXT_TOKENS = 256  # chat template and prompt, beside the image tokens (batch planning)


@dataclass(frozen=True)
class TinyModel:
    """A tiny random model's parts (tests, dry runs): config, processor, generation config."""

    config: PretrainedConfig
    processor: ProcessorMixin
    generation_config: GenerationConfig


@dataclass(frozen=True)
class Replica:
    """A full-size architecture with random weights (benchmarks): its config from the real checkpoint's
    numbers; special token ids, tokenizer and chat template from the tiny model's processor."""

    name: str  # e.g. "internvl3_5_8b" (conf/model/<name>.yaml, --model of the benchmark)
    expected_params: float  # the real checkpoint's parameter count (model card / safetensors index)
    config: Callable[[ProcessorMixin], PretrainedConfig]  # tiny processor -> full-size config
    processor: Callable[[ProcessorMixin, int], ProcessorMixin]  # (tiny processor, max_tiles) -> real image settings


PLANNED = "planned_"  # `host_planned` keys: the engine's, never passed to the model


class FamilyAdapter:
    """Defaults fit a decoder-only model whose image tokens sit in the prompt (InternVL)."""

    family: ClassVar[str] = ""  # the config's `model.family`
    weights: ClassVar[str] = ""  # the Hub repo of the real checkpoint, for "how to get it" messages
    turn_end: ClassVar[str] = ""  # the token that closes a chat turn in the family's template
    model_class: ClassVar[type[PreTrainedModel]]
    packs_prefill: ClassVar[bool] = False  # first turns can be packed (per-document positions: `packed_positions`)
    batches_vision: ClassVar[bool] = False  # unpacked: `encode_images` runs several documents' vision tower a pass
    replicas: ClassVar[tuple[Replica, ...]] = ()

    def __init__(self, model: PreTrainedModel, processor: ProcessorMixin, spec: ModelSpec, name: str):
        self.model, self.processor, self.name = model, processor, name
        self.configure(spec)

    # ---- the family's test and benchmark models ---------------------------------------------------

    @classmethod
    def tiny(cls) -> TinyModel:
        """The tiny model's config, processor and generation config (docvlm/models/tiny.py saves it)."""
        raise NotImplementedError(f"{cls.family}: no tiny model")

    @classmethod
    def finish_tiny(cls, model: PreTrainedModel) -> None:
        """Adjust freshly initialised tiny weights (e.g. open gates that start closed)."""

    # ---- processor ------------------------------------------------------------------------------

    def configure(self, spec: ModelSpec) -> None:
        """Apply `spec.max_tiles` to the processor and check it agrees with the model."""

    def image_kwargs(self) -> dict[str, Any]:
        """Extra processor arguments for images."""
        return {}

    def images_arg(self, images: list[Image.Image]) -> list:
        """Images in the layout the processor wants (one image per row)."""
        return images

    # ---- conversation state (transformers `generate`) ---------------------------------------------

    def encode_images(self, singles: list[dict[str, torch.Tensor]], limit: int) -> Iterator[list[dict[str, torch.Tensor]]]:
        """The static engine's unpacked prefill inputs, in order, in groups whose vision tower ran in one
        pass (up to `limit` vision tokens) where the family can take its output instead of pixels; the
        engine prefills a group's documents of one prompt length together (default: each document
        alone, its forward running its own vision tower)."""
        return ([single] for single in singles)

    def state_extras(self, model_inputs: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
        """Family state to keep after a turn whose sequence is now `length` long."""
        return {}

    def continuation_inputs(self, state: Conversations, length: int) -> dict[str, torch.Tensor]:
        """Family inputs for continuing `state` with a sequence of `length` (may restore model state)."""
        return {}

    # ---- the static engine's decode and follow-up turns -----------------------------------------

    def position_offsets(self, rows: int, device: torch.device) -> torch.Tensor:
        """Added to the count of real tokens to give the next token's rotary position."""
        return torch.zeros(rows, dtype=torch.long, device=device)

    def rotary_ids(self, positions: torch.Tensor) -> torch.Tensor:
        """The language model's rotary ids for text positions (rows, tokens)."""
        return positions

    def turn_positions(self, mask: torch.Tensor, start: int) -> torch.Tensor:
        """Rotary positions of a follow-up turn's tokens (columns start..): generate's rule, real tokens counted."""
        positions = mask.long().cumsum(-1) - 1
        return positions.masked_fill_(mask == 0, 1)[:, start:]

    def host_planned(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the static engine's first turn will need of one document, computed from its processor
        output in the prefetch worker (on the host, where reading it costs no GPU sync): keys starting with
        PLANNED, not model inputs (Qwen-VL: the 3-D rotary positions)."""
        return {}

    def packed_positions(self, singles: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, list[Any]]:
        """Position ids of one-document inputs packed into one sequence, each document's as if it were
        alone (here 1-D, restarting at 0), and each document's `row_extras` (forward leaves none when
        given positions)."""
        device = singles[0]["input_ids"].device
        positions = torch.cat([torch.arange(single["input_ids"].shape[1], device=device) for single in singles])
        return positions[None], [None] * len(singles)

    def packed_vision(self) -> AbstractContextManager[None]:
        """The vision tower's attention during a packed prefill (default: its own)."""
        return nullcontext()

    def row_extras(self) -> Any:
        """Family state one prefill left on the model for its rows (Qwen-VL: their rope deltas), in row order."""
        return None

    def set_batch_extras(self, extras: list[Any]) -> None:
        """Put the batch's family state back together on the model."""

    def cross_columns(self) -> int:
        """Image KV columns of a cross-attention layer (0: no cross-attention)."""
        return 0

    def cross_attention_bias(self, inputs: dict[str, torch.Tensor],
                             dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Cross-attention: (bias over image columns (rows, 1, 1, columns), 1 where the row sees an image
        (rows, 1, 1)) of the last prompt token, which every token after it repeats; None without
        cross-attention."""
        return None

    # ---- sizes (batch planning) -------------------------------------------------------------------

    def prompt_tokens(self, max_tiles: int) -> int:
        """Prompt tokens of a document with every tile filled (image tokens in the prompt)."""
        return (max_tiles + 1) * self.tokens_per_tile() + PROMPT_TEXT_TOKENS

    def vision_tokens(self, max_tiles: int) -> int:
        """Tokens the vision tower sees for one document with every tile filled."""
        raise NotImplementedError(f"{self.family}: vision_tokens")

    def tokens_per_tile(self) -> int:
        """Image tokens of one tile in the prompt."""
        raise NotImplementedError(f"{self.family}: tokens_per_tile")
