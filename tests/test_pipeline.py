"""The per-rank pipeline on a real tiny model: bank turns batched across statements, failure splitting."""

from __future__ import annotations

import pytest
import torch

from docvlm.config import TokenBudgets
from docvlm.inputs import discover, load_image
from docvlm.models import ModelSpec, load_model
from docvlm.pipeline.batching import run_in_batches
from docvlm.pipeline.document_pipeline import DocumentPipeline
from docvlm.pipeline.stages import StageContext, WorkItem, bank_batch
from docvlm.prompts import load_prompts
from docvlm.records import DocumentRecord
from docvlm.schema import load_schema
from docvlm.synth import generate_corpus

BUDGETS = TokenBudgets(detect=8, extract=24, bank_headers=10, bank_rows=20)


@pytest.fixture(scope="module")
def statements(tmp_path_factory):
    data = tmp_path_factory.mktemp("statements")
    generate_corpus(data, {"INVOICE": 0, "RECEIPT": 0, "BANK_STATEMENT": 3}, seed=5)
    return discover(data, [".png"])


@pytest.fixture(scope="module")
def model(tiny_models):
    return load_model(ModelSpec(family="internvl", path=str(tiny_models["internvl"]), max_tiles=4), torch.device("cpu"))


def context(model) -> StageContext:
    return StageContext(model, load_schema(), load_prompts(), BUDGETS)


def bank_items(docs) -> list[WorkItem]:
    items = []
    for doc in docs:
        record = DocumentRecord(index=doc.index, image=doc.id, document_type="BANK_STATEMENT")
        items.append(WorkItem(doc, load_image(doc), record))
    return items


def test_bank_turns_batched_across_statements_equal_one_statement_at_a_time(model, statements):
    ctx = context(model)
    together = bank_items(statements)
    bank_batch(ctx, together)
    alone = bank_items(statements)
    for item in alone:
        bank_batch(context(model), [item])
    for a, b in zip(together, alone):
        assert a.record.raw == b.record.raw  # same tokens whether statements share a batch or not
        assert a.record.fields == b.record.fields
    assert len({item.record.raw["bank_rows"] for item in together}) == len(together)  # images matter
    first = together[0].record
    assert set(first.fields) == set(load_schema().type_spec("BANK_STATEMENT").field_names)
    assert {"strategy", "headers", "mapping"} <= set(first.details["bank"])
    assert ctx.stats["bank_headers"].batches == 1 and ctx.stats["bank_rows"].batches == 1
    assert 0 < ctx.stats["bank_rows"].new_tokens <= 3 * BUDGETS.bank_rows


def test_failing_batches_split_down_to_the_failing_document():
    calls, failed = [], []

    def run(batch):
        calls.append(list(batch))
        if 3 in batch:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")

    run_in_batches(list(range(8)), 4, run, lambda item, err: failed.append((item, type(err).__name__)))
    assert failed == [(3, "OutOfMemoryError")]
    succeeded = [b for b in calls if 3 not in b]
    assert sorted(i for b in succeeded for i in b) == [0, 1, 2, 4, 5, 6, 7]  # nothing else lost
    assert [len(b) for b in calls] == [4, 2, 2, 1, 1, 4]  # [0-3] -> [0,1] ok, [2,3] -> [2] ok, [3] fails


def test_a_failed_batch_frees_what_its_frames_held_before_the_halves_run():
    """Found on 4xH100: the split retry ran inside the except block, so the traceback kept the failed
    batch's frames, and the KV buffers they referenced, alive: every half ran out of memory too."""
    import gc
    import weakref

    class Buffers:  # stands in for the failed batch's KV buffers
        pass

    alive_during_halves = []
    held: list = []

    def run(batch):
        if len(batch) == 4:
            buffers = Buffers()  # a local of the failing frame, as the engine's lease is
            held.append(weakref.ref(buffers))
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        gc.collect()
        alive_during_halves.append(held[0]() is not None)

    run_in_batches(list(range(4)), 4, run, lambda item, err: None)
    assert alive_during_halves == [False, False]


def test_pipeline_turns_an_injected_oom_into_one_error_record(model, statements, monkeypatch):
    """A document that fails even alone gets an error record; the others in its batch finish."""
    ctx = context(model)
    real_generate = model.generate
    poisoned = statements[1].id

    def generate(requests, keep_state=False, force_length=False):
        sizes = {r.image.size for r in requests}
        if poison_size in sizes:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_generate(requests, keep_state=keep_state, force_length=force_length)

    poison_size = load_image(statements[1]).size
    assert len({load_image(d).size for d in statements}) == len(statements)  # the size singles it out
    monkeypatch.setattr(model, "generate", generate)
    pipeline = DocumentPipeline(ctx, batch_size=3, group_window=2, rank=0)
    records = list(pipeline.process(statements))
    assert sorted(r.image for r in records) == sorted(d.id for d in statements)
    bad = [r for r in records if r.error]
    assert [r.image for r in bad] == [poisoned]
    assert bad[0].error["kind"] == "OutOfMemoryError" and bad[0].error["stage"] == "detect+extract"
    assert all(r.raw.get("detect") for r in records if not r.error)


def test_upcoming_prepares_the_first_batch_first_then_one_ahead():
    events = []
    run_in_batches(list(range(5)), 2, lambda batch: events.append(("run", list(batch))), lambda item, err: None,
                   upcoming=lambda batch: events.append(("prepare", list(batch))))
    assert events == [("prepare", [0, 1]), ("prepare", [2, 3]), ("run", [0, 1]), ("prepare", [4]), ("run", [2, 3]),
                      ("run", [4])]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Two invoices and a statement in each window of 3 (statement in the middle), true types known."""
    import csv
    from dataclasses import replace

    data = tmp_path_factory.mktemp("mixed")
    truth = generate_corpus(data, {"INVOICE": 4, "RECEIPT": 0, "BANK_STATEMENT": 2}, seed=9)
    types = {row["image_file"]: row["DOCUMENT_TYPE"] for row in csv.DictReader(truth.open())}
    docs = discover(data, [".png"])
    invoices = [d for d in docs if types[d.id] == "INVOICE"]
    banks = [d for d in docs if types[d.id] == "BANK_STATEMENT"]
    ordered = [invoices[0], banks[0], invoices[1], invoices[2], banks[1], invoices[3]]
    return [replace(doc, index=i) for i, doc in enumerate(ordered)], types


def test_statements_of_mostly_invoice_batches_share_one_bank_batch(model, mixed):
    """One statement per batch of 3 would run its ~1,000-step rows turn alone, twice; pooled, both
    statements take ONE header turn and ONE rows turn, after the windows' invoices are written."""
    docs, types = mixed
    ctx = context(model)
    pipeline = DocumentPipeline(ctx, batch_size=3, group_window=1, rank=0, route_types=types)
    records = list(pipeline.process(docs))
    order = [r.image for r in records]
    assert sorted(order) == sorted(d.id for d in docs) and all(r.ok for r in records)
    statement_ids = [d.id for d in docs if types[d.id] == "BANK_STATEMENT"]
    assert order[-2:] == statement_ids  # invoices leave with their window, statements after their batch
    assert ctx.stats["bank_headers"].batches == 1 and ctx.stats["bank_headers"].documents == 2
    assert ctx.stats["bank_rows"].batches == 1 and ctx.stats["bank_rows"].documents == 2
    assert ctx.stats["detect"].documents == 6 and ctx.stats["extract"].documents == 4
    by_id = {r.image: r for r in records}
    for doc_id in statement_ids:
        statement = by_id[doc_id]
        assert statement.raw["detect"] and statement.raw["bank_headers"] and statement.raw["bank_rows"]
        assert statement.fields["DOCUMENT_TYPE"] == "BANK_STATEMENT" and "bank" in statement.details

    # A pooled statement reads as the bank flow does on its own: a fresh conversation, header turn then
    # rows turn (the detection turn is not part of it).
    for doc in docs:
        if doc.id in statement_ids:
            [item] = bank_items([doc])
            bank_batch(context(model), [item])
            assert item.record.raw["bank_rows"] == by_id[doc.id].raw["bank_rows"]


def test_a_full_pool_runs_before_the_documents_run_out(model, mixed):
    """Statements run as soon as the pool fills a batch: memory holds at most a batch's worth of them."""
    docs, types = mixed
    ctx = context(model)
    pipeline = DocumentPipeline(ctx, batch_size=1, group_window=3, rank=0, route_types=types)
    seen = []
    for record in pipeline.process(docs):
        seen.append((record.image, ctx.stats["bank_rows"].batches))
    statements = [doc_id for doc_id, _ in seen if types[doc_id] == "BANK_STATEMENT"]
    assert len(statements) == 2 and ctx.stats["bank_rows"].batches == 2
    # batch_size=1: each window's statement is a full pool, run before the next window is read
    assert [batches for doc_id, batches in seen if doc_id in statements] == [1, 2]


def test_progress_and_heartbeat_given_at_construction_see_every_stage(model, statements):
    """The runner builds the pipeline with its progress bar and watchdog: the bar names each stage as
    it starts, the watchdog hears before every batch which documents it holds."""
    from docvlm.pipeline.protocol import DetectingPipeline

    class Recorder:
        def __init__(self) -> None:
            self.phases: list[str] = []
            self.beats: list[str] = []

        def phase(self, name: str) -> None:
            self.phases.append(name)

        def beat(self, what: str) -> None:
            self.beats.append(what)

    seen = Recorder()
    ctx = context(model)
    pipeline = DocumentPipeline(ctx, batch_size=3, group_window=1, rank=0,
                                route_types={d.id: "BANK_STATEMENT" for d in statements},
                                progress=seen, watchdog=seen)  # type: ignore[arg-type]
    assert isinstance(pipeline, DetectingPipeline)
    records = list(pipeline.process(statements))
    assert len(records) == len(statements) and all(r.ok for r in records)
    assert seen.phases == ["detection+extraction", "bank turns"]
    assert [beat.partition(" (")[0] for beat in seen.beats] == [
        "detection+extraction: stage detect+extract, batch of 3", "bank turns: stage bank, batch of 3"]
    for beat in seen.beats:  # the batch's documents, named (detection batches go by page shape)
        assert sorted(beat.partition(" (")[2].rstrip(")").split(", ")) == sorted(d.id for d in statements)
    assert pipeline.stage_stats() == {name: st.to_json() for name, st in ctx.stats.items()}
    assert pipeline.stage_stats()["bank_rows"]["batches"] == 1


def test_bank_batches_take_their_own_size(model, mixed):
    """A bank batch has a size of its own (its conversations reach further: the rows turn): the pool runs
    when it holds `bank_batch_size` statements, whatever the documents' batch size."""
    docs, types = mixed
    ctx = context(model)
    pipeline = DocumentPipeline(ctx, batch_size=3, group_window=1, rank=0, route_types=types, bank_batch_size=1)
    records = list(pipeline.process(docs))
    assert all(r.ok for r in records) and len(records) == len(docs)
    assert ctx.stats["detect"].batch_sizes == [3, 3]
    assert ctx.stats["bank_headers"].batch_sizes == [1, 1] and ctx.stats["bank_rows"].batches == 2


def test_conversations_reserve_what_their_later_turns_take(model, mixed, monkeypatch):
    """Detection requests kept for the extraction turn, and statements' header turns kept for the rows
    turn, carry the tokens those later turns add (the longest prompt the turn can have, its budget): the
    KV buffers hold them with no growth, and far fewer columns than the default reserve."""
    from docvlm.models.kv_buffers import COLUMN_STEP, FOLLOW_UP_COLUMNS, round_up

    docs, types = mixed
    ctx = context(model)
    read_later, bank_later = ctx.read_later_tokens, ctx.bank_later_tokens
    assert BUDGETS.extract < read_later < FOLLOW_UP_COLUMNS and BUDGETS.bank_rows < bank_later < FOLLOW_UP_COLUMNS
    seen, widths, generate = [], [], model.generate

    def recording(requests, **kwargs):
        result = generate(requests, **kwargs)
        seen.extend(request.later_tokens for request in requests)
        widths.append(max(reply.prompt_tokens for reply in result.replies) + max(r.max_new_tokens for r in requests))
        return result

    monkeypatch.setattr(model, "generate", recording)
    allocations, allocate = [], model.kv.allocate
    monkeypatch.setattr(model.kv, "allocate", lambda rows, columns, keep=None: (allocations.append((rows, columns, keep)),
                                                                                allocate(rows, columns, keep))[1])
    model.release()
    records = list(DocumentPipeline(ctx, batch_size=6, group_window=1, rank=0, route_types=types).process(docs))
    assert all(r.ok for r in records)
    assert seen == [read_later] * 6 + [bank_later] * 2  # the window's detections, then the pooled statements
    assert all(keep is None for _, _, keep in allocations)  # no follow-up turn had to grow the buffers
    # the buffers hold each conversation's first turn and what its stage planned, not the default reserve
    assert allocations[0][1] == round_up(widths[0] + read_later, COLUMN_STEP)
    planned = [round_up(width + later, COLUMN_STEP) for width, later in zip(widths, (read_later, bank_later))]
    assert len(widths) == 2 and max(columns for _, columns, _ in allocations) == max(planned)
