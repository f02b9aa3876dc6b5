"""Class balancing for the crop dataset: minority classes are oversampled with stain-jittered copies.

The Ultralytics classification trainer has no class weights, so the training folder is rebuilt with
every class at ``per_class`` samples: a larger class is subsampled (Pre-B fields are crowded and would
otherwise hold half of all crops), a smaller one keeps all originals and is filled up with HED-jittered
copies (never byte-identical duplicates). val/test are linked unchanged.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from leukoscan.cells import CLASSES
from leukoscan.classify.stain import hed_jitter
from leukoscan.cli import track


def balance(src: Path, dst: Path, per_class: int = 3000, seed: int = 0) -> dict[str, int]:
    """Write a balanced copy of ``src/train`` to ``dst/train`` and link ``val``/``test``; return train counts."""
    rng = np.random.default_rng(seed)
    files = {
        k: sorted(f for f in (src / "train" / k).iterdir() if f.suffix.lower() in (".png", ".jpg")) for k in CLASSES
    }
    target = per_class
    counts = {}
    if dst.exists():
        shutil.rmtree(dst)
    for key in track(CLASSES, "balancing classes"):
        out = dst / "train" / key
        out.mkdir(parents=True, exist_ok=True)
        if len(files[key]) > target:
            files[key] = [files[key][i] for i in sorted(rng.choice(len(files[key]), target, replace=False))]
        for f in files[key]:
            link = out / f.name
            if not link.exists():
                os.link(f, link)
        extra = rng.choice(len(files[key]), size=target - len(files[key]), replace=True) if files[key] else []
        for n, i in enumerate(extra):
            bgr = cv2.imread(str(files[key][i]))
            jittered = hed_jitter(bgr[..., ::-1], rng)[..., ::-1]
            cv2.imwrite(str(out / f"{files[key][i].stem}_aug{n:05d}{files[key][i].suffix}"), jittered)
        counts[key] = len(files[key]) + len(extra)
    for split in ("val", "test"):
        link = dst / split
        if not link.exists():
            link.symlink_to((src / split).resolve(), target_is_directory=True)
    return counts
