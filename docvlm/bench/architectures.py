"""The benchmark's models: full-size random-weight replicas of the real checkpoints, or the tiny ones.

A full-size model is built from a hand-written config matching the real checkpoint (no hub access),
directly on the device in bf16 with the architecture's own initialiser (std 0.02). Tokenizer and chat
template come from the tiny builder (docvlm/models/tiny.py); the processor is rebuilt around them
with the REAL image settings (tile size, tokens per tile, tile cap), so prompts have the real number
of image tokens. Prompt text tokenizes with the tiny BPE vocabulary (token counts are reported).

A tiny model (`tiny_<family>`) goes through the ordinary loading path (`docvlm.models.load_model`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from transformers import (
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    MllamaConfig,
    MllamaForConditionalGeneration,
    MllamaProcessor,
    GenerationConfig,
    PretrainedConfig,
    PreTrainedModel,
    ProcessorMixin,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
    Qwen3VLProcessor,
)
from transformers.models.got_ocr2.image_processing_got_ocr2 import GotOcr2ImageProcessor
from transformers.models.internvl.video_processing_internvl import InternVLVideoProcessor
from transformers.models.mllama.image_processing_mllama import MllamaImageProcessor
from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

from docvlm.models import ModelSpec, load_model
from docvlm.models.tiny import internvl_config, qwen3_vl_config, tiny_model_path

QWEN3_8B_TEXT = dict(
    vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
    num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)  # fmt: skip
INTERNVL_TILE, INTERNVL_PATCH, INTERNVL_TOKENS_PER_TILE = 448, 14, 256
QWEN_PATCH, QWEN_MERGE = 16, 2
MLLAMA_TILE, MLLAMA_TILES = 560, 4
# Parameter counts of the checkpoints (their model cards / safetensors index), to check the replicas.
PARAM_TOLERANCE = 0.03


@dataclass(frozen=True)
class Architecture:
    name: str
    family: str
    expected_params: float  # the real checkpoint's parameter count
    model_class: type[PreTrainedModel]
    config: Callable[[ProcessorMixin], PretrainedConfig]  # full-size config; special ids from the tiny tokenizer
    processor: Callable[[ProcessorMixin, int], ProcessorMixin]  # (tiny processor, max_tiles) -> real image settings


@dataclass
class BuiltModel:
    name: str
    family: str
    model: PreTrainedModel
    processor: ProcessorMixin
    spec: ModelSpec  # what the engines are constructed with
    generation_config: GenerationConfig  # as saved: end ids (an engine replaces the model's own copy)
    build_s: float  # device-synchronised build (or load) time
    params: int
    expected_params: float | None  # None for tiny models


# ---- InternVL3.5-8B: InternViT-300M + MLP projector + Qwen3-8B -------------------------------------


def _internvl_config(tiny: ProcessorMixin) -> InternVLConfig:
    tokenizer = tiny.tokenizer
    text = dict(
        QWEN3_8B_TEXT, model_type="qwen3", max_position_embeddings=40960,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0}, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    vision = dict(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        image_size=INTERNVL_TILE, patch_size=INTERNVL_PATCH, attention_bias=True, use_qk_norm=False,
        norm_type="layer_norm", layer_scale_init_value=0.1,
    )  # fmt: skip
    return internvl_config(vision, text, tokenizer, INTERNVL_TOKENS_PER_TILE, projector_hidden_act="gelu")


def _internvl_processor(tiny: ProcessorMixin, max_tiles: int) -> InternVLProcessor:
    size = {"height": INTERNVL_TILE, "width": INTERNVL_TILE}
    return InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=True, max_patches=max_tiles),
        tokenizer=tiny.tokenizer,
        video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=INTERNVL_TOKENS_PER_TILE,
        chat_template=tiny.chat_template,
    )


# ---- Qwen3-VL-8B-Instruct ---------------------------------------------------------------------------


def _qwen3_vl_config(tiny: ProcessorMixin) -> Qwen3VLConfig:
    rope = {"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20], "mrope_interleaved": True}
    text = dict(
        QWEN3_8B_TEXT, max_position_embeddings=262144, rope_parameters=rope, pad_token_id=tiny.tokenizer.pad_token_id
    )
    vision = dict(
        depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, patch_size=QWEN_PATCH,
        spatial_merge_size=QWEN_MERGE, temporal_patch_size=2, out_hidden_size=4096,
        num_position_embeddings=2304, deepstack_visual_indexes=[8, 16, 24], hidden_act="gelu_pytorch_tanh",
    )  # fmt: skip
    return qwen3_vl_config(vision, text, tiny.tokenizer)


def _qwen3_vl_processor(tiny: ProcessorMixin, max_tiles: int) -> Qwen3VLProcessor:
    # The checkpoint's pixel bounds; the engine caps longest_edge from max_tiles (families.Qwen3VL).
    size = {"shortest_edge": 65536, "longest_edge": 16777216}
    kwargs = dict(patch_size=QWEN_PATCH, merge_size=QWEN_MERGE, temporal_patch_size=2,
                  image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])  # fmt: skip
    return Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, **kwargs),
        tokenizer=tiny.tokenizer,
        video_processor=Qwen3VLVideoProcessor(size=size, **kwargs),
        chat_template=tiny.chat_template,
    )


# ---- Llama-3.2-11B-Vision-Instruct ------------------------------------------------------------------


def _mllama_config(tiny: ProcessorMixin) -> MllamaConfig:
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
        intermediate_size=5120, vision_output_dim=7680, image_size=MLLAMA_TILE, patch_size=14,
        max_num_tiles=MLLAMA_TILES, intermediate_layers_indices=[3, 7, 15, 23, 30],
    )  # fmt: skip
    return MllamaConfig(vision_config=vision, text_config=text, image_token_index=ids("<|image|>"))


def _mllama_processor(tiny: ProcessorMixin, max_tiles: int) -> MllamaProcessor:
    size = {"height": MLLAMA_TILE, "width": MLLAMA_TILE}
    return MllamaProcessor(
        image_processor=MllamaImageProcessor(size=size, max_image_tiles=min(max_tiles, MLLAMA_TILES)),
        tokenizer=tiny.tokenizer,
        chat_template=tiny.chat_template,
    )


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("internvl3_5_8b", "internvl", 8.53e9, InternVLForConditionalGeneration,
                     _internvl_config, _internvl_processor),
        Architecture("qwen3_vl_8b", "qwen3_vl", 8.77e9, Qwen3VLForConditionalGeneration,
                     _qwen3_vl_config, _qwen3_vl_processor),
        Architecture("llama3_2_11b_vision", "mllama", 10.67e9, MllamaForConditionalGeneration,
                     _mllama_config, _mllama_processor),
    )
}  # fmt: skip
TINY_MODELS = {"tiny_internvl": "internvl", "tiny_qwen3_vl": "qwen3_vl", "tiny_mllama": "mllama"}
MODEL_NAMES = (*ARCHITECTURES, *TINY_MODELS)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_param_count(name: str, params: int, expected: float) -> None:
    """A replica off by more than a few percent is not the architecture the numbers claim to be."""
    if abs(params - expected) > PARAM_TOLERANCE * expected:
        raise ValueError(f"{name}: replica has {params / 1e9:.3f}B parameters, the checkpoint {expected / 1e9:.2f}B")


def _tiny_spec(family: str, max_tiles: int) -> ModelSpec:
    """The tiny model of `family`, built once into the docvlm cache on first use."""
    return ModelSpec(family=family, path=str(tiny_model_path(family)), tiny=True, max_tiles=max_tiles)


def _saved_generation_config(spec: ModelSpec) -> GenerationConfig:
    """As saved with the model: an engine replaces the in-memory copy with its own greedy settings."""
    return GenerationConfig.from_pretrained(spec.path, local_files_only=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(name: str, device: torch.device, max_tiles: int = 12) -> BuiltModel:
    """`name` from MODEL_NAMES: a full-size random replica on `device`, or a tiny model loaded there."""
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown benchmark model {name!r}; known: {', '.join(MODEL_NAMES)}")
    started = time.perf_counter()
    if name in TINY_MODELS:
        return _load_tiny(name, device, max_tiles, started)
    arch = ARCHITECTURES[name]
    tiny_spec = _tiny_spec(arch.family, max_tiles)
    tiny = load_model(tiny_spec, torch.device("cpu"))  # its tokenizer and chat template
    config = arch.config(tiny.processor)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    with torch.device(device):  # parameters are created (and initialised) on the device itself
        model = arch.model_class._from_config(config, dtype=dtype, attn_implementation="sdpa").eval()
    generation = _saved_generation_config(tiny_spec)  # the tiny tokenizer's end ids
    _sync(device)
    params = count_params(model)
    check_param_count(name, params, arch.expected_params)
    spec = ModelSpec(family=arch.family, path=name, dtype=str(dtype).removeprefix("torch."), max_tiles=max_tiles)
    processor = arch.processor(tiny.processor, max_tiles)
    return BuiltModel(name, arch.family, model, processor, spec, generation, time.perf_counter() - started,
                      params, arch.expected_params)


def _load_tiny(name: str, device: torch.device, max_tiles: int, started: float) -> BuiltModel:
    family = TINY_MODELS[name]
    spec = _tiny_spec(family, max_tiles)
    engine = load_model(spec, device)
    _sync(device)
    model = engine.model
    return BuiltModel(name, family, model, engine.processor, spec, _saved_generation_config(spec),
                      time.perf_counter() - started, count_params(model), None)
