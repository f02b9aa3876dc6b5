"""Stain-space colour jitter (scikit-image HED): simulates another lab's haematoxylin/eosin balance."""

from __future__ import annotations

import numpy as np
from skimage.color import hed2rgb, rgb2hed


def hed_jitter(rgb: np.ndarray, rng: np.random.Generator, sigma: float = 0.05, bias: float = 0.02) -> np.ndarray:
    """Scale and shift each HED stain channel at random (Tellez et al. 2018 style)."""
    hed = rgb2hed(rgb)
    alpha = rng.uniform(1 - sigma * 4, 1 + sigma * 4, size=3)
    beta = rng.uniform(-bias, bias, size=3)
    out = hed2rgb(hed * alpha + beta)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
