"""Stain-space colour jitter (scikit-image HED): simulates another lab's haematoxylin/eosin balance."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.color import hed2rgb, rgb2hed


def hed_jitter(rgb: np.ndarray, rng: np.random.Generator, sigma: float = 0.05, bias: float = 0.02) -> np.ndarray:
    """Scale and shift each HED stain channel at random (Tellez et al. 2018 style)."""
    hed = rgb2hed(rgb)
    alpha = rng.uniform(1 - sigma * 4, 1 + sigma * 4, size=3)
    beta = rng.uniform(-bias, bias, size=3)
    out = hed2rgb(hed * alpha + beta)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def to_lab(crops: np.ndarray) -> np.ndarray:
    """CIE Lab (float32, L 0-100) of RGB uint8 crops (N x h x w x 3), as (N x h) x w x 3. OpenCV's float
    sRGB->Lab (D65) agrees with scikit-image's rgb2lab to ~0.1 and is faster."""
    import cv2

    crops = np.asarray(crops)
    stacked = crops.reshape(-1, crops.shape[-2], 3).astype(np.float32)
    stacked *= 1 / 255
    return cv2.cvtColor(stacked, cv2.COLOR_RGB2Lab)


def crop_colour(crops: np.ndarray) -> np.ndarray:
    """Mean CIE Lab colour of each RGB crop's stained (darker than median) pixels: N x 3."""
    if not len(crops):
        return np.zeros((0, 3), dtype=np.float32)
    crops = np.asarray(crops)[:, ::2, ::2]  # colour statistics need no more than every other pixel
    lab = to_lab(crops).reshape(len(crops), -1, 3)
    lightness = np.ascontiguousarray(lab[..., 0])
    dark = (lightness <= np.median(lightness, axis=1, keepdims=True)).astype(np.float32)
    # the mean of each crop's dark pixels as one batched (1 x pixels) @ (pixels x 3) product
    return (np.matmul(dark[:, None, :], lab)[:, 0] / dark.sum(axis=1, keepdims=True)).astype(np.float32)


def stain_reference(crops: np.ndarray) -> dict:
    """Mean and spread of the training crops' colour, stored in the classifier card."""
    colour = crop_colour(crops)
    return {
        "lab_mean": [round(float(v), 3) for v in colour.mean(axis=0)],
        "lab_std": [round(float(v), 3) for v in colour.std(axis=0)],
    }


def stain_z(median_lab, reference: dict | None) -> np.ndarray | None:
    """How far (in training-crop SDs) a slide's median cell colour is from training, per Lab channel."""
    if not reference or median_lab is None or not np.isfinite(median_lab).all():
        return None
    return np.abs(np.asarray(median_lab) - np.array(reference["lab_mean"])) / np.maximum(
        np.array(reference["lab_std"]), 1e-3
    )


def stain_distance(median_lab, reference: dict | None) -> float | None:
    """How far (in training-crop SDs, worst Lab channel) a slide's median cell colour is from training."""
    z = stain_z(median_lab, reference)
    return None if z is None else float(z.max())


REGIONS = ("cells", "surround")  # lab_stats: every pixel of the crops, or those around each white cell
CHANNELS = ("Lab", "L")  # reinhard: all of CIE Lab, or the lightness alone
SURROUND_DIAMETER = 0.8  # "surround": pixels outside the central disc this fraction of the crop wide


def surround_mask(h: int, w: int, diameter: float = SURROUND_DIAMETER) -> np.ndarray:
    """The pixels of an h x w cell crop outside its central disc (``diameter`` x the crop's side): with the
    crop window 1.6 cell diameters wide, what lies around the white cell (background, red cells), whose
    colour names the lab's stain and light but not the type of the cell in the middle."""
    y, x = np.ogrid[:h, :w]
    r = ((y - (h - 1) / 2) ** 2 + (x - (w - 1) / 2) ** 2) ** 0.5
    return r > diameter * min(h, w) / 2


def lab_stats(crops: np.ndarray, region: str = "cells") -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD of the CIE Lab colour of a set of RGB crops' pixels (uint8, N x h x w x 3): every pixel
    (``cells``) or those around each white cell (``surround``, ``surround_mask``)."""
    crops = np.asarray(crops)
    lab = to_lab(crops).reshape(crops.shape[:-1] + (3,))
    if region == "surround":
        lab = lab[:, surround_mask(*crops.shape[1:3])]
    lab = lab.reshape(-1, 3)
    return lab.mean(axis=0).astype(np.float64), lab.std(axis=0).astype(np.float64)


@dataclass(frozen=True)
class SlideColour:
    """The colour of one slide's cells: the pooled CIE Lab mean and SD (``lab_stats``) of a classifier's crops,
    which a classifier trained on colour-normalised crops maps onto its own (``CellClassifier.normalise``);
    verdict.json keeps it (``record``) so that a resumed slide is mapped as before."""

    mean: tuple[float, ...]
    sd: tuple[float, ...]
    n_cells: int = 0  # the cells and fields it was measured on
    n_fields: int = 0

    @classmethod
    def of(cls, crops: np.ndarray, region: str = "cells", n_fields: int = 0) -> SlideColour:
        """The colour of ``crops`` (one slide's, one lab's) over ``region`` (``lab_stats``), to 4 decimals."""
        mean, sd = (tuple(round(float(v), 4) for v in stat) for stat in lab_stats(crops, region))
        return cls(mean, sd, len(crops), n_fields)

    def record(self) -> dict:
        return {"mean": list(self.mean), "sd": list(self.sd), "n_cells": self.n_cells, "n_fields": self.n_fields}

    @classmethod
    def from_record(cls, record: dict | None) -> SlideColour | None:
        """A colour ``record`` wrote (None for none)."""
        if not record:
            return None
        return cls(tuple(record["mean"]), tuple(record["sd"]), record.get("n_cells", 0), record.get("n_fields", 0))


def reinhard(crops: np.ndarray, stats: tuple, reference: tuple, channels: str = "Lab") -> np.ndarray:
    """Reinhard colour normalisation: crops whose pooled Lab mean and SD are ``stats`` (one slide's, one
    lab's) mapped onto ``reference`` (the training crops'), pixel by pixel in CIE Lab; ``channels="L"``
    maps the lightness alone (brightness and contrast), the colour (a, b) kept."""
    import cv2

    crops = np.asarray(crops)
    if not len(crops):
        return crops
    mapped = slice(0, 1) if channels == "L" else slice(0, 3)  # "L": a and b pass through unchanged
    mean, sd, ref_mean, ref_sd = (np.asarray(v, np.float32)[mapped] for v in (*stats, *reference))
    lab = to_lab(crops)
    lab[..., mapped] = (lab[..., mapped] - mean) / np.maximum(sd, 1e-6) * ref_sd + ref_mean
    lab[..., 0] = lab[..., 0].clip(0, 100)
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return (rgb.clip(0, 1) * 255).round().astype(np.uint8).reshape(crops.shape)
