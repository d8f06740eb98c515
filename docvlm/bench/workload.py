"""The benchmark workload: synthetic documents through the REAL pipeline with forced generation lengths.

Random weights detect at random, so the pipeline runs with `route_types` (the ground-truth type
replaces the detected one after the real detection stage): the workload's mix of extraction / bank
flows is then the same in every configuration. Benchmark-only wrapper:
- `RecordingContext`: a `StageContext` that also records the shape of every model call (real prompt,
  context and generated tokens per row, vision-tower tokens) for the roofline, and the generated ids
  for comparing configurations.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from docvlm.bench.roofline import CallShape
from docvlm.config import TokenBudgets
from docvlm.inputs import Document, discover
from docvlm.models.protocol import BatchResult, Request
from docvlm.pipeline.document_pipeline import DocumentPipeline
from docvlm.pipeline.stages import StageContext
from docvlm.records import DocumentRecord
from docvlm.synth import generate_corpus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Workload:
    docs: list[Document]
    types: dict[str, str]  # document id -> ground-truth type
    budgets: TokenBudgets

    def count(self, flow_types: Sequence[str]) -> int:
        return sum(1 for doc in self.docs if self.types[doc.id] in flow_types)


def make_workload(folder: Path, documents: int, statements: int, seed: int, budgets: TokenBudgets) -> Workload:
    """`documents` in all, `statements` of them bank statements, the rest invoices and receipts half each."""
    if not 0 <= statements <= documents or documents < 1:
        raise ValueError(f"workload: need 1 <= documents and 0 <= statements <= documents, "
                         f"got {documents}, {statements}")
    standard = documents - statements
    counts = {"INVOICE": (standard + 1) // 2, "RECEIPT": standard // 2, "BANK_STATEMENT": statements}
    truth = generate_corpus(folder, counts=counts, seed=seed, workers=min(16, os.cpu_count() or 1))
    with truth.open(newline="", encoding="utf-8") as handle:
        types = {row["image_file"]: row["DOCUMENT_TYPE"] for row in csv.DictReader(handle)}
    docs = discover(folder, [".png"])
    missing = [doc.id for doc in docs if doc.id not in types]
    if missing or len(docs) != documents:
        raise RuntimeError(f"workload: {folder} has {len(docs)} documents for {documents} planned; "
                           f"untyped: {missing[:3]}")
    return Workload(docs, types, budgets)


class VisionCounter:
    """Counts tokens out of the vision tower's patch embedding (a forward hook)."""

    PATCH_EMBEDDINGS = ("patch_embeddings", "patch_embed", "patch_embedding")

    def __init__(self, model: torch.nn.Module) -> None:
        self.tokens = 0
        self.hidden = model.config.vision_config.hidden_size
        module = next(m for name, m in model.named_modules() if name.rsplit(".", 1)[-1] in self.PATCH_EMBEDDINGS)
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        self.tokens += out.numel() // self.hidden

    def take(self) -> int:
        tokens, self.tokens = self.tokens, 0
        return tokens

    def close(self) -> None:
        self.handle.remove()


@dataclass
class RecordingContext(StageContext):
    """StageContext that records each call's shape and generated ids (benchmark only)."""

    counter: VisionCounter | None = None
    calls: list[CallShape] = field(default_factory=list)
    outputs: dict[str, Counter] = field(default_factory=dict)  # stage -> multiset of generated id tuples

    def generate(self, stage: str, requests: list[Request], keep_state: bool = False) -> BatchResult:
        self._take_vision_tokens()  # drop anything counted outside a model call
        result = super().generate(stage, requests, keep_state)
        self._record(stage, [0] * len(requests), result)
        return result

    def continue_(self, stage: str, result: BatchResult, prompts: list[str], budget: int | list[int],
                  keep_state: bool = False) -> BatchResult:
        assert result.state is not None
        context = result.state.mask.sum(dim=1).tolist()  # real tokens of each conversation so far
        self._take_vision_tokens()
        follow = super().continue_(stage, result, prompts, budget, keep_state)
        self._record(stage, context, follow)
        return follow

    def _take_vision_tokens(self) -> int:
        return self.counter.take() if self.counter else 0

    def _record(self, stage: str, context: list[int], result: BatchResult) -> None:
        prompt = [reply.prompt_tokens for reply in result.replies]
        generated = [len(reply.token_ids) for reply in result.replies]
        call = CallShape(stage, context, prompt, generated, self._take_vision_tokens())
        self.calls.append(call)
        log.info("  %s: %d rows, prompt %d-%d tokens, %d generated, prefill %.2f s, decode %.2f s",
                 stage, len(prompt), min(prompt), max(prompt), max(generated), result.prefill_s, result.decode_s)
        self.outputs.setdefault(stage, Counter()).update(tuple(r.token_ids) for r in result.replies)


@dataclass
class PassResult:
    """One pass of the pipeline over a workload."""

    wall_s: float
    records: list[DocumentRecord]
    ctx: RecordingContext


def run_pass(model: Any, schema: Any, prompts: Any, workload: Workload, batch_size: int,
             counter: VisionCounter | None, docs: Sequence[Document] | None = None,
             budgets: TokenBudgets | None = None, shared_prefill: bool = True,
             bank_batch_size: int | None = None) -> PassResult:
    """The whole workload (or `docs`) in ONE window, so every stage sees batches of `batch_size` (bank
    batches: `bank_batch_size`, by default the same)."""
    docs = list(workload.docs if docs is None else docs)
    ctx = RecordingContext(model, schema, prompts, budgets or workload.budgets, force_length=True, counter=counter)
    pipeline = DocumentPipeline(ctx, batch_size, math.ceil(len(docs) / batch_size), rank=0,
                                route_types=workload.types, shared_prefill=shared_prefill,
                                bank_batch_size=bank_batch_size)
    _sync(model.device)
    started = time.perf_counter()
    records = list(pipeline.process(docs))
    _sync(model.device)
    return PassResult(time.perf_counter() - started, records, ctx)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def same_outputs(a: RecordingContext, b: RecordingContext) -> float:
    """Share of b's replies whose generated ids also occur in a's, stage by stage (order-free)."""
    total = sum(sum(c.values()) for c in b.outputs.values())
    shared = sum(sum((a.outputs.get(stage, Counter()) & c).values()) for stage, c in b.outputs.items())
    return shared / total if total else 0.0
