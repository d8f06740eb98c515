"""Estimated cost of a document's remaining work, once its type is known (processing.shard=cost).

After detection, what is left for a document is its type's flow: one extraction prompt (single) or a
header turn plus a rows turn (bank). Its cost in seconds is estimated as
    prefill_s_per_token * image tokens + decode_s_per_step / batch size * generated tokens
with the token budgets as the expected generated tokens, and a statement's batch size the bank batch's
(its conversations reach further, so fewer share a decode step). Only the ratios between documents matter:
they decide where the contiguous ranges of the ranks split (dist.balanced_ranges).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from docvlm.config import ShardCost, TokenBudgets
from docvlm.records import DocumentRecord
from docvlm.schema import Schema


@dataclass(frozen=True)
class CostModel:
    schema: Schema
    budgets: TokenBudgets
    weights: ShardCost
    max_tiles: int
    batch_size: int
    bank_batch_size: Optional[int] = None  # None: batch_size

    def image_tokens(self) -> int:
        # The upper bound max_tiles + 1 (the thumbnail) for every page: the detection record does not
        # carry the image size, the tile rule differs per family (InternVL grid, Qwen pixel cap, Mllama
        # <= 4 tiles), and prefill is the smaller part of the cost (an A4 page: ~7 InternVL tiles,
        # ~0.08 s, against ~0.3 s for 256 generated tokens at batch 8), so a constant is close enough.
        return (self.max_tiles + 1) * self.weights.tokens_per_tile

    def generated_tokens(self, doc_type: Optional[str]) -> int:
        if self._is_bank(doc_type):
            return self.budgets.bank_headers + self.budgets.bank_rows
        return self.budgets.extract

    def cost(self, record: DocumentRecord, doc_type: Optional[str] = None) -> float:
        """Seconds of work left after detection; 0 for an error record (it is not run again).
        doc_type: the type that will pick the flow, if not the detected one (ground-truth routing)."""
        if not record.ok:
            return 0.0
        doc_type = doc_type or record.document_type
        rows = (self.bank_batch_size or self.batch_size) if self._is_bank(doc_type) else self.batch_size
        decode_s_per_token = self.weights.decode_s_per_step / rows  # a step serves the whole batch
        return self.weights.prefill_s_per_token * self.image_tokens() + decode_s_per_token * self.generated_tokens(doc_type)

    def _is_bank(self, doc_type: Optional[str]) -> bool:
        return self.schema.type_spec(doc_type).flow == "bank"
