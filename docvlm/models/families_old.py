"""The three model families: small hooks over the generic engine, registered by family name."""

from __future__ import annotations

import logging
from typing import Any

import torch
from PIL import Image

from docvlm.models import register_family, register_static
from docvlm.models.hf_engine import HFEngine
from docvlm.models.protocol import Conversations, ModelSpec
from docvlm.models.static_engine import StaticEngine

log = logging.getLogger(__name__)

# Qwen3-VL has no tiles: `max_tiles` caps its pixels at this many visual tokens a tile, InternVL's count.
QWEN_TOKENS_PER_TILE = 256


def _repeat_last_row(mask: torch.Tensor, length: int) -> torch.Tensor:
    """Grow a (batch, seq, ...) mask to `length` rows; new tokens see what the last token saw."""
    extra = length - mask.shape[1]
    return torch.cat([mask, mask[:, -1:].expand(-1, extra, *mask.shape[2:])], dim=1) if extra > 0 else mask


@register_family("internvl")
class InternVL(HFEngine):
    """InternVL3.5-HF: 448 px tiles (up to max_patches + a thumbnail), `image_seq_length` tokens a tile."""

    weights = "OpenGVLab/InternVL3_5-8B-HF"
    turn_end = "<|im_end|>"

    def configure(self, spec: ModelSpec) -> None:
        self.max_patches = spec.max_tiles
        vision = self.model.config.vision_config
        patches = (vision.image_size[0] // vision.patch_size[0]) * (vision.image_size[1] // vision.patch_size[1])
        tokens_per_tile = int(patches * self.model.config.downsample_ratio**2)
        if self.processor.image_seq_length != tokens_per_tile:
            raise ValueError(
                f"{spec.path}: processor image_seq_length={self.processor.image_seq_length} but the model "
                f"makes {tokens_per_tile} tokens a tile"
            )

    def image_kwargs(self) -> dict[str, Any]:
        return {"crop_to_patches": True, "max_patches": self.max_patches}


@register_family("qwen3_vl")
class Qwen3VL(HFEngine):
    """Qwen3-VL: 32x32 px a visual token; M-RoPE offsets (`rope_deltas`) live on the model per batch."""

    weights = "Qwen/Qwen3-VL-8B-Instruct"
    turn_end = "<|im_end|>"

    def configure(self, spec: ModelSpec) -> None:
        image_processor = self.processor.image_processor
        unit = image_processor.patch_size * image_processor.merge_size
        self.size = {
            "shortest_edge": image_processor.size["shortest_edge"],
            "longest_edge": spec.max_tiles * QWEN_TOKENS_PER_TILE * unit * unit,
        }

    def image_kwargs(self) -> dict[str, Any]:
        return {"size": self.size}

    def state_extras(self, model_inputs: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
        return {"rope_deltas": self.model.model.rope_deltas.clone()}

    def continuation_inputs(self, state: Conversations, length: int) -> dict[str, torch.Tensor]:
        # Another batch may have run since: restore this batch's offsets before generate reads them.
        self.model.model.rope_deltas = state.extras["rope_deltas"]
        return {}


@register_family("mllama")
class Mllama(HFEngine):
    """Llama-3.2-Vision: the image enters through cross-attention; its KV stays in the cache."""

    weights = "meta-llama/Llama-3.2-11B-Vision-Instruct"
    turn_end = "<|eot_id|>"

    def configure(self, spec: ModelSpec) -> None:
        # max_tiles is one knob for all families; this model's tile embeddings stop at max_num_tiles (4).
        limit = self.model.config.vision_config.max_num_tiles
        if spec.max_tiles < 1:
            raise ValueError(f"{spec.path}: max_tiles={spec.max_tiles} must be >= 1")
        if spec.max_tiles > limit:
            log.info("%s takes at most %d tiles an image; max_tiles=%d capped", self.name, limit, spec.max_tiles)
        # An attribute, not a call argument: the processor sizes the cross-attention mask from it.
        self.processor.image_processor.max_image_tiles = min(spec.max_tiles, limit)

    def images_arg(self, images: list[Image.Image]) -> list:
        return [[image] for image in images]

    def state_extras(self, model_inputs: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
        return {"cross_attention_mask": _repeat_last_row(model_inputs["cross_attention_mask"], length)}

    def continuation_inputs(self, state: Conversations, length: int) -> dict[str, torch.Tensor]:
        # The mask must cover the whole sequence; pixel values are not passed again (cross KV are cached).
        return {"cross_attention_mask": _repeat_last_row(state.extras["cross_attention_mask"], length)}


# ---- the same adapters on the static engine (docvlm/models/static_engine.py) --------------------


@register_static
class StaticInternVL(StaticEngine, InternVL):
    packs_prefill = True  # 1-D positions that restart per document, no state left on the model
    owns_turns = True


@register_static
class StaticQwen3VL(StaticEngine, Qwen3VL):
    owns_turns = True

    def turn_positions(self, mask: torch.Tensor, start: int) -> torch.Tensor:
        return super().turn_positions(mask, start) + self.position_offsets(mask.shape[0])[:, None]

    def position_offsets(self, rows: int) -> torch.Tensor:
        return self.model.model.rope_deltas[:rows, 0]  # M-RoPE: text positions run `rope_deltas` ahead

    def rotary_ids(self, positions: torch.Tensor) -> torch.Tensor:
        return positions[None].expand(3, -1, -1)  # text tokens: the same position on all three axes

    def row_extras(self) -> torch.Tensor:
        return self.model.model.rope_deltas.clone()

    def set_batch_extras(self, extras: list[torch.Tensor]) -> None:
        self.model.model.rope_deltas = torch.cat(extras, dim=0)


@register_static
class StaticMllama(StaticEngine, Mllama):
    def _cross_columns(self) -> int:
        vision = self.model.config.vision_config
        return vision.max_num_tiles * self.model.model.vision_model.num_patches

    def _set_cross_bias(self, inputs: dict[str, torch.Tensor], rows: int) -> None:
        from transformers.models.mllama.modeling_mllama import _prepare_cross_attention_mask

        bias, text_rows = _prepare_cross_attention_mask(
            inputs["cross_attention_mask"][:, -1:], self.model.model.vision_model.num_patches, self.dtype)
        state = self._step_state()
        state.cross_bias[:rows].fill_(torch.finfo(self.dtype).min)
        state.cross_bias[:rows, :, :, : bias.shape[-1]] = bias
        state.cross_rows[:rows] = text_rows[:, 0]
