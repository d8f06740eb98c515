"""Llama-3.2-Vision (Mllama): the image enters through cross-attention layers; its KV stays in the cache."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import nullcontext

import torch
from PIL import Image
from tokenizers import processors
from transformers import (
    MllamaConfig,
    MllamaForConditionalGeneration,
    MllamaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    ProcessorMixin,
)
from transformers.models.mllama.image_processing_mllama import MllamaImageProcessor

from docvlm.models.adapter import PROMPT_TEXT_TOKENS, FamilyAdapter, Replica, TinyModel
from docvlm.models.protocol import Conversations, ModelSpec
from docvlm.models.tile_attention import tile_split, tile_split_attention
from docvlm.models.tiny_parts import generation_config, text_config, train_tokenizer, INIT_RANGE

log = logging.getLogger(__name__)

TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<|image|>' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
SPECIALS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
    "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|image|>",
]  # fmt: skip
TINY_TILE, TINY_PATCH = 56, 14
REAL_TILE, REAL_TILES = 560, 4


VISION_INPUTS = ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")


def _with_states(single: dict[str, torch.Tensor], states: torch.Tensor) -> dict[str, torch.Tensor]:
    """One document's inputs with its vision tower output in place of its pixels."""
    inputs = {key: value for key, value in single.items() if key not in VISION_INPUTS}
    return {**inputs, "cross_attention_states": states}


def _repeat_last_row(mask: torch.Tensor, length: int) -> torch.Tensor:
    """Grow a (batch, seq, ...) mask to `length` rows; new tokens see what the last token saw."""
    extra = length - mask.shape[1]
    return torch.cat([mask, mask[:, -1:].expand(-1, extra, *mask.shape[2:])], dim=1) if extra > 0 else mask


class Mllama(FamilyAdapter):
    family = "mllama"
    weights = "meta-llama/Llama-3.2-11B-Vision-Instruct"
    turn_end = "<|eot_id|>"
    model_class = MllamaForConditionalGeneration
    batches_vision = True

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

    def encode_images(self, singles: list[dict[str, torch.Tensor]], limit: int) -> Iterator[list[dict[str, torch.Tensor]]]:
        """The vision tower over several documents' tiles a pass (one document's 4 x 1,601 tokens do not
        fill a GPU's GEMMs); each document then gets its `cross_attention_states` instead of its pixels.
        A group is encoded when it is asked for: only one group's states (~50 MB a document at full
        size) are alive at a time, not the whole batch's."""
        tiles = singles[0]["pixel_values"].shape[2]  # padded to the processor's max tiles: the same for all
        step = max(1, limit // (tiles * self.model.model.vision_model.num_patches))
        for first in range(0, len(singles), step):
            group = singles[first : first + step]
            states = self._vision_states(group)
            per_document = states.shape[0] // len(group)
            yield [_with_states(single, states[i * per_document : (i + 1) * per_document])
                   for i, single in enumerate(group)]

    def _vision_states(self, group: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """What MllamaModel.forward computes from pixels: (documents x images x tiles, patches, hidden)."""
        model = self.model.model
        vision = model.vision_model
        pixels = {key: torch.cat([single[key] for single in group]) for key in VISION_INPUTS}
        tiles_real = pixels["aspect_ratio_mask"].flatten(0, 1)  # (images, tiles)
        unmasked = nullcontext()
        if bool(tiles_real.any(1).all()):  # (an image of no tiles keeps transformers' masked attention)
            tile_tokens = -(-vision.num_patches // 8) * 8  # the tower pads each tile to a multiple of 8
            split = tile_split(tiles_real, tile_tokens, vision.num_patches, pixels["pixel_values"].device)
            unmasked = tile_split_attention(vision.config, split)
        with unmasked:
            states = vision(**pixels).last_hidden_state
        return model.multi_modal_projector(states).reshape(-1, states.shape[-2], model.hidden_size)

    def state_extras(self, model_inputs: dict[str, torch.Tensor], length: int) -> dict[str, torch.Tensor]:
        return {"cross_attention_mask": _repeat_last_row(model_inputs["cross_attention_mask"], length)}

    def continuation_inputs(self, state: Conversations, length: int) -> dict[str, torch.Tensor]:
        # The mask must cover the whole sequence; pixel values are not passed again (cross KV are cached).
        return {"cross_attention_mask": _repeat_last_row(state.extras["cross_attention_mask"], length)}

    def cross_columns(self) -> int:
        vision = self.model.config.vision_config
        return vision.max_num_tiles * self.model.model.vision_model.num_patches

    def cross_attention_bias(self, inputs: dict[str, torch.Tensor],
                             dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        from transformers.models.mllama.modeling_mllama import _prepare_cross_attention_mask

        bias, text_rows = _prepare_cross_attention_mask(
            inputs["cross_attention_mask"][:, -1:], self.model.model.vision_model.num_patches, dtype)
        return bias, text_rows[:, 0]

    def prompt_tokens(self, max_tiles: int) -> int:
        return PROMPT_TEXT_TOKENS  # the image enters through cross-attention, not the prompt

    def vision_tokens(self, max_tiles: int) -> int:
        # the processor caps tiles at the model's max_num_tiles (`configure`); so does the batch plan
        tiles = min(max_tiles, self.model.config.vision_config.max_num_tiles)
        return tiles * self.model.model.vision_model.num_patches

    @classmethod
    def tiny(cls) -> TinyModel:
        raw = train_tokenizer(SPECIALS)
        # Like Llama 3: the tokenizer itself prepends <|begin_of_text|> (the chat template does too).
        bos_id = raw.token_to_id("<|begin_of_text|>")
        raw.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos_id)]
        )
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=raw,
            bos_token="<|begin_of_text|>",
            eos_token="<|eot_id|>",
            pad_token="<|finetune_right_pad_id|>",
        )
        ids = tokenizer.convert_tokens_to_ids
        text = text_config(
            tokenizer,
            layers=3,
            cross_attention_layers=[1],  # layer 0 must be self-attention: the cache length is read there
            bos_token_id=bos_id,
            eos_token_id=ids("<|eot_id|>"),
            pad_token_id=tokenizer.pad_token_id,
            rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
        )
        vision = dict(
            hidden_size=32, num_hidden_layers=2, num_global_layers=1, attention_heads=2,
            intermediate_size=64, intermediate_layers_indices=[0], vision_output_dim=64,
            image_size=TINY_TILE, patch_size=TINY_PATCH, max_num_tiles=4, initializer_range=INIT_RANGE,
        )  # fmt: skip
        config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=ids("<|image|>"))
        processor = _processor(tokenizer, TINY_TILE, 4, TEMPLATE)
        eos = ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"]
        return TinyModel(config, processor, generation_config(tokenizer, eos))

    @classmethod
    def finish_tiny(cls, model: PreTrainedModel) -> None:
        """The cross-attention gates start at 0, so the image would have no effect at all."""
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "gate" in name.rsplit(".", 1)[-1]:
                    param.fill_(1.0)


def _processor(tokenizer: PreTrainedTokenizerFast, tile: int, tiles: int, chat_template: str) -> MllamaProcessor:
    return MllamaProcessor(
        image_processor=MllamaImageProcessor(size={"height": tile, "width": tile}, max_image_tiles=tiles),
        tokenizer=tokenizer,
        chat_template=chat_template,
    )


# ---- Llama-3.2-11B-Vision-Instruct ------------------------------------------------------------------


def _llama3_2_11b_vision(tiny: ProcessorMixin) -> MllamaConfig:
    tokenizer = tiny.tokenizer
    ids = tokenizer.convert_tokens_to_ids
    rope = {
        "rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
    }  # fmt: skip
    text = dict(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=40,
        num_attention_heads=32, num_key_value_heads=8, rms_norm_eps=1e-5, max_position_embeddings=131072,
        cross_attention_layers=[3, 8, 13, 18, 23, 28, 33, 38], rope_parameters=rope, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=ids("<|eot_id|>"), pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    vision = dict(
        hidden_size=1280, num_hidden_layers=32, num_global_layers=8, attention_heads=16,
        intermediate_size=5120, vision_output_dim=7680, image_size=REAL_TILE, patch_size=14,
        max_num_tiles=REAL_TILES, intermediate_layers_indices=[3, 7, 15, 23, 30],
    )  # fmt: skip
    return MllamaConfig(vision_config=vision, text_config=text, image_token_index=ids("<|image|>"))


def _real_processor(tiny: ProcessorMixin, max_tiles: int) -> MllamaProcessor:
    return _processor(tiny.tokenizer, REAL_TILE, min(max_tiles, REAL_TILES), tiny.chat_template)


Mllama.replicas = (Replica("llama3_2_11b_vision", 10.67e9, _llama3_2_11b_vision, _real_processor),)
ADAPTER = Mllama
