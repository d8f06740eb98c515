"""What every family's tiny model shares: a byte-level BPE tokenizer trained on document-ish text, the
small language-model sizes, the generation config; and the Qwen3-8B text stack two full-size replicas
share. Each family's own parts (its classes, special tokens, chat template) live in its adapter
(docvlm/models/families/).
"""

from __future__ import annotations

import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast

# Random init must be wide and embeddings untied, otherwise a tiny model repeats one token
# whatever the image, and tests comparing outputs would pass without testing anything.
INIT_RANGE = 0.2
TEXT = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2)
VOCAB_SIZE = 4096

# Qwen3-8B, the language model of InternVL3.5-8B and Qwen3-VL-8B (full-size replicas).
QWEN3_8B_TEXT = dict(
    vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36,
    num_attention_heads=32, num_key_value_heads=8, head_dim=128, rms_norm_eps=1e-6,
    tie_word_embeddings=False,
)  # fmt: skip

CHATML_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # Qwen-style turns (InternVL, Qwen-VL)


def chatml_template(image: str, video: str) -> str:
    """A ChatML chat template shaped like the real Qwen / InternVL ones; `image` and `video` stand for one."""
    return (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for content in message['content'] %}"
        "{% if content['type'] == 'image' %}{{ '" + image + "' }}"
        "{% elif content['type'] == 'video' %}{{ '" + video + "' }}"
        "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
        "{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )


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


def train_tokenizer(specials: list[str]) -> Tokenizer:
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


def text_config(tokenizer: PreTrainedTokenizerFast, layers: int, **extra) -> dict:
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


def generation_config(tokenizer: PreTrainedTokenizerFast, eos: list[str]) -> GenerationConfig:
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids(eos),
        pad_token_id=tokenizer.pad_token_id,
    )
