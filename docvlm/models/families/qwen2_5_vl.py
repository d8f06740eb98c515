"""Qwen2.5-VL: 28x28 px a visual token (14 px patches, 2x2 merged), window attention in the vision
tower, a Qwen2 language model (biased q/k/v, no per-head norms) with 3-D rotary positions.

The runtime mechanics are Qwen3-VL's (pixels capped per `max_tiles`, `rope_deltas` on the model,
text tokens at the same position on the three rotary axes, packed first turns with each document's
3-D positions from the model's `get_rope_index`), so the adapter reuses them; this file
adds what is Qwen2.5-VL's own: its classes, its tiny model and the 7B replica.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

from transformers import (
    ProcessorMixin,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
)
from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

from docvlm.models.adapter import Replica, TinyModel
from docvlm.models.families.qwen3_vl import (
    IMAGE_TEMPLATE,
    VIDEO_TEMPLATE,
    QwenVLRotary,
    qwen_vl_config,
    qwen_vl_processor,
    qwen_vl_tokenizer,
)
from docvlm.models.packing import packed_vision_attention
from docvlm.models.tiny_parts import (
    INIT_RANGE,
    TEXT,
    chatml_template,
    generation_config,
    text_config,
)

PATCH, MERGE = 14, 2  # as the real Qwen2.5-VL: 28x28 px per token
TINY_WINDOW = 56  # vision window attention over 2x2 merged tokens (real: 112 px, 4x4 tokens)


class Qwen2_5VL(QwenVLRotary):
    family = "qwen2_5_vl"
    weights = "Qwen/Qwen2.5-VL-7B-Instruct"
    model_class = Qwen2_5_VLForConditionalGeneration

    def packed_vision(self) -> AbstractContextManager[None]:
        # Its vision tower attends within windows of 8 x 8 patches in 28 of 32 layers: ~170 windows an
        # image, each an SDPA call a layer in transformers' way; one varlen flash call a layer instead.
        # (Qwen3-VL times its ways: full attention over ~7,000 patches an image, where cuDNN at head dim 72
        # beat flash, 348 vs 241 TFLOP/s on an H100: bench_attention.py.)
        return packed_vision_attention(self.model.config.vision_config)

    @classmethod
    def tiny(cls) -> TinyModel:
        tokenizer = qwen_vl_tokenizer()
        rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}
        text = text_config(tokenizer, layers=2, rope_parameters=rope, pad_token_id=tokenizer.pad_token_id,
                           bos_token_id=None, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
        vision = dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=PATCH, spatial_merge_size=MERGE,
            temporal_patch_size=2, window_size=TINY_WINDOW, fullatt_block_indexes=[1],
            out_hidden_size=TEXT["hidden_size"], initializer_range=INIT_RANGE,
        )  # fmt: skip
        unit = PATCH * MERGE
        size = {"shortest_edge": 4 * unit * unit, "longest_edge": 64 * unit * unit}
        processor = _processor(tokenizer, size, chatml_template(IMAGE_TEMPLATE, VIDEO_TEMPLATE))
        return TinyModel(_config(vision, text, tokenizer), processor,
                         generation_config(tokenizer, ["<|im_end|>", "<|endoftext|>"]))


def _config(vision: dict, text: dict, tokenizer: Any) -> Qwen2_5_VLConfig:
    """Config wired to the tokenizer's vision tokens (tiny model and full-size replica)."""
    return qwen_vl_config(Qwen2_5_VLConfig, vision, text, tokenizer)


def _processor(tokenizer: Any, size: dict[str, int], chat_template: str, **extra: Any) -> Qwen2_5_VLProcessor:
    return qwen_vl_processor(Qwen2_5_VLProcessor, Qwen2VLVideoProcessor, PATCH, tokenizer, size, chat_template,
                             **extra)


# ---- Qwen2.5-VL-7B-Instruct: a 675M window-attention ViT + Qwen2.5-7B ----------------------------


def _qwen2_5_vl_7b(tiny: ProcessorMixin) -> Qwen2_5_VLConfig:
    rope = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]}
    text = dict(
        vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
        num_attention_heads=28, num_key_value_heads=4, rms_norm_eps=1e-6, max_position_embeddings=128000,
        rope_parameters=rope, tie_word_embeddings=False, pad_token_id=tiny.tokenizer.pad_token_id,
    )  # fmt: skip
    vision = dict(
        depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, patch_size=PATCH,
        spatial_merge_size=MERGE, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
        out_hidden_size=3584, hidden_act="silu", tokens_per_second=2,
    )  # fmt: skip
    return _config(vision, text, tiny.tokenizer)


def _real_processor(tiny: ProcessorMixin, max_tiles: int) -> Qwen2_5_VLProcessor:
    # The checkpoint's pixel bounds (min_pixels 3,136, max_pixels 12,845,056); the adapter caps
    # longest_edge from max_tiles (`configure`).
    size = {"shortest_edge": 3136, "longest_edge": 12845056}
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    return _processor(tiny.tokenizer, size, tiny.chat_template, image_mean=mean, image_std=std)


Qwen2_5VL.replicas = (Replica("qwen2_5_vl_7b", 8.29e9, _qwen2_5_vl_7b, _real_processor),)
ADAPTER = Qwen2_5VL
