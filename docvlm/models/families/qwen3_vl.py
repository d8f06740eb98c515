"""Qwen3-VL: 32x32 px a visual token; M-RoPE offsets (`rope_deltas`) live on the model per batch."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch
from transformers import (
    PreTrainedTokenizerFast,
    ProcessorMixin,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

from docvlm.models.adapter import PLANNED, FamilyAdapter, Replica, TinyModel
from docvlm.models.packing import packed_vision_attention
from docvlm.models.pixels_in_dtype import normalised_in_model_dtype
from docvlm.models.protocol import Conversations, ModelSpec
from docvlm.models.tiny_parts import (
    CHATML_SPECIALS,
    INIT_RANGE,
    QWEN3_8B_TEXT,
    TEXT,
    chatml_template,
    generation_config,
    text_config,
    train_tokenizer,
)

# Qwen-VL has no tiles: `max_tiles` caps its pixels at this many visual tokens a tile, InternVL's count.
TOKENS_PER_TILE = 256
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
IMAGE_TEMPLATE = "<|vision_start|><|image_pad|><|vision_end|>"
VIDEO_TEMPLATE = "<|vision_start|><|video_pad|><|vision_end|>"
PATCH, MERGE = 16, 2  # as the real Qwen3-VL: 32x32 px per token


class QwenVLRotary(FamilyAdapter):
    """The Qwen-VL families' shared mechanics: pixels capped per `max_tiles`, 3-D rotary positions whose
    text part runs `rope_deltas` ahead of the token count (kept on the model by transformers); packed
    first turns get each document's 3-D positions and deltas from the model's own `get_rope_index`."""

    turn_end = "<|im_end|>"
    packs_prefill = True

    def configure(self, spec: ModelSpec) -> None:
        image_processor = self.processor.image_processor
        unit = image_processor.patch_size * image_processor.merge_size
        self.size = {
            "shortest_edge": image_processor.size["shortest_edge"],
            "longest_edge": spec.max_tiles * TOKENS_PER_TILE * unit * unit,
        }
        normalised_in_model_dtype(image_processor, self.model.dtype)  # patchified in it: the same values

    def image_kwargs(self) -> dict[str, Any]:
        return {"size": self.size}

    def state_extras(self, model_inputs: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
        return {"rope_deltas": self.model.model.rope_deltas.clone()}

    def continuation_inputs(self, state: Conversations, length: int) -> dict[str, torch.Tensor]:
        # Another batch may have run since: restore this batch's offsets before generate reads them.
        self.model.model.rope_deltas = state.extras["rope_deltas"]
        return {}

    def turn_positions(self, mask: torch.Tensor, start: int) -> torch.Tensor:
        return super().turn_positions(mask, start) + self.position_offsets(mask.shape[0], mask.device)[:, None]

    def position_offsets(self, rows: int, device: torch.device) -> torch.Tensor:
        return self.model.model.rope_deltas[:rows, 0]  # M-RoPE: text positions run `rope_deltas` ahead

    def rotary_ids(self, positions: torch.Tensor) -> torch.Tensor:
        return positions[None].expand(3, -1, -1)  # text tokens: the same position on all three axes

    def row_extras(self) -> torch.Tensor:
        return self.model.model.rope_deltas.clone()

    def set_batch_extras(self, extras: list[torch.Tensor]) -> None:
        self.model.model.rope_deltas = torch.cat(extras, dim=0)

    def host_planned(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        # The model's own rule reads ids and grid to the host a few times a document: on the GPU, inside
        # a packed prefill, each read stopped the host until the GPU drained (BENCHMARKS 2026-12-05, late).
        positions, deltas = self.model.model.get_rope_index(
            inputs["input_ids"], inputs["mm_token_type_ids"], image_grid_thw=inputs.get("image_grid_thw"),
            attention_mask=inputs.get("attention_mask"))
        return {f"{PLANNED}positions": positions, f"{PLANNED}rope_deltas": deltas}

    def packed_positions(self, singles: list[dict[str, torch.Tensor]]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # Each document's M-RoPE positions (3, 1, tokens) as if alone (`host_planned`); 3 rows, not 4: no
        # text row, so transformers builds no mask from them (packed attention keeps documents apart).
        positions = torch.cat([single[f"{PLANNED}positions"] for single in singles], dim=2)
        return positions, [single[f"{PLANNED}rope_deltas"] for single in singles]

    def tokens_per_tile(self) -> int:
        return TOKENS_PER_TILE

    def vision_tokens(self, max_tiles: int) -> int:
        return max_tiles * TOKENS_PER_TILE * self.model.config.vision_config.spatial_merge_size**2


class Qwen3VL(QwenVLRotary):
    family = "qwen3_vl"
    weights = "Qwen/Qwen3-VL-8B-Instruct"
    model_class = Qwen3VLForConditionalGeneration

    def packed_vision(self) -> AbstractContextManager[None]:
        # Full attention over ~7,000 patches an image at head dim 72: which kernel wins (cuDNN an image,
        # padded to a tuned head dim, or one flash call) is timed on this GPU (packing.fastest_vision_attention).
        return packed_vision_attention(self.model.config.vision_config, fastest_way=True)

    @classmethod
    def tiny(cls) -> TinyModel:
        tokenizer = qwen_vl_tokenizer()
        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True}
        text = text_config(tokenizer, layers=2, rope_parameters=rope, pad_token_id=tokenizer.pad_token_id)
        vision = dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=PATCH,
            spatial_merge_size=MERGE, temporal_patch_size=2, out_hidden_size=TEXT["hidden_size"],
            num_position_embeddings=64, deepstack_visual_indexes=[0], initializer_range=INIT_RANGE,
        )  # fmt: skip
        unit = PATCH * MERGE
        size = {"shortest_edge": 4 * unit * unit, "longest_edge": 64 * unit * unit}
        processor = _processor(tokenizer, size, chatml_template(IMAGE_TEMPLATE, VIDEO_TEMPLATE))
        return TinyModel(qwen3_vl_config(vision, text, tokenizer), processor,
                         generation_config(tokenizer, ["<|im_end|>", "<|endoftext|>"]))


def qwen_vl_tokenizer() -> PreTrainedTokenizerFast:
    """The Qwen-VL families' tiny tokenizer: ChatML and vision special tokens, Qwen's end and pad tokens."""
    return PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(CHATML_SPECIALS + VISION_TOKENS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )


def qwen3_vl_config(vision: dict, text: dict, tokenizer: Any) -> Qwen3VLConfig:
    """Qwen3-VL config wired to the tokenizer's vision tokens (tiny models and full-size replicas)."""
    return qwen_vl_config(Qwen3VLConfig, vision, text, tokenizer)


def qwen_vl_config(config_class: type, vision: dict, text: dict, tokenizer: Any) -> Any:
    """A Qwen-VL family's config (`config_class`) wired to the tokenizer's vision tokens."""
    ids = tokenizer.convert_tokens_to_ids
    return config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def _processor(tokenizer: Any, size: dict[str, int], chat_template: str, **extra: Any) -> Qwen3VLProcessor:
    return qwen_vl_processor(Qwen3VLProcessor, Qwen3VLVideoProcessor, PATCH, tokenizer, size, chat_template, **extra)


def qwen_vl_processor(processor_class: type, video_class: type, patch: int, tokenizer: Any, size: dict[str, int],
                      chat_template: str, **extra: Any) -> Any:
    """A Qwen-VL family's processor: Qwen2-VL's image processor, the family's video processor, `patch` px
    patches merged 2x2 into one token."""
    kwargs = dict(patch_size=patch, merge_size=MERGE, temporal_patch_size=2, **extra)
    return processor_class(
        image_processor=Qwen2VLImageProcessor(size=size, **kwargs),
        tokenizer=tokenizer,
        video_processor=video_class(size=size, **kwargs),
        chat_template=chat_template,
    )


# ---- Qwen3-VL-8B-Instruct ---------------------------------------------------------------------------


def _qwen3_vl_8b(tiny: ProcessorMixin) -> Qwen3VLConfig:
    rope = {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True}
    text = dict(
        QWEN3_8B_TEXT, max_position_embeddings=262144, rope_parameters=rope, pad_token_id=tiny.tokenizer.pad_token_id
    )
    vision = dict(
        depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=PATCH,
        spatial_merge_size=MERGE, temporal_patch_size=2, out_hidden_size=4096,
        num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24], hidden_act="gelu_pytorch_tanh",
    )  # fmt: skip
    return qwen3_vl_config(vision, text, tiny.tokenizer)


def _real_processor(tiny: ProcessorMixin, max_tiles: int) -> Qwen3VLProcessor:
    # The checkpoint's pixel bounds; the adapter caps longest_edge from max_tiles (`configure`).
    size = {"shortest_edge": 65536, "longest_edge": 16777216}
    return _processor(tiny.tokenizer, size, tiny.chat_template, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])


Qwen3VL.replicas = (Replica("qwen3_vl_8b", 8.77e9, _qwen3_vl_8b, _real_processor),)
ADAPTER = Qwen3VL
