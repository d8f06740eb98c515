"""One rank's work: load -> batched detection -> batched extraction -> records.

Documents go through in windows of `batch_size * group_window`. Two flows:
- shared prefill (default): each batch is ONE conversation per document (stages.read_batch):
  detection, then the extraction turn continuing its KV cache, so each image is prefilled once;
  bank statements leave after detection (see below);
- separate: the window is detected first, then its documents are regrouped by flow (single-prompt
  types vs bank statements) so that extraction batches are homogeneous, each prefilling the image
  again. Used when detection already ran elsewhere (`detected`, cost-balanced sharding).
Bank statements wait in a pool until it holds a full bank batch (or the documents run out): their rows
turn is ~1,000 decode steps whatever the number of rows, so it runs once for many statements instead
of once per window for a few (measured on an H100: 1,024 steps take ~10 s at 8 rows, ~12 s at 16).
A bank batch has its own size (`bank_batch_size`): its conversations reach further (the rows turn).
Records leave window by window (the pooled statements' when their bank batch is done), so the part
file grows steadily and a crash loses at most one window of work and the statements in the pool.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from docvlm import faults
from docvlm.inputs import Document, InputError, LoadOptions, load_image
from docvlm.pipeline.batching import chunks, run_in_batches
from docvlm.pipeline.stages import StageContext, WorkItem, bank_batch, detect_batch, extract_batch, read_batch
from docvlm.records import DocumentRecord

if TYPE_CHECKING:
    from docvlm.pipeline.grounding import Grounding
    from docvlm.progress import Progress
    from docvlm.watchdog import Watchdog

log = logging.getLogger(__name__)
LOAD_THREADS = 8
PHASES = {"detect": "detection", "detect+extract": "detection+extraction", "extract": "extraction",
          "bank": "bank turns"}  # stage -> the phase the progress bar names


class DocumentPipeline:
    def __init__(self, ctx: StageContext, batch_size: int, group_window: int, rank: int,
                 load_options: LoadOptions | None = None, route_types: dict[str, str] | None = None,
                 grounding: "Grounding | None" = None, shared_prefill: bool = True,
                 progress: "Progress | None" = None, watchdog: "Watchdog | None" = None,
                 bank_batch_size: int | None = None) -> None:
        self.ctx = ctx
        self.ctx.route_types = route_types  # benchmarks: document id -> true type, replaces the detected one
        self.load_options = load_options
        self.grounding = grounding  # validation.grounding: flag values the page does not show
        self.shared_prefill = shared_prefill
        self.batch_size = batch_size
        self.bank_batch_size = bank_batch_size or batch_size
        self.window = batch_size * group_window
        self.rank = rank
        self.progress = progress  # names the stage running in the progress bar
        self.watchdog = watchdog  # a heartbeat before every batch: a hung batch is named

    def process(self, docs: Sequence[Document],
                detected: dict[str, DocumentRecord] | None = None) -> Iterator[DocumentRecord]:
        """One record per document of `docs`: window by window in input order, pooled bank statements
        when their batch is done. `detected`: detection records from `detect_only` (any rank); their
        documents skip detection and take the separate flow."""
        pool: list[WorkItem] = []  # bank statements waiting for a full bank batch

        def read(ctx: StageContext, batch: Sequence[WorkItem]) -> None:
            pool.extend(read_batch(ctx, batch))  # only once the batch succeeded (a failed one is retried)

        for window in chunks(docs, self.window):
            items = self._load_window(window, detected)
            ok = [it for it in items if it.record.ok]
            if detected is None and self.shared_prefill:
                # Similar pages batch together: fewer padded columns for the whole conversation.
                self._stage("detect+extract", sorted(ok, key=_page_shape), read)
            else:
                pool.extend(self._run_window(ok, detect=detected is None))
            waiting = {id(item) for item in pool}
            yield from self._finished([item for item in items if id(item) not in waiting])
            pool.sort(key=lambda item: item.doc.index)  # batches were sorted by page shape
            full = len(pool) - len(pool) % self.bank_batch_size
            yield from self._run_banks(pool[:full])
            del pool[:full]
        yield from self._run_banks(pool)

    def detect_only(self, docs: Sequence[Document]) -> Iterator[DocumentRecord]:
        """Detection records (type, raw reply, evidence): the first phase of cost-balanced sharding."""
        for window in chunks(docs, self.window):
            items = self._load_window(window)
            self._stage("detect", [it for it in items if it.record.ok], detect_batch)
            yield from self._finished(items, check=False)

    def stage_stats(self) -> dict[str, Any]:
        return {name: stats.to_json() for name, stats in self.ctx.stats.items()}

    def _run_banks(self, statements: list[WorkItem]) -> Iterator[DocumentRecord]:
        self._stage("bank", statements, bank_batch)
        yield from self._finished(statements)

    def _finished(self, items: list[WorkItem], check: bool = True) -> Iterator[DocumentRecord]:
        """The items' records, complete; `check`: the grounding check of their fields (if configured)."""
        for item in items:
            if check and self.grounding is not None and item.record.ok:
                self.grounding.check(item.image, item.record)
            item.record.timings["total_s"] = round(sum(item.record.timings.values()), 6)
            yield item.record

    def _load_window(self, window: Sequence[Document],
                     detected: dict[str, DocumentRecord] | None = None) -> list[WorkItem]:
        """The window's documents in order, decoded in parallel threads (decoders release the GIL)."""
        with ThreadPoolExecutor(max_workers=max(1, min(LOAD_THREADS, len(window))),
                                thread_name_prefix="docvlm-load") as pool:
            return list(pool.map(lambda doc: self._load(doc, detected), window))

    def _load(self, doc: Document, detected: dict[str, DocumentRecord] | None = None) -> WorkItem:
        item = load_work_item(doc, self.rank, self.load_options)
        earlier = (detected or {}).get(doc.id)
        if earlier is not None and item.record.ok:
            item.record.document_type = earlier.document_type
            item.record.raw.update(earlier.raw)
            item.record.details.update(earlier.details)
            item.record.timings.update({k: v for k, v in earlier.timings.items() if k != "total_s"})
        return item

    def _run_window(self, items: list[WorkItem], detect: bool = True) -> list[WorkItem]:
        """Detection (unless done), then extraction of the single-prompt types; returns the bank
        statements, for the pool."""
        if detect:
            self._stage("detect", items, detect_batch)
        for item in items:
            if item.record.ok:
                self.ctx.route(item)
        flows = {"single": [], "bank": []}
        for item in items:
            if item.record.ok:
                flow = self.ctx.schema.type_spec(item.record.document_type).flow
                flows[flow].append(item)
        # Same type next to each other: prompts (and so prompt lengths) match within a batch.
        singles = sorted(flows["single"], key=lambda it: (it.record.document_type or "", it.doc.index))
        self._stage("extract", singles, extract_batch)
        return flows["bank"]

    def _stage(self, stage: str, items: list[WorkItem], run_batch) -> None:
        def fail(item: WorkItem, err: BaseException) -> None:
            failed = DocumentRecord.failed(item.doc.index, item.doc.id, stage, err, self.rank)
            item.record.error = failed.error
            item.record.fields = {}

        def run(batch: Sequence[WorkItem]) -> None:
            self._before_batch(stage, batch)
            run_batch(self.ctx, batch)

        if not items:
            return
        if self.progress is not None and stage in PHASES:
            self.progress.phase(PHASES[stage])
        upcoming = self.ctx.prefetch if stage in ("detect", "detect+extract") else None
        run_in_batches(items, self.bank_batch_size if stage == "bank" else self.batch_size, run, fail, upcoming)

    def _before_batch(self, stage: str, batch: Sequence[WorkItem]) -> None:
        """Runs before every batch, split retries included."""
        if self.watchdog is not None:
            ids = ", ".join(item.doc.id for item in batch[:3]) + (", ..." if len(batch) > 3 else "")
            self.watchdog.beat(f"{PHASES.get(stage, stage)}: stage {stage}, batch of {len(batch)} ({ids})")
        faults.before_batch(stage, [item.doc.id for item in batch])  # no-op unless DOCVLM_FAULTS is set


def _page_shape(item: WorkItem) -> tuple[float, int]:
    """Aspect ratio, then area: what decides a page's tile count (so its prompt length) in every family."""
    width, height = item.image.size
    return round(height / width, 1), width * height


def load_work_item(doc: Document, rank: int, options: LoadOptions | None = None) -> WorkItem:
    """The document's image and a fresh record; an unreadable file gives an error record instead."""
    record = DocumentRecord(index=doc.index, image=doc.id, rank=rank)
    start = time.perf_counter()
    try:
        image = load_image(doc, options)
    except InputError as err:
        record.error = {"kind": err.kind, "stage": "load", "message": str(err)}
        return WorkItem(doc, None, record)
    record.timings["load_s"] = time.perf_counter() - start
    return WorkItem(doc, image, record)
