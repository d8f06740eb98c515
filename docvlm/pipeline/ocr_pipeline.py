"""One rank's work with the OCR engine (`model=ocr`): read each page, apply the layout rules.

Same records as the VLM path (type, normalised fields, raw text, timings, errors), so the runner,
gather, evaluation and report treat both engines alike.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

from docvlm.inputs import Document, LoadOptions
from docvlm.ocr import OcrEngine
from docvlm.pipeline.document_pipeline import load_work_item
from docvlm.pipeline.stages import WorkItem
from docvlm.records import DocumentRecord
from docvlm.schema import Schema


class OcrPipeline:
    def __init__(self, engine: OcrEngine, schema: Schema, rank: int, load_options: LoadOptions | None = None) -> None:
        self.engine = engine
        self.schema = schema
        self.rank = rank
        self.load_options = load_options

    def process(self, docs: Sequence[Document]) -> Iterator[DocumentRecord]:
        """Records in input order; the next page is decoded in a thread while this one is read."""
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="docvlm-ocr-load") as loader:
            upcoming = loader.submit(load_work_item, docs[0], self.rank, self.load_options) if docs else None
            for index in range(len(docs)):
                assert upcoming is not None
                item = upcoming.result()
                if index + 1 < len(docs):
                    upcoming = loader.submit(load_work_item, docs[index + 1], self.rank, self.load_options)
                yield self._read(item)

    def _read(self, item: WorkItem) -> DocumentRecord:
        record, doc = item.record, item.doc
        if record.ok:
            start = time.perf_counter()
            try:
                result = self.engine.process(item.image, self.schema)
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
        record.timings["total_s"] = round(sum(record.timings.values()), 6)
        return record
