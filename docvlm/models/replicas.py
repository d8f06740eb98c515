"""Full-size architectures with RANDOM weights, built on the device in seconds (benchmarks, GPU checks).

A replica's config matches the real checkpoint (its family adapter's `Replica`: no hub access); it is
built directly on the device in bf16 (fp32 on CPU) with the architecture's own initialiser (std
0.02). Tokenizer and chat template come from the family's tiny model; the processor is rebuilt
around them with the REAL image settings (tile size, tokens per tile, tile cap), so prompts have the
real number of image tokens. Prompt text tokenizes with the tiny BPE vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoProcessor, GenerationConfig, PreTrainedModel, ProcessorMixin

from docvlm.models import registry
from docvlm.models.protocol import ModelSpec
from docvlm.models.tiny import ensure_tiny_model, tiny_model_path


@dataclass
class ReplicaModel:
    family: str
    model: PreTrainedModel
    processor: ProcessorMixin
    spec: ModelSpec  # what the engines are constructed with
    generation_config: GenerationConfig  # as saved with the tiny model: its end ids
    expected_params: float  # the real checkpoint's parameter count


def replica_names() -> list[str]:
    return list(registry.replicas())


def build_replica(name: str, device: torch.device, max_tiles: int = 12) -> ReplicaModel:
    """The full-size architecture `name` (e.g. "internvl3_5_8b") with random weights on `device`."""
    known = registry.replicas()
    if name not in known:
        raise ValueError(f"unknown full-size architecture {name!r}; known: {', '.join(known)}")
    family, replica = known[name]
    tiny_path = ensure_tiny_model(family, tiny_model_path(family))
    tiny_processor = AutoProcessor.from_pretrained(tiny_path, local_files_only=True)
    config = replica.config(tiny_processor)
    # meta: no weights, a stand-in for the GPU's model (processor benchmarks), so the GPU's dtype
    dtype = torch.bfloat16 if device.type in ("cuda", "meta") else torch.float32
    with torch.device(device):  # parameters are created (and initialised) on the device itself
        model = registry.adapter_class(family).model_class._from_config(
            config, dtype=dtype, attn_implementation="sdpa").eval()
    generation = GenerationConfig.from_pretrained(tiny_path, local_files_only=True)
    model.generation_config = GenerationConfig.from_dict(generation.to_dict())  # what an engine reads, then replaces
    spec = ModelSpec(family=family, path=name, dtype=str(dtype).removeprefix("torch."), max_tiles=max_tiles)
    return ReplicaModel(family, model, replica.processor(tiny_processor, max_tiles), spec, generation,
                        replica.expected_params)
