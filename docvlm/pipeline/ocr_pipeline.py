"""One rank's work with the OCR engine (`model=ocr`): read each page, apply the layout rules.

A born-digital PDF page is read from its text layer (exact, and no rendering or OCR); an image, or a
PDF page without a usable text layer (a scan), is rendered and OCR'd. details.ocr.source says which.
Same records as the VLM path (type, normalised fields, raw text, timings, errors), so the runner,
gather, evaluation and report treat both engines alike. Timings: load_s (decoding, rendering or
reading the text layer) + extract_s (OCR and rules) = total_s; ocr_read_s and ocr_rules_s detail
them (ocr_read_s is inside extract_s for OCR, inside load_s for a text layer).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from docvlm.inputs import Document, LoadOptions
from docvlm.ocr import OcrEngine, TextLine
from docvlm.pipeline.document_pipeline import load_work_item
from docvlm.pipeline.stages import WorkItem
from docvlm.records import DocumentRecord
from docvlm.schema import Schema

if TYPE_CHECKING:
    from docvlm.progress import Progress

log = logging.getLogger(__name__)
STAGES = ("load_s", "extract_s")  # the top-level timings that add up to total_s


@dataclass
class LoadedPage:
    item: WorkItem
    lines: Optional[list[TextLine]] = None  # the text layer's lines (then item.image is None)
    read_s: float = 0.0


class OcrPipeline:
    batch_size = bank_batch_size = 1  # one page at a time

    def __init__(self, engine: OcrEngine, schema: Schema, rank: int, load_options: LoadOptions | None = None,
                 progress: "Progress | None" = None) -> None:
        self.engine = engine
        self.schema = schema
        self.rank = rank
        self.load_options = load_options
        self.progress = progress

    def process(self, docs: Sequence[Document]) -> Iterator[DocumentRecord]:
        """Records in input order; the next page is loaded in a thread while this one is read."""
        if self.progress is not None:
            self.progress.phase("extraction")  # the only phase: no separate detection
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="docvlm-ocr-load") as loader:
            upcoming = loader.submit(self._load, docs[0]) if docs else None
            for index in range(len(docs)):
                assert upcoming is not None
                page = upcoming.result()
                if index + 1 < len(docs):
                    upcoming = loader.submit(self._load, docs[index + 1])
                yield self._read(page)

    def stage_stats(self) -> dict[str, Any]:
        return {}  # no batches: summary.json sums the records' timings instead

    def _load(self, doc: Document) -> LoadedPage:
        """A PDF page's text layer when it has a usable one, else the page image (rendered/decoded)."""
        if doc.format == "pdf" and doc.page:
            start = time.perf_counter()
            dpi = (self.load_options or LoadOptions()).pdf_dpi
            try:
                lines = self.engine.read_pdf_page(doc.path, doc.page - 1, dpi)
            except Exception as err:  # noqa: BLE001 - rendering tells a broken PDF's error properly
                log.debug("%s: no text layer read (%s)", doc.id, err)
                lines = None
            if lines is not None:
                read_s = time.perf_counter() - start
                record = DocumentRecord(index=doc.index, image=doc.id, rank=self.rank, timings={"load_s": read_s})
                return LoadedPage(WorkItem(doc, None, record), lines, read_s)
        return LoadedPage(load_work_item(doc, self.rank, self.load_options))

    def _read(self, page: LoadedPage) -> DocumentRecord:
        record, doc = page.item.record, page.item.doc
        if record.ok:
            start = time.perf_counter()
            try:
                if page.lines is not None:
                    result = self.engine.process_lines(page.lines, self.schema, "text_layer", page.read_s)
                else:
                    result = self.engine.process(page.item.image, self.schema)
            except Exception as err:  # noqa: BLE001 - one document's failure is its record, the run goes on
                record.error = DocumentRecord.failed(doc.index, doc.id, "ocr", err, self.rank).error
            else:
                record.document_type = result.document_type
                record.fields = result.fields
                record.raw["ocr"] = result.text
                details = dict(result.details)
                for stage, seconds in details.pop("timings", {}).items():  # timings live in record.timings
                    record.timings[f"ocr_{stage}"] = seconds
                record.details["ocr"] = details
            record.timings["extract_s"] = time.perf_counter() - start
        # The ocr_* timings detail load_s and extract_s: counted once, in their stage.
        record.timings["total_s"] = round(sum(record.timings.get(stage, 0.0) for stage in STAGES), 6)
        return record
