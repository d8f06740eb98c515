"""Tiny randomly initialised models of the REAL classes, for CPU tests and dry runs.

Each tiny model is a real `InternVLForConditionalGeneration`, `Qwen3VLForConditionalGeneration` or
`MllamaForConditionalGeneration` (2-3 text layers, hidden 64, 2 vision layers) with a byte-level BPE
tokenizer, the special tokens its processor looks up and a chat template shaped like the real one. It
is saved with `save_pretrained` (safetensors) and loads through the ordinary
`AutoModelForImageTextToText` / `AutoProcessor` path, so the engine code under test is the real one.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    GenerationConfig,
    InternVLConfig,
    InternVLForConditionalGeneration,
    InternVLProcessor,
    MllamaConfig,
    MllamaForConditionalGeneration,
    MllamaProcessor,
    PreTrainedTokenizerFast,
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

from docvlm.paths import cache_dir as default_cache_dir

FAMILIES = ("internvl", "qwen3_vl", "mllama")

# Random init must be wide and embeddings untied, otherwise a tiny model repeats one token
# whatever the image, and tests comparing outputs would pass without testing anything.
INIT_RANGE = 0.2
TEXT = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)
VOCAB_SIZE = 4096

# InternVL: 32 px tiles of 4 px patches -> 64 patches, pixel-shuffle 0.5 -> 16 tokens per tile.
INTERNVL_TILE, INTERNVL_PATCH, INTERNVL_TOKENS_PER_TILE = 32, 4, 16
QWEN_PATCH, QWEN_MERGE = 16, 2  # as the real Qwen3-VL: 32x32 px per token
MLLAMA_TILE, MLLAMA_PATCH = 56, 14

INTERNVL_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
QWEN_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif content['type'] == 'video' %}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MLLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<|image|>' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
INTERNVL_IMAGE_TOKENS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
QWEN_VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
MLLAMA_SPECIALS = [
    "<|begin_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>", "<|start_header_id|>",
    "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>", "<|image|>",
]  # fmt: skip

_WORDS = (
    "DOCUMENT_TYPE BUSINESS_ABN SUPPLIER_NAME BUSINESS_ADDRESS PAYER_NAME PAYER_ADDRESS INVOICE_DATE "
    "LINE_ITEM_DESCRIPTIONS LINE_ITEM_QUANTITIES LINE_ITEM_PRICES LINE_ITEM_TOTAL_PRICES IS_GST_INCLUDED "
    "GST_AMOUNT TOTAL_AMOUNT STATEMENT_DATE_RANGE TRANSACTION_DATES TRANSACTION_AMOUNTS_PAID NOT_FOUND "
    "INVOICE RECEIPT BANK_STATEMENT Tax Invoice Receipt Bank Statement Date Description Debit Credit "
    "Balance Amount Withdrawal Deposit Opening Closing Total GST Subtotal Qty Quantity Price Unit Paid "
    "EFTPOS Card Cash Change Tendered Bill To Ship ABN Pty Ltd Street Road Sydney Melbourne Brisbane "
    "Perth Adelaide NSW VIC QLD WA SA Coffee Fuel Office Supplies Consulting Services Transfer Payment "
    "Salary Rent Groceries Account Number BSB Period Page Headers Columns Rows None true false yes no"
).split()


def _corpus() -> list[str]:
    """Document-ish lines: field names, words, dates, money, ABNs and the separators $ / - | :."""
    rng = random.Random(0)
    lines = [" ".join(_WORDS)]
    for _ in range(3000):
        day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(2019, 2025)
        money = f"${rng.randint(0, 9999)}.{rng.randint(0, 99):02d}"
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 4)))
        abn = " ".join(str(rng.randint(10, 999)) for _ in range(4))
        lines.append(
            f"{rng.choice(_WORDS)}: {words} | {day:02d}/{month:02d}/{year} - {money} | {abn}"
        )
    return lines


def _train_tokenizer(specials: list[str]) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return tokenizer


def _text_config(tokenizer: PreTrainedTokenizerFast, layers: int, **extra) -> dict:
    return dict(
        TEXT,
        vocab_size=len(tokenizer),
        num_hidden_layers=layers,
        head_dim=16,
        max_position_embeddings=4096,
        initializer_range=INIT_RANGE,
        tie_word_embeddings=False,
        **extra,
    )


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


def qwen3_vl_config(vision: dict, text: dict, tokenizer: Any) -> Qwen3VLConfig:
    """Qwen3-VL config wired to the tokenizer's vision tokens (tiny models and full-size replicas)."""
    ids = tokenizer.convert_tokens_to_ids
    return Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )


def _internvl() -> tuple[InternVLConfig, ProcessorMixin, GenerationConfig]:
    specials = QWEN_SPECIALS + list(INTERNVL_IMAGE_TOKENS.values())
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(specials),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=INTERNVL_IMAGE_TOKENS,
    )
    text = _text_config(tokenizer, layers=2, model_type="qwen3", pad_token_id=tokenizer.pad_token_id)
    vision = dict(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=INTERNVL_TILE, patch_size=INTERNVL_PATCH, initializer_range=INIT_RANGE,
    )  # fmt: skip
    config = internvl_config(vision, text, tokenizer, INTERNVL_TOKENS_PER_TILE)
    size = {"height": INTERNVL_TILE, "width": INTERNVL_TILE}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessor(size=size, crop_to_patches=True, max_patches=6),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size),
        image_seq_length=INTERNVL_TOKENS_PER_TILE,
        chat_template=INTERNVL_TEMPLATE,
    )
    return config, processor, _generation_config(tokenizer, ["<|im_end|>", "<|endoftext|>"])


def _qwen3_vl() -> tuple[Qwen3VLConfig, ProcessorMixin, GenerationConfig]:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(QWEN_SPECIALS + QWEN_VISION_TOKENS),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2], "mrope_interleaved": True}
    text = _text_config(tokenizer, layers=2, rope_parameters=rope, pad_token_id=tokenizer.pad_token_id)
    vision = dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=QWEN_PATCH,
        spatial_merge_size=QWEN_MERGE, temporal_patch_size=2, out_hidden_size=TEXT["hidden_size"],
        num_position_embeddings=64, deepstack_visual_indexes=[0], initializer_range=INIT_RANGE,
    )  # fmt: skip
    config = qwen3_vl_config(vision, text, tokenizer)
    unit = QWEN_PATCH * QWEN_MERGE
    image_kwargs = dict(patch_size=QWEN_PATCH, merge_size=QWEN_MERGE, temporal_patch_size=2)
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            size={"shortest_edge": 4 * unit * unit, "longest_edge": 64 * unit * unit}, **image_kwargs
        ),
        tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(
            size={"shortest_edge": 4 * unit * unit, "longest_edge": 64 * unit * unit}, **image_kwargs
        ),
        chat_template=QWEN_TEMPLATE,
    )
    return config, processor, _generation_config(tokenizer, ["<|im_end|>", "<|endoftext|>"])


def _mllama() -> tuple[MllamaConfig, ProcessorMixin, GenerationConfig]:
    raw = _train_tokenizer(MLLAMA_SPECIALS)
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
    text = _text_config(
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
        image_size=MLLAMA_TILE, patch_size=MLLAMA_PATCH, max_num_tiles=4, initializer_range=INIT_RANGE,
    )  # fmt: skip
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=ids("<|image|>"))
    processor = MllamaProcessor(
        image_processor=MllamaImageProcessor(size={"height": MLLAMA_TILE, "width": MLLAMA_TILE}, max_image_tiles=4),
        tokenizer=tokenizer,
        chat_template=MLLAMA_TEMPLATE,
    )
    eos = ["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"]
    return config, processor, _generation_config(tokenizer, eos)


def _generation_config(tokenizer: PreTrainedTokenizerFast, eos: list[str]) -> GenerationConfig:
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(eos),
        pad_token_id=tokenizer.pad_token_id,
    )


_BUILDERS: dict[str, tuple[Callable, type]] = {
    "internvl": (_internvl, InternVLForConditionalGeneration),
    "qwen3_vl": (_qwen3_vl, Qwen3VLForConditionalGeneration),
    "mllama": (_mllama, MllamaForConditionalGeneration),
}


def _open_gates(model: torch.nn.Module) -> None:
    """Mllama's cross-attention gates start at 0, so the image would have no effect at all."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "gate" in name.rsplit(".", 1)[-1]:
                param.fill_(1.0)


def _write(family: str, target: Path, seed: int) -> None:
    make, model_class = _BUILDERS[family]
    config, processor, generation_config = make()
    with torch.random.fork_rng():  # seed the weights without touching the caller's random state
        torch.manual_seed(seed)
        model = model_class(config).eval()
    if family == "mllama":
        _open_gates(model)
    model.generation_config = generation_config
    model.save_pretrained(target)
    processor.save_pretrained(target)


def is_built(path: Path) -> bool:
    return (Path(path) / "config.json").is_file()


@contextmanager
def _lock(path: Path):
    """An exclusive lock beside `path`: torchrun ranks race to build the same tiny model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_tiny_model(family: str, path: Path, seed: int = 0) -> Path:
    """Build the tiny model of `family` at `path` (replacing what is there); same seed -> same files."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown model family {family!r}; tiny models exist for {', '.join(FAMILIES)}")
    path = Path(path)
    with _lock(path):
        return _build_locked(family, path, seed)


def _build_locked(family: str, path: Path, seed: int) -> Path:
    # Build in a temp dir beside the target, then rename: readers never see a half-written model.
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        _write(family, tmp, seed)
        if not is_built(tmp) or not any(tmp.glob("*.safetensors")):
            # e.g. save_pretrained on a non-zero torch.distributed rank writes no weights
            raise RuntimeError(f"building the tiny {family} model in {tmp} wrote no config/weights")
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def ensure_tiny_model(family: str, path: Path, seed: int = 0) -> Path:
    """Build the tiny model only if `path` holds no model yet (safe when several processes race)."""
    path = Path(path)
    if is_built(path):
        return path
    with _lock(path):
        if is_built(path):  # another process built it while we waited
            return path
        if path.is_dir() and any(path.iterdir()):
            raise ValueError(f"{path} holds files but no model (no config.json); not replacing it with a tiny model")
        return _build_locked(family, path, seed)


def tiny_model_path(family: str, cache_dir: Path | None = None) -> Path:
    """Where the config's tiny models live: <cache_dir>/tiny/<family>."""
    return Path(cache_dir or default_cache_dir()) / "tiny" / family


def build_all(cache_dir: Path | None = None) -> dict[str, Path]:
    """Build the three tiny models under `<cache_dir>/tiny/<family>` (default: $DOCVLM_CACHE)."""
    return {family: build_tiny_model(family, tiny_model_path(family, cache_dir)) for family in FAMILIES}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the tiny test models of every family.")
    parser.add_argument("--cache-dir", type=Path, default=None, help="default: $DOCVLM_CACHE or ~/.cache/docvlm")
    args = parser.parse_args(argv)
    for family, path in build_all(args.cache_dir).items():
        print(f"{family}: {path}")


if __name__ == "__main__":
    main()
