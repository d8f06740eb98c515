"""InternVL3.5-HF: 448 px tiles (up to max_patches + a thumbnail), `image_seq_length` tokens a tile."""

from __future__ import annotations

from typing import Any

from transformers import (
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    PreTrainedTokenizerFast,
    ProcessorMixin,
)
from transformers.models.got_ocr2.image_processing_got_ocr2 import GotOcr2ImageProcessor
from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor

from docvlm.models.adapter import FamilyAdapter, Replica, TinyModel
from docvlm.models.pixels_in_dtype import normalised_in_model_dtype
from docvlm.models.protocol import ModelSpec
from docvlm.models.tiny_parts import (
    CHATML_SPECIALS,
    INIT_RANGE,
    QWEN3_8B_TEXT,
    chatml_template,
    generation_config,
    text_config,
    train_tokenizer,
)

IMAGE_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
TINY_TILE, TINY_PATCH = 32, 4  # 64 patches, pixel-shuffle 0.5 -> 16 tokens a tile
REAL_TILE, REAL_PATCH = 448, 14  # 1,024 patches -> 256 tokens a tile


def _tokens_per_tile(tile: int, patch: int) -> int:
    return (tile // patch) ** 2 // 4  # pixel shuffle (downsample_ratio 0.5) merges 2x2 patches


class InternVL(FamilyAdapter):
    family = "internvl"
    weights = "OpenGVLab/InternVL3_5-8B-HF"
    turn_end = "<|im_end|>"
    model_class = InternVLForConditionalGeneration
    packs_prefill = True  # 1-D positions that restart per document, no state left on the model

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
        normalised_in_model_dtype(self.processor.image_processor, self.model.dtype)  # tiles stacked in it

    def image_kwargs(self) -> dict[str, Any]:
        return {"crop_to_patches": True, "max_patches": self.max_patches}

    def tokens_per_tile(self) -> int:
        return self.processor.image_seq_length

    def vision_tokens(self, max_tiles: int) -> int:
        vision = self.model.config.vision_config
        patches = (vision.image_size[0] // vision.patch_size[0]) * (vision.image_size[1] // vision.patch_size[1])
        return (max_tiles + 1) * (patches + 1)  # a thumbnail tile; a class token a tile

    @classmethod
    def tiny(cls) -> TinyModel:
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=train_tokenizer(CHATML_SPECIALS + list(IMAGE_TOKENS.values())),
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            extra_special_tokens=IMAGE_TOKENS,
        )
        text = text_config(tokenizer, layers=2, model_type="qwen3", pad_token_id=tokenizer.pad_token_id)
        vision = dict(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            image_size=TINY_TILE, patch_size=TINY_PATCH, initializer_range=INIT_RANGE,
        )  # fmt: skip
        config = internvl_config(vision, text, tokenizer, _tokens_per_tile(TINY_TILE, TINY_PATCH))
        processor = _processor(tokenizer, TINY_TILE, TINY_PATCH, 6, chatml_template("<IMG_CONTEXT>\n", "<video>\n"))
        return TinyModel(config, processor, generation_config(tokenizer, ["<|im_end|>", "<|endoftext|>"]))


def internvl_config(vision: dict, text: dict, tokenizer: Any, tokens_per_tile: int, **extra: Any) -> InternVLConfig:
    """InternVL config wired to the tokenizer's image token (tiny models and full-size replicas)."""
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=tokens_per_tile,
        downsample_ratio=0.5,
        tie_word_embeddings=False,
        **extra,
    )


def _processor(tokenizer: Any, tile: int, patch: int, max_patches: int, chat_template: str) -> InternVLProcessor:
    size = {"height": tile, "width": tile}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=True, max_patches=max_patches),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=_tokens_per_tile(tile, patch),
        chat_template=chat_template,
    )


# ---- InternVL3.5-8B: InternViT-300M + MLP projector + Qwen3-8B -------------------------------------


def _internvl3_5_8b(tiny: ProcessorMixin) -> InternVLConfig:
    tokenizer = tiny.tokenizer
    text = dict(
        QWEN3_8B_TEXT, model_type="qwen3", max_position_embeddings=40960,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    vision = dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        image_size=REAL_TILE, patch_size=REAL_PATCH, attention_bias=True, use_qk_norm=False,
        norm_type="layer_norm", layer_scale_init_value=0.1,
    )  # fmt: skip
    return internvl_config(vision, text, tokenizer, _tokens_per_tile(REAL_TILE, REAL_PATCH),
                           projector_hidden_act="gelu")


def _real_processor(tiny: ProcessorMixin, max_tiles: int) -> InternVLProcessor:
    return _processor(tiny.tokenizer, REAL_TILE, REAL_PATCH, max_tiles, tiny.chat_template)


InternVL.replicas = (Replica("internvl3_5_8b", 8.53e9, _internvl3_5_8b, _real_processor),)
ADAPTER = InternVL
