"""Scan-like degradation of a rendered page: small rotation (skew), blur, sensor noise, JPEG artefacts.

Seeded through the caller's `random.Random`, so a degraded corpus is as reproducible as a clean one.
The rotation is always applied (so every degraded page differs from the clean one); the other steps
are drawn per page. Only pixels change: the ground truth stays the same.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageFilter

PAPER = (255, 255, 255)


def degrade(image: Image.Image, rng: random.Random) -> Image.Image:
    angle = rng.uniform(0.3, 1.8) * rng.choice((-1, 1))
    out = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=PAPER)
    if rng.random() < 0.6:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.0)))
    if rng.random() < 0.7:
        out = add_noise(out, sigma=rng.uniform(4.0, 12.0), seed=rng.getrandbits(32))
    if rng.random() < 0.6:
        out = jpeg_roundtrip(out, quality=rng.randint(35, 70))
    return out


def add_noise(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    """Gaussian pixel noise from a seeded numpy generator."""
    pixels = np.asarray(image, dtype=np.float32)
    noise = np.random.default_rng(seed).normal(0.0, sigma, size=pixels.shape[:2])[..., None]
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def jpeg_roundtrip(image: Image.Image, quality: int) -> Image.Image:
    """Encode as JPEG and decode again: blocking and ringing artefacts."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("RGB")
