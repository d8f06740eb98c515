"""Image processors hand their normalised pixels on in the model's dtype, not in float32.

After normalising, the Qwen-VL and InternVL processors only rearrange pixels: Qwen-VL's `patchify` (a
9-D permute copied out, every pixel twice: its temporal patch repeats a still image), InternVL's tiles
stacked into one tensor. They do it in float32, and the engine casts the result to the model's dtype
afterwards (prefetch.py, chat.py): two passes over ~55 MB a Qwen-VL invoice. Casting right after the
normalisation gives the same values (a cast is per element; rearranging moves elements, never combines
them) and the copies after it move half the bytes. The normalisation itself stays in float32, as the
processor computes it. Which processors qualify is each family adapter's call, checked by the tests on
each family's processor (the pixels equal the processor's own, cast).
"""

from __future__ import annotations

import functools
from typing import Any

import torch


def normalised_in_model_dtype(image_processor: Any, dtype: torch.dtype) -> bool:
    """Make `image_processor` (a transformers torchvision-backend image processor: it normalises through
    `rescale_and_normalize`) cast what that returns to `dtype`. Its class becomes a subclass of the same
    name (nothing is added to the instance: `to_dict` and `save_pretrained` see the processor's own
    settings). False, with the processor's own class, where there is nothing to gain (a dtype of 4 bytes
    or more) or no such method."""
    original = getattr(type(image_processor), "original_class", type(image_processor))
    if dtype.itemsize >= 4 or not callable(getattr(original, "rescale_and_normalize", None)):
        image_processor.__class__ = original
        return False
    image_processor.__class__ = _in_dtype(original, dtype)
    return True


@functools.cache
def _in_dtype(cls: type, dtype: torch.dtype) -> type:
    def rescale_and_normalize(self: Any, *args: Any, **kwargs: Any) -> Any:
        pixels = cls.rescale_and_normalize(self, *args, **kwargs)
        # a processor of other code (remote, older) may return arrays: those it keeps as they are
        return pixels.to(dtype) if isinstance(pixels, torch.Tensor) and pixels.is_floating_point() else pixels

    def __reduce_ex__(self: Any, protocol: Any) -> tuple:
        # this class has no importable name: pickled as the processor's own, made to cast again when loaded
        return _unpickled, (cls, dtype, self.__dict__)

    return type(cls.__name__, (cls,), {"rescale_and_normalize": rescale_and_normalize, "pixels_dtype": dtype,
                                      "original_class": cls, "__reduce_ex__": __reduce_ex__,
                                      "__module__": cls.__module__, "__qualname__": cls.__qualname__})


def _unpickled(cls: type, dtype: torch.dtype, state: dict[str, Any]) -> Any:
    image_processor = cls.__new__(cls)
    image_processor.__dict__.update(state)
    normalised_in_model_dtype(image_processor, dtype)
    return image_processor
