"""processing.batch_size=null: the batch planner sizes rows from free memory and the model's own sizes."""

import pytest
import torch

from docvlm.models import ModelSpec, attention, build_engine, load_model, static_engine
from docvlm.models.memory_plan import CPU_BATCH, MAX_AUTO_BATCH, auto_batch_size, kv_bytes, prefill_bytes, turn_bytes

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def engines(tiny_models):
    spec = ModelSpec(family="internvl", path=str(tiny_models["internvl"]), max_tiles=4, engine="static")
    packed = load_model(spec, CPU)
    single = build_engine("static", packed.model, packed.processor, spec, CPU)
    single.packs_prefill = False
    return packed, single


def with_free(monkeypatch, free: float) -> None:
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(free), int(free)))


def test_cpu_takes_the_fixed_batch(engines):
    assert auto_batch_size(CPU, engines[0]) == CPU_BATCH


def test_rows_follow_free_memory_in_buckets(engines, monkeypatch):
    engine = engines[0]
    per_row, transient = kv_bytes(engine, 96, 12), 2 * prefill_bytes(engine, 12) + turn_bytes(engine)
    cuda = torch.device("cuda")
    for rows, expected in ((5.5, 4), (50, 48), (63.5, 56), (1000, MAX_AUTO_BATCH)):
        with_free(monkeypatch, (rows * per_row + transient) / 0.9)
        assert auto_batch_size(cuda, engine, 96, 12) == expected
    with_free(monkeypatch, transient)  # not even one row fits: one document a batch
    assert auto_batch_size(cuda, engine, 96, 12) == 1


def test_packing_counts_a_pack_of_activations(engines, monkeypatch):
    packed, single = engines
    assert prefill_bytes(packed, 4) > 1.5 * prefill_bytes(single, 4)
    monkeypatch.setattr(static_engine, "PACK_TOKENS", 1)  # no pack holds more than one document
    assert prefill_bytes(packed, 4) == prefill_bytes(single, 4)


def test_a_vision_batch_counts_its_documents(tiny_models, monkeypatch):
    """Without packing (Llama-3.2-Vision) the vision tower still takes several documents a pass, and their
    text is prefilled in one forward; a document has at most the model's own tile count (4) whatever
    max_tiles asks."""
    engine = load_model(ModelSpec(family="mllama", path=str(tiny_models["mllama"]), max_tiles=4, engine="static"), CPU)
    assert engine.adapter.vision_tokens(12) == engine.adapter.vision_tokens(4) == engine.adapter.cross_columns()
    seen = engine.adapter.vision_tokens(4)
    monkeypatch.setattr(static_engine, "VISION_BATCH_TOKENS", seen)
    one = prefill_bytes(engine, 4)
    monkeypatch.setattr(static_engine, "VISION_BATCH_TOKENS", 3 * seen)
    vision, text = engine.model.config.vision_config, engine.model.config.get_text_config(decoder=True)
    one_document = (seen * (4 * vision.hidden_size + 3 * vision.intermediate_size)
                    + engine.adapter.prompt_tokens(4) * (4 * text.hidden_size + 3 * text.intermediate_size)
                    ) * engine.dtype.itemsize
    assert prefill_bytes(engine, 4) == pytest.approx(one + 2 * one_document)  # two more documents' activations


@pytest.mark.parametrize("family", ["internvl", "qwen3_vl", "qwen2_5_vl"])
def test_a_pack_counts_the_vision_tokens_of_every_document(tiny_models, monkeypatch, family):
    """A packed prefill runs the vision tower over all its documents at once (Qwen-VL too): more vision
    tokens a document cost a pack's documents times what they cost one document's prefill."""
    spec = ModelSpec(family=family, path=str(tiny_models[family]), max_tiles=4, engine="static")
    packed = load_model(spec, CPU)
    single = build_engine("static", packed.model, packed.processor, spec, CPU)
    single.packs_prefill = False
    assert packed.packs_prefill
    before = {engine: prefill_bytes(engine, 4) for engine in (packed, single)}
    vision_tokens = packed.adapter.vision_tokens
    for engine in (packed, single):
        monkeypatch.setattr(engine.adapter, "vision_tokens", lambda max_tiles: vision_tokens(max_tiles) + 1000)
    growth = {engine: prefill_bytes(engine, 4) - before[engine] for engine in (packed, single)}
    documents = static_engine.PACK_TOKENS / packed.adapter.prompt_tokens(4)
    assert documents > 2 and growth[single] > 0
    assert growth[packed] == pytest.approx(documents * growth[single])


def test_more_tiles_more_bytes(engines):
    engine = engines[0]
    assert kv_bytes(engine, 96, 12) > kv_bytes(engine, 96, 2)
    assert prefill_bytes(engine, 12) > prefill_bytes(engine, 2)


@pytest.mark.parametrize("family", ["internvl", "mllama"])
def test_follow_ups_count_activations_not_repeated_kv(tiny_models, family):
    """Follow-up turns run in the engine's own layer loop (every family): a row's KV is its columns of
    every layer plus cross-attention image KV, nothing repeated per query head; the turn's activations
    are counted once."""
    engine = load_model(ModelSpec(family=family, path=str(tiny_models[family]), max_tiles=4, engine="static"), CPU)
    columns = kv_bytes(engine, 96, 12) - engine.cross_kv_bytes()
    assert columns % engine.kv_bytes_per_token() == 0 and columns > 0
    assert (engine.cross_kv_bytes() > 0) == (family == "mllama")
    assert turn_bytes(engine) > 0


def test_cross_attention_scores_count_only_without_the_kernels(tiny_models, monkeypatch):
    """Mllama's follow-up turns keep a block of cross-attention scores where the matmuls run (CPU, fp32),
    none where the Triton kernels do (CUDA half precision)."""
    from docvlm.models import text_layers

    engine = load_model(ModelSpec(family="mllama", path=str(tiny_models["mllama"]), max_tiles=4, engine="static"), CPU)
    with_matmuls = turn_bytes(engine)
    monkeypatch.setattr(attention, "runs", lambda dtype, device, head_dim: True)
    assert with_matmuls - turn_bytes(engine) == text_layers.CROSS_SCORES * 8


def test_planned_later_turns_make_room_for_more_rows(engines, monkeypatch):
    """The KV a conversation needs is its first turn plus what its later turns add, as its stage plans them:
    a plan shorter than the default reserve fits more rows in the same memory."""
    from docvlm.models.kv_buffers import COLUMN_STEP, FOLLOW_UP_COLUMNS, round_up

    engine = engines[0]
    assert kv_bytes(engine, 96, 12, 300) == engine.kv_bytes_per_token() * round_up(
        engine.adapter.prompt_tokens(12) + 96 + 300, COLUMN_STEP)
    assert kv_bytes(engine, 96, 12) == kv_bytes(engine, 96, 12, FOLLOW_UP_COLUMNS)
    transient = 2 * prefill_bytes(engine, 12) + turn_bytes(engine)
    cuda = torch.device("cuda")
    with_free(monkeypatch, (40.5 * kv_bytes(engine, 96, 12) + transient) / 0.9)
    assert auto_batch_size(cuda, engine, 96, 12) == 40
    assert auto_batch_size(cuda, engine, 96, 12, 300) > 40


def test_bank_batches_are_planned_for_their_own_conversations(engines, monkeypatch):
    """processing.batch_size=null plans two sizes: documents (detection + the extraction turn) and bank
    statements (header turn + the ~1,000-token rows turn, so fewer); a configured size is both."""
    from docvlm.config import TokenBudgets
    from docvlm.pipeline.build import batch_sizes
    from docvlm.pipeline.stages import StageContext
    from docvlm.prompts import load_prompts
    from docvlm.schema import load_schema

    engine = engines[0]
    budgets = TokenBudgets(detect=16, extract=256, bank_headers=64, bank_rows=1024)
    ctx = StageContext(engine, load_schema(), load_prompts(), budgets)
    assert ctx.read_later_tokens < ctx.bank_later_tokens
    cuda = torch.device("cuda")
    with_free(monkeypatch, (100 * kv_bytes(engine, 64, 12, ctx.bank_later_tokens)
                            + 2 * prefill_bytes(engine, 12) + turn_bytes(engine)) / 0.9)
    documents, statements = batch_sizes(ctx, cuda, None, 12)
    assert documents == auto_batch_size(cuda, engine, 16, 12, ctx.read_later_tokens)
    assert statements == auto_batch_size(cuda, engine, 64, 12, ctx.bank_later_tokens) == 96
    assert documents > statements
    assert batch_sizes(ctx, cuda, 7, 12) == (7, 7)
