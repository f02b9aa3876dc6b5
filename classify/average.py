"""Weight averaging over a training run's last epochs (stochastic weight averaging, Izmailov et al. 2018;
for domain generalisation, Cha et al. 2021, SWAD): one model whose weights are the mean of the last ``k``
epochs' checkpoints (``train-cells --save-period 1`` keeps them). Batch norm's running statistics are averaged
with them, as Ultralytics' EMA averages them, or measured afresh on training crops, SWA's rule
(``torch.optim.swa_utils.update_bn``).

Ultralytics' own EMA does not do this here: its decay ramps up as ``0.9999 (1 - exp(-updates / 2000))``, and
a cell-type model's 30 epochs are about 3,000 updates, so at the end it averages the last handful of steps.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

AVERAGED = "averaged.pt"  # in the run's weights/ folder, beside best.pt and last.pt


def epoch_checkpoints(run: Path, k: int) -> list[Path]:
    """The last ``k`` epochs' checkpoints of a training run (``weights/epochN.pt``), oldest first; a
    ValueError (one line) when the run kept fewer."""
    found = {
        int(m[1]): f for f in (run / "weights").glob("epoch*.pt") if (m := re.fullmatch(r"epoch(\d+)\.pt", f.name))
    }
    if len(found) < k:
        raise ValueError(
            f"{run} kept {len(found)} epochs' weights, fewer than the {k} to average (train with --save-period 1)"
        )
    return [found[e] for e in sorted(found)[-k:]]


def average_state(states: list[dict]) -> dict:
    """The element-wise mean of model state dicts' floating-point tensors (as float32: weights and batch norm's
    running statistics); integer buffers (batch norm's step count) taken from the last."""
    import torch

    out = {}
    for key, last in states[-1].items():
        if torch.is_floating_point(last):
            out[key] = torch.stack([s[key].float() for s in states]).mean(dim=0)
        else:
            out[key] = last.clone()
    return out


def training_batches(folder: Path, augment, imgsz: int, n: int = 4096, batch: int = 128, seed: int = 0):
    """Model-input batches (N x 3 x imgsz x imgsz, 0-1) of ``n`` crops drawn from ``folder``'s classes as the
    training set holds them (``train.sample_crops``), each through ``augment`` (the run's ``LabAugment``; its
    stain transfer, which needs a crop's lab, left out) and a random flip, as in training: the crops the
    batch-norm statistics are measured on."""
    import torch

    from leukoscan.classify.train import sample_crops

    rng = np.random.default_rng(seed)
    crops = sample_crops(folder, n, seed)
    crops = crops[rng.permutation(len(crops))]  # batches that mix classes, as training's (a batch's variance)
    for start in range(0, len(crops), batch):
        views = []
        for rgb in crops[start : start + batch]:
            rgb = augment(np.ascontiguousarray(rgb), rng)
            rgb = rgb[:, ::-1] if rng.random() < 0.5 else rgb
            rgb = rgb[::-1] if rng.random() < 0.5 else rgb
            views.append(cv2.resize(np.ascontiguousarray(rgb), (imgsz, imgsz), interpolation=cv2.INTER_LINEAR))
        yield torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).float().div_(255)


def average_run(run: Path, k: int, folder: Path | None = None, augment=None, imgsz: int = 64) -> Path:
    """``run``'s last ``k`` epochs averaged into ``weights/averaged.pt`` (an Ultralytics checkpoint: the last
    epoch's, its model replaced; ``k`` = 1: the last epoch's weights as they are); with ``folder`` (a training
    folder), batch norm measured again on its ``train/`` crops through ``augment`` at ``imgsz``. Its path."""
    import torch
    from torch.optim.swa_utils import update_bn

    files = epoch_checkpoints(run, k)
    ckpts = [torch.load(f, map_location="cpu", weights_only=False) for f in files]
    models = [(c.get("ema") or c["model"]).float() for c in ckpts]
    model = models[-1]  # loaded for this: its weights may be overwritten with the mean
    model.load_state_dict(average_state([m.state_dict() for m in models]))
    if folder is not None:
        update_bn(training_batches(folder / "train", augment, imgsz), model)
    out = dict(ckpts[-1], ema=model.eval().half(), model=None, optimizer=None, averaged_epochs=k)
    torch.save(out, run / "weights" / AVERAGED)
    return run / "weights" / AVERAGED
