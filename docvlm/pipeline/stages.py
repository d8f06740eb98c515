"""The model-facing stages of the per-rank pipeline, each run on one batch of documents.

detect:  one short generation per document -> document type
extract: one generation per invoice/receipt with its type's prompt -> fields
bank:    turn 0 (column headers) for every statement of the batch, then turn 1 (rows) continuing
         each statement's conversation with its KV cache -> fields (docvlm/bank.py post-processing)
read:    the shared-prefill flow (processing.shared_prefill): ONE conversation per document, so the
         image is encoded and prefilled once: detection turn -> next turn with the type's extraction
         prompt. Bank statements leave after detection, for a bank batch of their own (`bank`).
Turns of DIFFERENT documents share a batch; turns of one document are sequential.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Optional, Sequence

from PIL import Image

from docvlm import bank, detection, extraction
from docvlm.config import TokenBudgets
from docvlm.inputs import Document
from docvlm.models.protocol import BatchResult, Reply, Request, VisionLanguageModel
from docvlm.prompts import Prompts
from docvlm.records import DocumentRecord
from docvlm.schema import DocTypeSpec, Schema


@dataclass
class WorkItem:
    doc: Document
    image: Optional[Image.Image]
    record: DocumentRecord


@dataclass
class StageStats:
    batches: int = 0
    documents: int = 0
    seconds: float = 0.0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    inputs_s: float = 0.0  # the engine waited for its inputs (BatchResult.inputs_s)
    new_tokens: int = 0
    batch_sizes: list[int] = field(default_factory=list)

    def add(self, result: BatchResult, seconds: float, n_docs: int, count_batch: bool = True) -> None:
        if count_batch:
            self.batches += 1
            self.documents += n_docs
            self.batch_sizes.append(n_docs)
        self.seconds += seconds
        self.prefill_s += result.prefill_s
        self.decode_s += result.decode_s
        self.new_tokens += result.new_tokens
        self.inputs_s += result.inputs_s

    def to_json(self) -> dict[str, Any]:
        mean = sum(self.batch_sizes) / len(self.batch_sizes) if self.batch_sizes else 0.0
        return {"batches": self.batches, "documents": self.documents, "seconds": round(self.seconds, 4),
                "prefill_s": round(self.prefill_s, 4), "decode_s": round(self.decode_s, 4),
                "inputs_s": round(self.inputs_s, 4),
                "new_tokens": self.new_tokens, "mean_batch_size": round(mean, 3),
                "tokens_per_s": round(self.new_tokens / self.seconds, 2) if self.seconds else 0.0}


@dataclass
class StageContext:
    model: VisionLanguageModel
    schema: Schema
    prompts: Prompts
    budgets: TokenBudgets
    force_length: bool = False
    route_types: Optional[dict[str, str]] = None  # benchmarks: document id -> true type, replaces the detected one
    stats: dict[str, StageStats] = field(default_factory=lambda: defaultdict(StageStats))

    def generate(self, stage: str, requests: list[Request], keep_state: bool = False) -> BatchResult:
        start = time.perf_counter()
        result = self.model.generate(requests, keep_state=keep_state, force_length=self.force_length)
        self.stats[stage].add(result, time.perf_counter() - start, len(requests))
        return result

    def continue_(self, stage: str, result: BatchResult, prompts: list[str], budget: int | list[int],
                  keep_state: bool = False) -> BatchResult:
        start = time.perf_counter()
        assert result.state is not None
        budgets = budget if isinstance(budget, list) else [budget] * len(prompts)
        follow = self.model.continue_(result.state, prompts, budgets, keep_state=keep_state,
                                      force_length=self.force_length)
        self.stats[stage].add(follow, time.perf_counter() - start, len(prompts))
        return follow

    @cached_property  # a run's prompts and budgets do not change: planned once, not every batch
    def read_later_tokens(self) -> int:
        """Tokens the extraction turn adds to a shared-prefill conversation after detection: the longest
        extraction prompt (the type is not known yet) and its budget."""
        prompts = [extraction.extraction_prompt(spec, self.prompts, self.schema)
                   for spec in self.schema.types.values() if spec.flow != "bank"]
        return max((self._turn_tokens(prompt) for prompt in prompts), default=0) + self.budgets.extract

    @cached_property
    def bank_later_tokens(self) -> int:
        """Tokens a statement's rows turn adds after its header turn: the longest rows prompt of the default
        header names, room for the statement's own names (in the column list and the notes) and the budget."""
        longest = self._turn_tokens(bank.longest_rows_prompt(self.prompts))
        return longest + 2 * self.budgets.bank_headers + self.budgets.bank_rows

    def _turn_tokens(self, prompt: str) -> int:
        return len(self.model.turn_ids(prompt, previous_ended=False))  # a reply cut by its budget: one token more

    def prefetch(self, items: Sequence[WorkItem]) -> None:
        """Let the engine preprocess the detection requests of `items` while the current batch runs."""
        prepare = getattr(self.model, "prepare", None)
        if prepare is not None:
            prompt = detection.detection_prompt(self.prompts, self.schema)
            prepare([Request(item.image, prompt, self.budgets.detect) for item in items])

    def type_spec(self, item: WorkItem) -> DocTypeSpec:
        return self.schema.type_spec(item.record.document_type)

    def route(self, item: WorkItem) -> None:
        """Benchmarks: the ground-truth type replaces the detected one (the detection still ran)."""
        if self.route_types is not None and item.doc.id in self.route_types:
            item.record.details["routed_from"] = item.record.document_type
            item.record.document_type = self.route_types[item.doc.id]


def _share_time(items: Sequence[WorkItem], key: str, seconds: float) -> None:
    """Batch time split evenly over its documents (a per-document cost estimate)."""
    for item in items:
        item.record.timings[key] = item.record.timings.get(key, 0.0) + seconds / len(items)


def detect_batch(ctx: StageContext, items: Sequence[WorkItem], keep_state: bool = False) -> BatchResult:
    """`keep_state`: the conversations go on with the extraction turn (`read_batch`), planned for here."""
    prompt = detection.detection_prompt(ctx.prompts, ctx.schema)
    later = ctx.read_later_tokens if keep_state else None
    start = time.perf_counter()
    result = ctx.generate("detect", [Request(it.image, prompt, ctx.budgets.detect, later) for it in items],
                          keep_state)
    _share_time(items, "detect_s", time.perf_counter() - start)
    for item, reply in zip(items, result.replies):
        found = detection.parse_detection(reply.text, ctx.schema, ctx.prompts)
        item.record.document_type = found.document_type
        item.record.raw["detect"] = reply.text
        item.record.details["detection"] = {"fell_back": found.fell_back, "evidence": found.evidence}
    return result


def read_batch(ctx: StageContext, items: Sequence[WorkItem]) -> list[WorkItem]:
    """Detection and extraction in one conversation per document: one image prefill, not two.

    Returns the bank statements, for a bank batch of their own (`bank_batch`: a fresh conversation,
    header turn then rows turn). A statement's rows turn is ~1,000 decode steps, as long for 1
    statement as for 50, so the few statements of a batch would hold the GPU at a few rows that long;
    pooled across batches they share one rows turn, at the price of a second image prefill. Always,
    not only when they are few: a statement's conversation, so its reply, must not depend on the batch
    it fell in (nor on the number of ranks)."""
    detected = detect_batch(ctx, items, keep_state=True)
    for item in items:
        ctx.route(item)
    specs = [ctx.type_spec(item) for item in items]
    singles = [i for i, spec in enumerate(specs) if spec.flow != "bank"]
    if singles:
        assert detected.state is not None
        if len(singles) < len(items):
            detected.state = ctx.model.select(detected.state, singles)  # frees the statements' cache rows
        prompts = [extraction.extraction_prompt(specs[i], ctx.prompts, ctx.schema) for i in singles]
        start = time.perf_counter()
        second = ctx.continue_("extract", detected, prompts, ctx.budgets.extract)
        _share_time([items[i] for i in singles], "extract_s", time.perf_counter() - start)
        for i, reply in zip(singles, second.replies):
            _store_extraction(ctx, items[i], reply.text)
    return [item for item, spec in zip(items, specs) if spec.flow == "bank"]


def _store_extraction(ctx: StageContext, item: WorkItem, text: str) -> None:
    spec = ctx.type_spec(item)
    item.record.raw["extract"] = text
    item.record.fields = extraction.parse_extraction(text, spec, ctx.schema)
    item.record.fields["DOCUMENT_TYPE"] = spec.name


def extract_batch(ctx: StageContext, items: Sequence[WorkItem]) -> None:
    requests = []
    for item in items:
        spec = ctx.type_spec(item)
        requests.append(Request(item.image, extraction.extraction_prompt(spec, ctx.prompts, ctx.schema), ctx.budgets.extract))
    start = time.perf_counter()
    result = ctx.generate("extract", requests)
    _share_time(items, "extract_s", time.perf_counter() - start)
    for item, reply in zip(items, result.replies):
        _store_extraction(ctx, item, reply.text)


def bank_batch(ctx: StageContext, items: Sequence[WorkItem]) -> None:
    start = time.perf_counter()
    later = ctx.bank_later_tokens
    turn0 = ctx.generate(
        "bank_headers",
        [Request(it.image, bank.header_prompt(ctx.prompts), ctx.budgets.bank_headers, later) for it in items],
        keep_state=True,
    )
    _share_time(items, "extract_s", time.perf_counter() - start)
    _bank_rows(ctx, items, turn0.replies, turn0)


def _bank_rows(ctx: StageContext, items: Sequence[WorkItem], header_replies: Sequence[Reply],
               headers: BatchResult) -> None:
    """The rows turn, continuing each statement's conversation after its header turn."""
    start = time.perf_counter()
    plans = [bank.plan_rows_turn(reply.text, ctx.prompts, ctx.schema) for reply in header_replies]
    turn1 = ctx.continue_("bank_rows", headers, [p.prompt for p in plans], ctx.budgets.bank_rows)
    _share_time(items, "extract_s", time.perf_counter() - start)
    for item, plan, headers_reply, rows_reply in zip(items, plans, header_replies, turn1.replies):
        fields, details = bank.finish_statement(plan, rows_reply.text, ctx.schema, finished=rows_reply.finished)
        item.record.raw["bank_headers"] = headers_reply.text
        item.record.raw["bank_rows"] = rows_reply.text
        item.record.fields = {**fields, "DOCUMENT_TYPE": item.record.document_type or "BANK_STATEMENT"}
        item.record.details["bank"] = details
