"""The model-facing stages of the per-rank pipeline, each run on one batch of documents.

detect:  one short generation per document -> document type
extract: one generation per invoice/receipt with its type's prompt -> fields
bank:    turn 0 (column headers) for every statement of the batch, then turn 1 (rows) continuing
         each statement's conversation with its KV cache -> fields (docvlm/bank.py post-processing)
Turns of DIFFERENT statements share a batch; turns of one statement are sequential.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from PIL import Image

from docvlm import bank, detection, extraction
from docvlm.config import TokenBudgets
from docvlm.inputs import Document
from docvlm.models.protocol import BatchResult, Request, VisionLanguageModel
from docvlm.records import DocumentRecord
from docvlm.schema import Schema


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

    def to_json(self) -> dict[str, Any]:
        mean = sum(self.batch_sizes) / len(self.batch_sizes) if self.batch_sizes else 0.0
        return {"batches": self.batches, "documents": self.documents, "seconds": round(self.seconds, 4),
                "prefill_s": round(self.prefill_s, 4), "decode_s": round(self.decode_s, 4),
                "new_tokens": self.new_tokens, "mean_batch_size": round(mean, 3),
                "tokens_per_s": round(self.new_tokens / self.seconds, 2) if self.seconds else 0.0}


@dataclass
class StageContext:
    model: VisionLanguageModel
    schema: Schema
    prompts: Any
    budgets: TokenBudgets
    force_length: bool = False
    stats: dict[str, StageStats] = field(default_factory=lambda: defaultdict(StageStats))

    def generate(self, stage: str, requests: list[Request], keep_state: bool = False) -> BatchResult:
        start = time.perf_counter()
        result = self.model.generate(requests, keep_state=keep_state, force_length=self.force_length)
        self.stats[stage].add(result, time.perf_counter() - start, len(requests))
        return result

    def continue_(self, stage: str, result: BatchResult, prompts: list[str], budget: int) -> BatchResult:
        start = time.perf_counter()
        assert result.state is not None
        follow = self.model.continue_(result.state, prompts, [budget] * len(prompts), force_length=self.force_length)
        self.stats[stage].add(follow, time.perf_counter() - start, len(prompts))
        return follow


def _share_time(items: Sequence[WorkItem], key: str, seconds: float) -> None:
    """Batch time split evenly over its documents (a per-document cost estimate)."""
    for item in items:
        item.record.timings[key] = item.record.timings.get(key, 0.0) + seconds / len(items)


def detect_batch(ctx: StageContext, items: Sequence[WorkItem]) -> None:
    prompt = detection.detection_prompt(ctx.prompts, ctx.schema)
    start = time.perf_counter()
    result = ctx.generate("detect", [Request(it.image, prompt, ctx.budgets.detect) for it in items])
    _share_time(items, "detect_s", time.perf_counter() - start)
    for item, reply in zip(items, result.replies):
        found = detection.parse_detection(reply.text, ctx.schema, ctx.prompts)
        item.record.document_type = found.document_type
        item.record.raw["detect"] = reply.text
        item.record.details["detection"] = {"fell_back": found.fell_back, "evidence": found.evidence}


def extract_batch(ctx: StageContext, items: Sequence[WorkItem]) -> None:
    requests = []
    for item in items:
        spec = ctx.schema.type_spec(item.record.document_type or ctx.schema.default_type)
        requests.append(Request(item.image, extraction.extraction_prompt(spec, ctx.prompts, ctx.schema), ctx.budgets.extract))
    start = time.perf_counter()
    result = ctx.generate("extract", requests)
    _share_time(items, "extract_s", time.perf_counter() - start)
    for item, reply in zip(items, result.replies):
        spec = ctx.schema.type_spec(item.record.document_type or ctx.schema.default_type)
        item.record.raw["extract"] = reply.text
        item.record.fields = extraction.parse_extraction(reply.text, spec, ctx.schema)
        item.record.fields["DOCUMENT_TYPE"] = spec.name


def bank_batch(ctx: StageContext, items: Sequence[WorkItem]) -> None:
    start = time.perf_counter()
    turn0 = ctx.generate(
        "bank_headers",
        [Request(it.image, bank.header_prompt(ctx.prompts), ctx.budgets.bank_headers) for it in items],
        keep_state=True,
    )
    plans = [bank.plan_rows_turn(reply.text, ctx.prompts, ctx.schema) for reply in turn0.replies]
    turn1 = ctx.continue_("bank_rows", turn0, [p.prompt for p in plans], ctx.budgets.bank_rows)
    _share_time(items, "extract_s", time.perf_counter() - start)
    for item, plan, headers_reply, rows_reply in zip(items, plans, turn0.replies, turn1.replies):
        fields, details = bank.finish_statement(plan, rows_reply.text, ctx.schema, finished=rows_reply.finished)
        item.record.raw["bank_headers"] = headers_reply.text
        item.record.raw["bank_rows"] = rows_reply.text
        item.record.fields = {**fields, "DOCUMENT_TYPE": item.record.document_type or "BANK_STATEMENT"}
        item.record.details["bank"] = details
