"""Qwen-VL processors rearrange the normalised image into patches in the model's dtype, not in float32.

The processor's `patchify` is a pure rearrangement (a 9-D permute copied out, every pixel twice: Qwen-VL's
temporal patch repeats a still image), done on the float32 image, and the engine casts the result to the
model's dtype afterwards (prefetch.py, chat.py): two passes over ~55 MB an invoice. Casting first is one
pass over half the bytes and gives the same values (a cast is per element; the rearrangement moves
elements, never combines them). Measured on this repository's CPU host, one thread, a 1,728 x 1,280
image: patchify + cast 47 ms, cast + patchify 17.5 ms (the processor's whole work on an invoice ~70 ms).
The normalisation before it stays in float32, as the processor computes it.
"""

from __future__ import annotations

import functools
from typing import Any

import torch


def patchify_in_model_dtype(image_processor: Any, dtype: torch.dtype) -> bool:
    """Make `image_processor` (one with a `patchify(images, ...)` hook, as transformers' Qwen2-VL image
    processor has since 5.x) cast its normalised images to `dtype` before patchifying. Its class becomes a
    subclass of the same name (nothing is added to the instance: `to_dict` and `save_pretrained` see the
    processor's own settings). False, with the processor's own class, where there is nothing to gain (a
    dtype of 4 bytes or more) or no such hook."""
    original = getattr(type(image_processor), "original_class", type(image_processor))
    if dtype.itemsize >= 4 or not callable(getattr(original, "patchify", None)):
        image_processor.__class__ = original
        return False
    image_processor.__class__ = _in_dtype(original, dtype)
    return True


@functools.cache
def _in_dtype(cls: type, dtype: torch.dtype) -> type:
    def patchify(self: Any, images: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return cls.patchify(self, images.to(dtype), *args, **kwargs)

    return type(cls.__name__, (cls,), {"patchify": patchify, "patchify_dtype": dtype, "original_class": cls,
                                      "__module__": cls.__module__, "__qualname__": cls.__qualname__})
