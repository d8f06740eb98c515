"""The model part of the config: the ONE type both the config (docvlm.config.ModelConfig, which adds
validation) and the model layer use. No torch here: the config imports it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ModelSpec:
    family: str = "internvl"  # registry key of the adapter (docvlm/models/registry.py)
    path: str = ""  # local folder with config.json + safetensors + processor files
    name: str = ""  # the model's name (conf/model/<name>.yaml; a replica's architecture); "" -> family:folder
    hub_id: str = ""  # where real weights come from; used in "how to get the weights" messages
    tiny: bool = False  # build a tiny random model of `family` at `path` on first use (tests, demo)
    dtype: str = "auto"  # auto: bfloat16 on GPU, float32 on CPU
    attn_implementation: str = "sdpa"
    trust_remote_code: bool = False  # never on unless the user says so
    allow_pickle_weights: bool = False  # safetensors only unless explicitly allowed
    # Benchmarks only: build the full-size architecture `name` with RANDOM weights on the device
    # (docvlm/models/replicas.py) instead of loading `path`. Speed is real, answers are noise.
    random_weights: bool = False
    max_tiles: int = 12  # InternVL max_patches / Mllama max_image_tiles / Qwen max_pixels; from processing.max_tiles
    # "static": KV buffers + our own decode step (a CUDA graph per batch bucket on GPU);
    # "hf": transformers' eager `generate` (the reference; same tokens, slower).
    engine: str = "static"
