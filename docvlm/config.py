"""Typed configuration: dataclass defaults < conf/*.yaml < command-line overrides (Hydra).

The dataclasses are registered in Hydra's ConfigStore as the schema of conf/config.yaml, so a typo'd
key or a wrongly typed value fails at compose time. Semantic checks (ranges, allowed values) run in
`validate()` when `to_run_config` turns the composed DictConfig into objects, before any model is
loaded. Every error is a UserError (one line, no traceback) naming the key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from docvlm.errors import UserError, did_you_mean
from docvlm.models.registry import ENGINES, FAMILIES
from docvlm.models.spec import ModelSpec
from docvlm.paths import cache_dir

MODEL_FAMILIES = (*FAMILIES, "ocr")  # the model layer's registry; ocr: the CPU engine (docvlm/ocr)
DTYPES = ("auto", "bfloat16", "float16", "float32")
DEVICES = ("auto", "cpu", "cuda")
SHARD_MODES = ("count", "cost")  # processing.shard


def _fail(key: str, value: Any, allowed: str) -> None:
    raise UserError(f"invalid config value {key}={value!r}: allowed {allowed}")


def _fail_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    hint = did_you_mean(str(value), choices)
    raise UserError(f"invalid config value {key}={value!r}: allowed one of {choices}"
                    + (f"; did you mean {key}={hint}?" if hint else ""))


@dataclass
class ModelConfig(ModelSpec):
    """The model layer's ModelSpec (its fields are documented there), validated."""

    name: str = "tiny_internvl"

    def validate(self) -> None:
        if self.family not in MODEL_FAMILIES:
            _fail_choice("model.family", self.family, MODEL_FAMILIES)
        if self.engine not in ENGINES:
            _fail_choice("model.engine", self.engine, tuple(ENGINES))
        if not self.path:
            _fail("model.path", self.path, "a folder holding the model (config.json, *.safetensors)")
        if self.dtype not in DTYPES:
            _fail_choice("model.dtype", self.dtype, DTYPES)


@dataclass
class DataConfig:
    dir: str = "???"  # folder of document images (searched recursively)
    ground_truth: Optional[str] = None  # CSV or JSONL; enables evaluation and the report
    # Supported formats; any other file becomes an error record ("unsupported_format"), never skipped.
    extensions: list[str] = field(default_factory=lambda: [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".pdf"])
    pdf_dpi: int = 150  # each PDF page is one document, rendered at this resolution
    make_samples: bool = False  # generate the synthetic sample set into `dir` if it is missing
    sample_seed: int = 0

    def validate(self) -> None:
        if not self.dir or self.dir == "???":
            raise UserError(NO_DATA_DIR)
        if not 36 <= self.pdf_dpi <= 600:
            _fail("data.pdf_dpi", self.pdf_dpi, "36 to 600")


@dataclass
class TokenBudgets:
    detect: int = 96
    extract: int = 768
    bank_headers: int = 64
    bank_rows: int = 1536


@dataclass
class ShardCost:
    """Weights of processing.shard=cost's per-document estimate (docvlm/pipeline/cost.py), in seconds.

    From H100 numbers for InternVL3.5-8B in bf16: prefill ~45 us a prompt token; a decode step ~10 ms
    whatever the batch size (1 to 32), so a generated token costs ~10 / batch_size ms. Only the ratio
    matters. (Eager HF generate measured ~70 ms a step: BENCHMARKS.md; decode then weighs more.)
    """

    prefill_s_per_token: float = 45e-6
    decode_s_per_step: float = 0.010
    tokens_per_tile: int = 256  # InternVL: a 448 px tile is 256 tokens

    def validate(self) -> None:
        for key, value in vars(self).items():
            if not value > 0:
                _fail(f"processing.shard_cost.{key}", value, "a number > 0")


@dataclass
class ProcessingConfig:
    batch_size: Optional[int] = None  # per-rank batch; null = chosen from the device (auto)
    num_gpus: int = 0  # 0 = all visible, 1 = single GPU, N = exactly N (error if fewer visible)
    device: str = "auto"  # auto: cuda when visible, else cpu
    max_tiles: int = 12  # image tiles per document (InternVL/Mllama) / pixel cap (Qwen)
    max_new_tokens: TokenBudgets = field(default_factory=TokenBudgets)
    force_length: bool = False  # generate exactly the budget (benchmarks: fixed lengths)
    group_window: int = 4  # batches of documents detected before extraction groups them by type
    # Extraction continues the detection conversation (its KV cache): each image is prefilled once.
    shared_prefill: bool = True
    dist_timeout_s: int = 1800  # collectives give up after this long (a hung rank ends the job)
    max_retries: int = 1  # a document that ended in an error is redone this many times on resume
    # A document that fails becomes an error record and the run goes on (exit status 0: every document
    # is recorded). true: the exit status is non-zero when any document failed (CI, pipelines).
    fail_on_errors: bool = False
    # A rank whose heartbeat (per batch, per record) stops this long ends the job, naming the rank and
    # what it was doing (docvlm/watchdog.py). null = dist_timeout_s. Allow for model loading.
    hang_timeout_s: Optional[int] = None
    # How the ranks split the input list, always into contiguous ranges in input order:
    # count: equal numbers of documents; cost: detection first (equal counts), then ranges of equal
    # estimated cost by detected type (a statement's two turns cost 2-4 invoices); same results at any
    # world size (extraction always prefills the image again: the separate flow).
    shard: str = "count"
    shard_cost: ShardCost = field(default_factory=ShardCost)

    def validate(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            _fail("processing.batch_size", self.batch_size, "null (auto) or an integer >= 1")
        if self.num_gpus < 0:
            _fail("processing.num_gpus", self.num_gpus, "0 (all visible GPUs) or an integer >= 1")
        if self.device not in DEVICES:
            _fail_choice("processing.device", self.device, DEVICES)
        if self.max_tiles < 1:
            _fail("processing.max_tiles", self.max_tiles, "an integer >= 1")
        for stage, budget in vars(self.max_new_tokens).items():
            if budget < 1:
                _fail(f"processing.max_new_tokens.{stage}", budget, "an integer >= 1")
        if self.group_window < 1:
            _fail("processing.group_window", self.group_window, "an integer >= 1")
        if self.max_retries < 0:
            _fail("processing.max_retries", self.max_retries, "an integer >= 0")
        if self.dist_timeout_s < 1:
            _fail("processing.dist_timeout_s", self.dist_timeout_s, "seconds >= 1")
        if self.hang_timeout_s is not None and self.hang_timeout_s < 1:
            _fail("processing.hang_timeout_s", self.hang_timeout_s, "null (= dist_timeout_s) or seconds >= 1")
        if self.shard not in SHARD_MODES:
            _fail_choice("processing.shard", self.shard, SHARD_MODES)
        self.shard_cost.validate()


@dataclass
class OutputConfig:
    dir: str = "outputs/${docvlm_run_id:}"  # same on every rank (see docvlm_run_id below)
    overwrite: bool = False  # true: delete this project's files in `dir` first; false: resume


@dataclass
class ValidationConfig:
    # OCR each page after a VLM extraction and flag values that are not printed on it
    # (record.ungrounded_fields, counted in summary.json). Costs ~1-2 CPU s a page.
    grounding: bool = False


@dataclass
class DebugConfig:
    limit: Optional[int] = None  # process only the first N documents
    # Benchmarks with random weights: detection runs, then the ground truth's type decides the flow,
    # so the workload's mix of invoices, receipts and statements is the real one. Needs data.ground_truth.
    route_by_ground_truth: bool = False
    log_level: str = "INFO"

    def validate(self) -> None:
        if self.limit is not None and self.limit < 1:
            _fail("debug.limit", self.limit, "null or an integer >= 1")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    schema: Any = None  # conf/schema/*.yaml (docvlm.schema.load_schema)
    prompts: Any = None  # conf/prompts/*.yaml (docvlm.prompts.load_prompts)

    def validate(self) -> None:
        for section in (self.model, self.data, self.processing, self.debug):
            section.validate()
        if self.processing.shard == "cost" and self.model.family == "ocr":
            _fail("processing.shard", "cost", "'count' with model.family=ocr (it has no separate detection pass)")
        if self.debug.route_by_ground_truth and not self.data.ground_truth:
            _fail("debug.route_by_ground_truth", True, "only with data.ground_truth=FILE (the types come from it)")


def to_run_config(cfg: DictConfig | RunConfig) -> RunConfig:
    """Resolve and validate a composed config (raises UserError naming key, value, allowed)."""
    if isinstance(cfg, RunConfig):
        return cfg
    _check_keys(cfg)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(RunConfig), cfg)
        run_cfg: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        raise _config_error(err) from err
    run_cfg.model.max_tiles = run_cfg.processing.max_tiles  # one knob for users, the adapter reads it here
    run_cfg.validate()
    return run_cfg


NO_DATA_DIR = ("data.dir is not set: give the folder of your documents with data.dir=FOLDER "
               "(or data=samples for the built-in demo set)")


def _config_error(err: OmegaConfBaseException) -> UserError:
    """OmegaConf's multi-line errors as one line naming the key (a +key=value Hydra let through, a
    missing value, a wrong type)."""
    key = getattr(err, "full_key", None) or "?"
    if isinstance(err, MissingMandatoryValue):
        return UserError(NO_DATA_DIR if key == "data.dir" else f"{key} is not set: give it with {key}=VALUE")
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        return UserError(unknown_key_message(key))
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    return UserError(f"invalid config value for {key}: {reason}")


def _check_keys(cfg: DictConfig) -> None:
    """Hydra lets `+key=value` add a key the schema lacks (a typo then does nothing): refuse it."""
    known = set(known_keys())
    free_form = {"schema", "prompts", "hydra"}  # YAML files of their own, checked where they are read

    def walk(node: Any, prefix: str) -> None:
        for key in node.keys() if isinstance(node, DictConfig) else ():
            path = f"{prefix}{key}"
            if path in free_form:
                continue
            child = node._get_node(key)
            if path not in known:
                while isinstance(child, DictConfig) and len(child):  # name the key as typed: a.b.c, not a
                    first = next(iter(child.keys()))
                    path, child = f"{path}.{first}", child._get_node(first)
                raise UserError(unknown_key_message(path))
            walk(child, f"{path}.")

    walk(cfg, "")


def unknown_key_message(key: str) -> str:
    """'unknown config key K; did you mean L?' (difflib over every key of the schema)."""
    hint = did_you_mean(key, known_keys())
    return (f"unknown config key {key}" + (f"; did you mean {hint}?" if hint else "")
            + " (python launch.py --cfg job lists every key)")


def known_keys() -> list[str]:
    """Every dotted key of the schema (schema.* and prompts.* are free-form YAML: their top only)."""
    return [*_dataclass_keys(RunConfig, "")]


def _dataclass_keys(cls: type, prefix: str) -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        keys.append(f"{prefix}{f.name}")  # sections too: `modl=ocr` meant the group `model`
        if dataclasses.is_dataclass(default):
            keys += _dataclass_keys(type(default), f"{prefix}{f.name}.")
    return keys


def run_id() -> str:
    """A name for this run that every rank computes identically, without communication."""
    if os.environ.get("SLURM_JOB_ID"):
        return f"slurm-{os.environ['SLURM_JOB_ID']}"
    elastic_id = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    if elastic_id != "none":
        return f"torchrun-{elastic_id[:8]}"
    return time.strftime("local-%Y-%m-%d_%H-%M-%S")


def hydra_subdir() -> Optional[str]:
    """Only rank 0 writes Hydra's `.hydra/` snapshot: the other ranks would race on the same files."""
    return ".hydra" if os.environ.get("RANK", "0") == "0" else None


def register() -> None:
    """Register the config schema and the resolvers conf/config.yaml uses (idempotent)."""
    ConfigStore.instance().store(name="docvlm_base", node=RunConfig)
    OmegaConf.register_new_resolver("docvlm_run_id", run_id, use_cache=True, replace=True)
    OmegaConf.register_new_resolver("docvlm_hydra_subdir", hydra_subdir, replace=True)
    OmegaConf.register_new_resolver("docvlm_cache", lambda: str(cache_dir()), replace=True)


register()
