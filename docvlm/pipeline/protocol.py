"""What the runner (docvlm/work.py) needs of a pipeline, whatever reads the documents.

Two pipelines implement it: the VLM pipeline (document_pipeline.py: detection and extraction turns of a
vision-language model, in batches) and the OCR pipeline (ocr_pipeline.py: OCR or the text layer, then
layout rules, a page at a time). docvlm/pipeline/build.py picks one from the config; the runner only
sees this protocol. Progress and heartbeat are given to a pipeline when it is built.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Protocol, Sequence, runtime_checkable

from docvlm.inputs import Document
from docvlm.records import DocumentRecord


@runtime_checkable
class Pipeline(Protocol):
    batch_size: int  # documents per model call (1: one page at a time)
    bank_batch_size: int  # bank statements per bank batch (their conversations reach further)

    def process(self, docs: Sequence[Document]) -> Iterator[DocumentRecord]:
        """One finished record per document (an error record for one that failed), as each is done."""
        ...

    def stage_stats(self) -> dict[str, Any]:
        """Per-stage statistics for summary.json (stage name -> figures; {} when it keeps none)."""
        ...


@runtime_checkable
class DetectingPipeline(Pipeline, Protocol):
    """A pipeline whose detection can run apart from the rest (processing.shard=cost detects on every
    rank first, then balances the rest by estimated cost)."""

    def detect_only(self, docs: Sequence[Document]) -> Iterator[DocumentRecord]:
        """Detection records (type, raw reply, evidence), or error records for unreadable files."""
        ...

    def process(self, docs: Sequence[Document],
                detected: Optional[dict[str, DocumentRecord]] = None) -> Iterator[DocumentRecord]:
        """As Pipeline.process; documents in `detected` (records of detect_only, any rank) skip detection."""
        ...
