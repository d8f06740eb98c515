"""The pipeline a run's config asks for, built on one rank; the one place that tells the two apart.

  model=ocr (model.family: ocr): the OCR pipeline, RapidOCR + layout rules on the CPU; no weights
  any model family:              the VLM pipeline, with the model loaded on this rank's device and
                                 the batch size chosen (processing.batch_size, or auto from free memory)
The runner sees only the Pipeline protocol (docvlm/pipeline/protocol.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch

from docvlm.config import RunConfig
from docvlm.dist import DistContext
from docvlm.inputs import LoadOptions
from docvlm.pipeline.document_pipeline import DocumentPipeline
from docvlm.pipeline.protocol import Pipeline
from docvlm.pipeline.stages import StageContext
from docvlm.progress import Progress
from docvlm.prompts import Prompts
from docvlm.schema import Schema
from docvlm.watchdog import Watchdog

if TYPE_CHECKING:
    from docvlm.pipeline.grounding import Grounding

OCR = "ocr"  # the model.family of the OCR engine: a pipeline of its own, not a model family


def uses_model(run_cfg: RunConfig) -> bool:
    """Whether the run loads a vision-language model (so model.path must name one)."""
    return run_cfg.model.family != OCR


def check_model(run_cfg: RunConfig) -> None:
    """A missing model is a clear error before any GPU work (the OCR engine needs none)."""
    if uses_model(run_cfg):
        from docvlm.models import check_model_path  # here: transformers is imported only for a VLM run

        check_model_path(run_cfg.model)


def build_pipeline(run_cfg: RunConfig, ctx: DistContext, schema: Schema, prompts: Prompts, progress: Progress,
                   watchdog: Watchdog, route_types: Optional[dict[str, str]] = None) -> Pipeline:
    """`route_types` (benchmarks, VLM only): document id -> its true type, replacing the detected one."""
    load_options = LoadOptions(pdf_dpi=run_cfg.data.pdf_dpi)
    if not uses_model(run_cfg):
        from docvlm.ocr import OcrEngine  # here: ONNX Runtime is loaded only for model=ocr
        from docvlm.pipeline.ocr_pipeline import OcrPipeline

        return OcrPipeline(OcrEngine(), schema, ctx.rank, load_options, progress=progress)
    return _vlm_pipeline(run_cfg, ctx, schema, prompts, progress, watchdog, route_types, load_options)


def _vlm_pipeline(run_cfg: RunConfig, ctx: DistContext, schema: Schema, prompts: Prompts, progress: Progress,
                  watchdog: Watchdog, route_types: Optional[dict[str, str]], load_options: LoadOptions) -> Pipeline:
    from docvlm.models import load_model  # here: an OCR run never imports transformers (~6 s a rank)

    processing = run_cfg.processing
    model = load_model(run_cfg.model, ctx.device)
    stage_ctx = StageContext(model, schema, prompts, processing.max_new_tokens, processing.force_length)
    batch_size, bank_batch_size = batch_sizes(stage_ctx, ctx.device, processing.batch_size, processing.max_tiles)
    return DocumentPipeline(stage_ctx, batch_size, processing.group_window, ctx.rank, load_options,
                            route_types=route_types, grounding=_grounding(run_cfg, schema),
                            shared_prefill=processing.shared_prefill, progress=progress, watchdog=watchdog,
                            bank_batch_size=bank_batch_size)


def batch_sizes(stage_ctx: StageContext, device: torch.device, configured: Optional[int],
                max_tiles: int) -> tuple[int, int]:
    """(documents a batch, statements a bank batch): `configured` for both, or each planned from free
    memory for its own conversation (detection + extraction turn; header turn + rows turn)."""
    if configured:
        return configured, configured
    from docvlm.models.memory_plan import auto_batch_size

    model, budgets = stage_ctx.model, stage_ctx.budgets
    return (auto_batch_size(device, model, budgets.detect, max_tiles, stage_ctx.read_later_tokens),
            auto_batch_size(device, model, budgets.bank_headers, max_tiles, stage_ctx.bank_later_tokens))


def _grounding(run_cfg: RunConfig, schema: Schema) -> Optional["Grounding"]:
    """validation.grounding: flag values the page does not show (reads the page with OCR)."""
    if not run_cfg.validation.grounding:
        return None
    from docvlm.pipeline.grounding import Grounding

    return Grounding(schema)
