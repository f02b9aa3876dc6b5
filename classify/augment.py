"""Training-time augmentation that hides what tells the labs apart: stain, colour, sharpness and resolution.

Ultralytics' classification trainer brings flips, a mild random resized crop and erasing; ``LabAugment``
runs before them on each training crop: optionally a stain transfer (the crop recoloured with a real
training lab's colour statistics) and a zoom (the cell larger or smaller: a slide's cell-size estimate,
which sets the crop window, is not exact), HED stain jitter, HSV jitter, some grayscale, Gaussian blur and
down-and-up sampling (so that neither a lab's stain nor its optics' sharpness can name the source), and
optionally sharpening (``p_sharpen``).
Optionally (``p_mixstyle``) the network's early feature statistics are mixed between the crops of a batch, and
(``p_mixup``) a training crop is blended with another, their targets alike (mixup).
``CellTrainer`` is the Ultralytics ``ClassificationTrainer`` with that augmentation on its training set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from leukoscan.classify.stain import hed_jitter, lab_stats, reinhard


@dataclass(frozen=True)
class LabAugment:
    hed_sigma: float = 0.06  # HED stain scale: uniform in 1 +- 4 sigma
    hed_bias: float = 0.03
    hue: float = 8.0  # OpenCV hue units (180 = full circle)
    saturation: float = 0.35  # multiplied by 1 +- this
    value: float = 0.25
    p_gray: float = 0.1
    p_blur: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.2)  # in pixels of the crop
    p_resample: float = 0.3
    resample: tuple[float, float] = (0.35, 0.9)  # shrink to this fraction, then back
    p_zoom: float = 0.0  # share of crops whose cell is made larger or smaller (the trial, README)
    zoom: float = 1.3  # by a factor log-uniform in [1 / zoom, zoom]: a slide's cell-size estimate is not exact
    p_quarter_turn: float = 0.0  # share of crops turned a quarter (with Ultralytics' flips: all 8 orientations;
    # the trial, README)
    p_transfer: float = 0.0  # share of crops recoloured as if from another training lab (the trial, README)
    transfer_labs: tuple = ()  # (lab, (L, a, b) mean, (L, a, b) SD) each: datasets.cells.lab_stain_targets
    transfer_contrast: float = 1.25  # an SD is scaled by at most this (or 1 / this): Reinhard's linear map
    # otherwise turns a pale lab's nuclei black or saturated blue when it meets a darker, more colourful one
    p_contrast: float = 0.0  # share of crops whose lightness contrast and brightness are changed (``contrast``;
    # the trial, README): the labs' pooled lightness SD runs from 14 (Taleqani) to 26 (Zheng), CIE L units
    contrast: float = 1.6  # lightness SD about the crop's mean scaled by a factor log-uniform in [1 / this, this]
    brightness: float = 8.0  # and its mean moved by up to this many CIE L units either way
    p_sharpen: float = 0.0  # share of crops sharpened (unsharp mask, ``sharpen``; the trial, README): blur and
    # down-and-up sampling only ever soften a crop, and a lab's optics can be sharper than any training lab's
    sharpen_amount: tuple[float, float] = (0.3, 1.5)  # the unsharp mask's amount, uniform in this range
    p_white_balance: float = 0.0  # share of crops given another lamp's colour cast (``white_balance``; the
    # trial, README): a lab's light and camera white balance tint every pixel alike (Zheng's first lab: yellow)
    white_balance: float = 1.3  # each RGB channel's gain log-uniform in [1 / this, this], over their geometric mean
    p_mixstyle: float = 0.0  # share of training batches whose early feature maps are re-styled (MixStyle,
    # ``mix_styles``; in the network, not on the crop; the trial, README)
    mixstyle_alpha: float = 0.1  # Beta(alpha, alpha) mixing weight: most mixes lean to one image's style
    p_mixup: float = 0.0  # share of training crops blended with another crop of the set, and their targets
    # alike (mixup; the trial, README)
    mixup_alpha: float = 0.4  # Beta(alpha, alpha) blending weight

    @cached_property
    def _lab_colour(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``transfer_labs`` by lab, as arrays (built once, not for every crop)."""
        return {name: (np.asarray(mean), np.asarray(sd)) for name, mean, sd in self.transfer_labs}

    def __call__(self, rgb: np.ndarray, rng: np.random.Generator, lab: str | None = None) -> np.ndarray:
        """``rgb`` augmented; a crop of a ``lab`` in ``transfer_labs`` is first, with probability
        ``p_transfer``, Reinhard-mapped from its lab's colour onto a random training lab's."""
        if lab in self._lab_colour and rng.random() < self.p_transfer:
            mean, sd = self._lab_colour[lab]
            _, to_mean, to_sd = self.transfer_labs[rng.integers(len(self.transfer_labs))]
            to_sd = sd * np.clip(np.asarray(to_sd) / sd, 1 / self.transfer_contrast, self.transfer_contrast)
            rgb = reinhard(rgb[None], (mean, sd), (to_mean, to_sd))[0]
        if self.p_quarter_turn and rng.random() < self.p_quarter_turn:  # no draw when off: the recipe's stream
            rgb = np.ascontiguousarray(np.rot90(rgb))
        if rng.random() < self.p_zoom:
            rgb = zoom(rgb, float(np.exp(rng.uniform(-np.log(self.zoom), np.log(self.zoom)))))
        if self.p_contrast and rng.random() < self.p_contrast:  # no draw when off: the recipe's stream
            factor = float(np.exp(rng.uniform(-np.log(self.contrast), np.log(self.contrast))))
            rgb = lightness(rgb, factor, float(rng.uniform(-self.brightness, self.brightness)))
        if self.p_white_balance and rng.random() < self.p_white_balance:  # no draw when off: the recipe's stream
            rgb = white_balance(rgb, cast_gains(rng, self.white_balance))
        out = hed_jitter(rgb, rng, sigma=self.hed_sigma, bias=self.hed_bias)
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 0] = (hsv[..., 0] + rng.uniform(-self.hue, self.hue)) % 180
        hsv[..., 1] *= rng.uniform(1 - self.saturation, 1 + self.saturation)
        hsv[..., 2] *= rng.uniform(1 - self.value, 1 + self.value)
        out = cv2.cvtColor(hsv.clip(0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
        if rng.random() < self.p_gray:
            out = np.repeat(cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        if rng.random() < self.p_blur:
            out = cv2.GaussianBlur(out, (0, 0), rng.uniform(*self.blur_sigma))
        if rng.random() < self.p_resample:
            h, w = out.shape[:2]
            f = rng.uniform(*self.resample)
            small = cv2.resize(out, (max(4, round(w * f)), max(4, round(h * f))), interpolation=cv2.INTER_AREA)
            out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if self.p_sharpen and rng.random() < self.p_sharpen:  # no draw when off: the recipe's stream
            out = sharpen(out, float(rng.uniform(*self.sharpen_amount)))
        return out


def cast_gains(rng: np.random.Generator, limit: float) -> np.ndarray:
    """Three RGB gains, each log-uniform in [1 / ``limit``, ``limit``], over their geometric mean: a colour
    cast that leaves the overall brightness to the value jitter."""
    log_gains = rng.uniform(-np.log(limit), np.log(limit), 3)
    return np.exp(log_gains - log_gains.mean())


def white_balance(rgb: np.ndarray, gains) -> np.ndarray:
    """The crop under another light: each RGB channel multiplied by its gain (a lamp's colour or a camera's
    white balance scales the light reaching every pixel alike, channel by channel; in gamma-encoded sRGB
    still a gain per channel), clipped to 0-255."""
    return np.clip(rgb.astype(np.float32) * np.asarray(gains, np.float32), 0, 255).round().astype(np.uint8)


def sharpen(rgb: np.ndarray, amount: float, sigma: float = 1.0) -> np.ndarray:
    """The crop through an unsharp mask: its difference from a Gaussian blur (``sigma`` px) added ``amount``
    times (0: unchanged), clipped to 0-255."""
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigma)
    return cv2.addWeighted(rgb, 1 + amount, blurred, -amount, 0)


def zoom(rgb: np.ndarray, factor: float) -> np.ndarray:
    """The crop as if cut with a window ``1 / factor`` as wide (same size in pixels): the cell ``factor``
    times larger (the centre enlarged) or smaller (the crop shrunk, its border reflected around it)."""
    h, w = rgb.shape[:2]
    if factor >= 1:
        ch, cw = max(1, round(h / factor)), max(1, round(w / factor))
        y, x = (h - ch) // 2, (w - cw) // 2
        return cv2.resize(rgb[y : y + ch, x : x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
    sh, sw = max(1, round(h * factor)), max(1, round(w * factor))
    small = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA)
    top, left = (h - sh) // 2, (w - sw) // 2
    return cv2.copyMakeBorder(small, top, h - sh - top, left, w - sw - left, cv2.BORDER_REFLECT_101)


def lightness(rgb: np.ndarray, factor: float, shift: float) -> np.ndarray:
    """The crop with its CIE lightness spread ``factor`` times as wide about its mean and moved by ``shift``
    L units (0-100), its colour (a, b) kept: another lab's brightness and contrast (a Reinhard mapping of
    the lightness alone, from the crop's own statistics to the moved ones)."""
    mean, sd = lab_stats(rgb[None])
    return reinhard(rgb[None], (mean, sd), (mean + [shift, 0, 0], sd * [factor, 1, 1]), channels="L")[0]


MIXSTYLE_LAYERS = (2, 4)  # yolov8n-cls: after the first two C2f blocks (stride 4 and 8), where style lives


def mix_styles(x, alpha: float = 0.1, eps: float = 1e-6):
    """MixStyle (Zhou et al., ICLR 2021): each image's feature maps re-styled with a random mix of its own
    per-channel mean and SD and another image's of the same batch (a batch mixes labs), so that the network
    cannot lean on what a lab's stain and optics do to those statistics."""
    import torch

    n = x.shape[0]
    mu = x.mean(dim=(2, 3), keepdim=True).detach()
    sd = (x.var(dim=(2, 3), keepdim=True) + eps).sqrt().detach()
    mix = torch.distributions.Beta(alpha, alpha).sample((n, 1, 1, 1)).to(x)
    other = torch.randperm(n, device=x.device)
    return (x - mu) / sd * (sd * mix + sd[other] * (1 - mix)) + (mu * mix + mu[other] * (1 - mix))


def add_mixstyle(model, p: float, alpha: float, layers=MIXSTYLE_LAYERS) -> list:
    """Hooks that apply ``mix_styles`` to the outputs of ``layers`` of an Ultralytics model (its
    ``model`` sequence) on a share ``p`` of its training batches; never in eval mode. The hook handles."""
    import torch

    def hook(module, inputs, output):
        if module.training and output.shape[0] > 1 and float(torch.rand(())) < p:
            return mix_styles(output, alpha)
        return None

    seq = getattr(model, "module", model).model
    return [seq[i].register_forward_hook(hook) for i in layers]


def as_input(crops: np.ndarray, colour: str) -> np.ndarray:
    """Crops (one RGB crop, or N of them) as a model trained on ``colour`` input sees them: unchanged for
    ``rgb``; for ``gray``, the luminance in all three channels (the stain's colour, which names a lab, gone)."""
    if colour == "rgb":
        return crops
    crops = np.asarray(crops)
    gray = crops[..., 0] * 0.299 + crops[..., 1] * 0.587 + crops[..., 2] * 0.114  # OpenCV's RGB2GRAY weights
    return np.repeat(gray.round().astype(np.uint8)[..., None], 3, axis=-1)


SOFT_TARGETS = "soft_targets.csv"  # beside a training folder's train/: ``file`` (under train/) and a column per class


def soft_targets(train: Path, names: dict[int, str]) -> dict[str, np.ndarray] | None:
    """The target probabilities of a training folder's crops that have them (``SOFT_TARGETS`` beside ``train``,
    written by ``finetune_folder``), by crop file as Ultralytics lists it, in the order of the model's class
    ``names``; None when the folder has none (every crop's class is its folder)."""
    import pandas as pd

    if not (train.parent / SOFT_TARGETS).is_file():
        return None
    table = pd.read_csv(train.parent / SOFT_TARGETS)
    probs = table[[names[i] for i in sorted(names)]].to_numpy(np.float32)
    return {str(train / f): p for f, p in zip(table.file, probs)}


def cell_trainer(augment: LabAugment = LabAugment(), colour: str = "rgb"):
    """An Ultralytics ``ClassificationTrainer`` subclass whose training set applies ``augment`` first and
    whose training and validation crops are ``as_input(…, colour)`` (built on demand: importing this module
    does not import Ultralytics); a training folder with ``SOFT_TARGETS`` trains those crops towards their
    probabilities (distillation), the others towards their folder's class."""
    import torch
    from PIL import Image

    from leukoscan.datasets.cells import link_lab
    from leukoscan.runtime import ultralytics

    ClassificationDataset = ultralytics("ultralytics.data.dataset").ClassificationDataset
    ClassificationTrainer = ultralytics("ultralytics.models.yolo.classify.train").ClassificationTrainer

    class AugmentedCells(ClassificationDataset):
        rng: np.random.Generator | None = None

        def __init__(self, *args, lab_augment: bool, soft: dict[str, np.ndarray] | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.lab_augment = lab_augment
            self.soft = soft  # crop file -> target probabilities; the others one-hot
            # targets as probability vectors (a batch takes one kind): with soft targets, or mixup's blends
            vectors = soft is not None or (lab_augment and augment.p_mixup)
            self.one_hot = torch.eye(len(kwargs["names"])) if vectors else None
            if soft is not None and not any(str(Path(f)) in soft for f, *_ in self.samples):
                raise ValueError(f"none of the crops in {self.root} is one of its {SOFT_TARGETS}")

        def __getitem__(self, i: int) -> dict:
            if self.rng is None:  # one generator per dataloader worker, from torch's per-worker seed
                self.rng = np.random.default_rng(torch.initial_seed() % 2**63)
            img, target = self.sample(i)
            if self.lab_augment and augment.p_mixup and self.rng.random() < augment.p_mixup:
                other, other_target = self.sample(int(self.rng.integers(len(self.samples))))
                weight = float(self.rng.beta(augment.mixup_alpha, augment.mixup_alpha))
                img, target = weight * img + (1 - weight) * other, weight * target + (1 - weight) * other_target
            return {"img": img, "cls": target}

        def sample(self, i: int):
            """Crop ``i`` as the network takes it, and its target: its class, or with soft targets or mixup (whose
            batches mix both) a vector of probabilities (Ultralytics' loss, cross-entropy, takes either)."""
            f, j, _, _ = self.samples[i]
            rgb = cv2.cvtColor(self.imread(f), cv2.COLOR_BGR2RGB)
            rgb = augment(rgb, self.rng, link_lab(Path(f).name)) if self.lab_augment else rgb
            img = self.torch_transforms(Image.fromarray(as_input(rgb, colour)))
            if self.one_hot is None:
                return img, j
            p = self.soft.get(str(Path(f))) if self.soft is not None else None
            return img, torch.from_numpy(p) if p is not None else self.one_hot[j]

    class CellTrainer(ClassificationTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if augment.p_mixstyle:  # on the model being trained, after its EMA copy (which is saved) is made
                self.add_callback(
                    "on_train_start", lambda t: add_mixstyle(t.model, augment.p_mixstyle, augment.mixstyle_alpha)
                )

        def build_dataset(self, img_path: str, mode: str = "train", batch=None):
            if mode != "train" and colour == "rgb":
                return super().build_dataset(img_path, mode, batch)
            train = mode == "train"
            soft = soft_targets(Path(img_path), self.data["names"]) if train else None
            return AugmentedCells(
                img_path, self.args, augment=train, prefix=mode, names=self.data["names"], lab_augment=train, soft=soft
            )

    return CellTrainer
