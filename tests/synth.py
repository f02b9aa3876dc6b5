"""Synthetic blood smears drawn with numpy/OpenCV: pale red cells with central pallor, violet white cells."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

BACKGROUND = (236, 232, 238)
RBC = (214, 170, 190)
RBC_PALLOR = (228, 205, 215)
WBC_CYTO = (176, 140, 214)
WBC_NUCLEUS = (110, 60, 170)


def smear(size=(224, 224), rbc_px=16.0, wbc_px=27.0, n_rbc=40, n_wbc=3, seed=0, wbc_centres=None):
    """RGB smear and the white-cell boxes (N x 4 xyxy). Cells do not overlap white cells."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BACKGROUND
    boxes = []
    centres = list(wbc_centres) if wbc_centres is not None else []
    while len(centres) < n_wbc:
        c = rng.uniform(wbc_px, [w - wbc_px, h - wbc_px])
        if all(np.hypot(*(c - np.array(o))) > wbc_px * 1.3 for o in centres):
            centres.append(tuple(c))
    placed = 0
    for _ in range(n_rbc * 20):
        if placed >= n_rbc:
            break
        c = rng.uniform(0, [w, h])
        if any(np.hypot(*(c - np.array(o))) < (wbc_px + rbc_px) / 2 + 2 for o in centres):
            continue
        r = rbc_px / 2 * rng.uniform(0.93, 1.07)
        cv2.circle(img, (int(c[0]), int(c[1])), int(round(r)), RBC, -1, cv2.LINE_AA)
        cv2.circle(img, (int(c[0]), int(c[1])), int(round(r * 0.4)), RBC_PALLOR, -1, cv2.LINE_AA)
        placed += 1
    for cx, cy in centres:
        r = wbc_px / 2
        cv2.circle(img, (int(cx), int(cy)), int(round(r)), WBC_CYTO, -1, cv2.LINE_AA)
        cv2.circle(img, (int(cx), int(cy)), int(round(r * 0.7)), WBC_NUCLEUS, -1, cv2.LINE_AA)
        boxes.append((cx - r, cy - r, cx + r, cy + r))
    noise = rng.normal(0, 2, img.shape)
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    return img, np.array(boxes, dtype=np.float32).reshape(-1, 4)


def write_yolo_dataset(root: Path, n_train=8, n_val=4, size=(224, 224)) -> Path:
    """A tiny single-class YOLO dataset of synthetic smears; returns data.yaml."""
    from leukoscan.cells import cells
    from leukoscan.datasets.build import yolo_lines

    for split, n in (("train", n_train), ("val", n_val)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, boxes = smear(size, seed=i + (0 if split == "train" else 100))
            cv2.imwrite(str(root / "images" / split / f"s{i}.jpg"), img[..., ::-1])
            (root / "labels" / split / f"s{i}.txt").write_text(yolo_lines(cells(boxes), size[1], size[0]))
    yaml = root / "data.yaml"
    yaml.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: white_cell\n")
    return yaml


def write_slide(folder: Path, n_fields: int, seed: int = 0) -> Path:
    """A slide folder of ``n_fields`` synthetic fields ``f0.png``, ``f1.png``, … (field ``i`` drawn with
    ``seed + i``); the folder, created if needed."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_fields):
        cv2.imwrite(str(folder / f"f{i}.png"), smear(seed=seed + i)[0][..., ::-1])
    return folder
