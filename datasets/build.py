"""Build the detection (Ultralytics YOLO format) and classification (cell crops) datasets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import supervision as sv
import yaml

from leukoscan.cells import CLASSES
from leukoscan.cli import track
from leukoscan.config import SETTINGS
from leukoscan.crops import crop_cells
from leukoscan.datasets.segment import TALEQANI_CELL_PX, agreement, colour_boxes, mask_boxes
from leukoscan.datasets.splits import build_manifest, manifest_hash
from leukoscan.images import ImageError, load_rgb, to_bgr

SPLITS = ("train", "val", "test")
DETECT_NAMES = {0: "white_cell"}


def yolo_lines(det: sv.Detections, width: int, height: int) -> str:
    """YOLO label text (class cx cy w h, normalised) for single-class cell boxes."""
    xyxy = det.xyxy.astype(np.float64).clip(0, [width, height, width, height])
    cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2 / width, (xyxy[:, 1] + xyxy[:, 3]) / 2 / height
    w, h = (xyxy[:, 2] - xyxy[:, 0]) / width, (xyxy[:, 3] - xyxy[:, 1]) / height
    return "".join(f"0 {a:.6f} {b:.6f} {c:.6f} {d:.6f}\n" for a, b, c, d in zip(cx, cy, w, h))


def read_yolo(label: Path, width: int, height: int, keep_class: int = 0) -> sv.Detections:
    """Boxes of one class from a YOLO label file, as pixel xyxy."""
    from leukoscan.cells import cells

    rows = [r.split() for r in label.read_text().splitlines() if r.strip()] if label.exists() else []
    rows = np.array([[float(v) for v in r[1:5]] for r in rows if int(float(r[0])) == keep_class]).reshape(-1, 4)
    cx, cy, w, h = rows.T
    return cells(
        np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
    )


TXL_GRID = 3  # TXL-PBC fields are shrunk to Taleqani scale and packed 3x3 into one training image


def txl_mosaic(txl: Path, split: str, files: list[Path]) -> tuple[np.ndarray, sv.Detections]:
    """Shrink TXL-PBC fields (white cells ~140-280 px) so white cells match Taleqani's ~27 px, and pack them
    into a grid: the detector then learns other labs' stains at the one scale inference normalises to."""
    from leukoscan.cells import cells

    tiles, tile_boxes = [], []
    for img in files:
        rgb = load_rgb(img)
        h, w = rgb.shape[:2]
        label = txl / "labels" / split / f"{img.stem}.txt"
        wbc = read_yolo(label, w, h, keep_class=0)
        rbc = read_yolo(label, w, h, keep_class=1)
        if len(wbc):
            size = float(np.median(np.maximum(wbc.xyxy[:, 2] - wbc.xyxy[:, 0], wbc.xyxy[:, 3] - wbc.xyxy[:, 1])))
        elif len(rbc):
            size = 1.8 * float(np.median(np.maximum(rbc.xyxy[:, 2] - rbc.xyxy[:, 0], rbc.xyxy[:, 3] - rbc.xyxy[:, 1])))
        else:
            continue
        f = TALEQANI_CELL_PX / size
        tiles.append(cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA))
        tile_boxes.append(wbc.xyxy * f)
    side = max([max(t.shape[:2]) for t in tiles] + [1])
    canvas = np.empty((side * TXL_GRID, side * TXL_GRID, 3), dtype=np.uint8)
    canvas[:] = np.median(np.concatenate([t.reshape(-1, 3) for t in tiles]), axis=0) if tiles else 255
    boxes = []
    for k, (tile, xyxy) in enumerate(zip(tiles, tile_boxes)):
        y, x = (k // TXL_GRID) * side, (k % TXL_GRID) * side
        canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile
        boxes.append(xyxy + [x, y, x, y])
    return canvas, cells(np.concatenate(boxes) if boxes else np.zeros((0, 4)))


def taleqani_cells(root: Path, row: pd.Series) -> tuple[np.ndarray, sv.Detections, sv.Detections | None]:
    """(image, training boxes, mask boxes or None). Pro masks are mostly empty: Pro uses colour boxes. An
    ``ImageError`` names the file that cannot be read."""
    rgb = _load(root / "Original" / row.file)
    if row.class_dir == "Pro":
        return rgb, colour_boxes(rgb), None
    masks = mask_boxes(_load(root / "Segmented" / row.file), rgb)
    return rgb, masks, masks


def _load(path: Path) -> np.ndarray:
    try:
        return load_rgb(path)
    except ImageError as e:
        raise ImageError(f"{path}: {e}") from None


def fresh(folder: Path, *patterns: str) -> Path:
    """``folder`` made, and emptied of the files an earlier build of the same kind wrote there (``patterns``, in it
    and its class folders): a rebuild whose blocks moved would leave an image's crops in two splits. Other files
    are left alone."""
    folder.mkdir(parents=True, exist_ok=True)
    for pattern in patterns:
        for f in [*folder.glob(pattern), *folder.glob(f"*/{pattern}")]:
            f.unlink()
    return folder


def build_detection(data_root: Path, out: Path, manifest: pd.DataFrame | None = None) -> dict:
    """Write ``out`` as a YOLO dataset from Taleqani (mask/colour boxes) and TXL-PBC (WBC boxes only)."""
    tq = data_root / "all-taleqani"
    if manifest is None:
        manifest = build_manifest(tq, out / "manifest.csv", progress=track)
    for split in SPLITS:
        fresh(out / "images" / split, "*.jpg", "*.png")
        fresh(out / "labels" / split, "*.txt")
    counts: dict[str, dict[str, int]] = {}
    tp, n_pred, n_true = _taleqani_detection(tq, manifest[manifest.split != ""], out, counts)
    _txl_detection(data_root / "txl-pbc", out, counts)
    yaml.safe_dump(
        {"path": str(out.resolve()), **{s: f"images/{s}" for s in SPLITS}, "names": DETECT_NAMES},
        (out / "data.yaml").open("w"),
    )
    summary = {
        "manifest_sha256": manifest_hash(out / "manifest.csv") if (out / "manifest.csv").exists() else None,
        "counts": counts,
        "colour_vs_mask": {
            "classes": ["Benign", "Early", "Pre"],
            "iou": 0.5,
            "true_positives": tp,
            "precision": round(tp / max(n_pred, 1), 4),
            "recall": round(tp / max(n_true, 1), 4),
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _taleqani_detection(tq: Path, used: pd.DataFrame, out: Path, counts: dict) -> tuple[int, int, int]:
    """The Taleqani fields of ``used`` (manifest rows with a split) with their cells' boxes, counted in
    ``counts``; how our colour segmentation agrees with the dataset's masks where it has them (true
    positives, predicted, true)."""
    tp = n_pred = n_true = 0
    for row in track(list(used.itertuples()), "detection: Taleqani"):
        rgb, boxes, masks = taleqani_cells(tq, row)
        if masks is not None:  # measure our colour segmentation against the dataset's masks
            t, p, g = agreement(colour_boxes(rgb), masks)
            tp, n_pred, n_true = tp + t, n_pred + p, n_true + g
        stem = f"tq_{Path(row.file).stem}"
        shutil.copyfile(tq / "Original" / row.file, out / "images" / row.split / f"{stem}.jpg")
        (out / "labels" / row.split / f"{stem}.txt").write_text(yolo_lines(boxes, rgb.shape[1], rgb.shape[0]))
        c = counts.setdefault(f"taleqani/{row.split}", {"images": 0, "cells": 0})
        c["images"] += 1
        c["cells"] += len(boxes)
    return tp, n_pred, n_true


def _txl_detection(txl: Path, out: Path, counts: dict) -> None:
    """TXL-PBC's fields as scale-normalised mosaics of ``TXL_GRID`` x ``TXL_GRID`` fields, counted in ``counts``."""
    for split in SPLITS:
        files = sorted((txl / "images" / split).glob("*.jpg"))
        groups = [files[i : i + TXL_GRID**2] for i in range(0, len(files), TXL_GRID**2)]
        for n, group in enumerate(track(groups, f"detection: TXL-PBC {split} (scale-normalised mosaics)")):
            canvas, boxes = txl_mosaic(txl, split, group)
            stem = f"txl_{split}_{n:04d}"
            cv2.imwrite(str(out / "images" / split / f"{stem}.jpg"), to_bgr(canvas), [cv2.IMWRITE_JPEG_QUALITY, 95])
            (out / "labels" / split / f"{stem}.txt").write_text(yolo_lines(boxes, canvas.shape[1], canvas.shape[0]))
            c = counts.setdefault(f"txl-pbc/{split}", {"images": 0, "cells": 0, "source_images": 0})
            c["images"] += 1
            c["source_images"] += len(group)
            c["cells"] += len(boxes)


def build_classification(
    data_root: Path,
    out: Path,
    manifest: pd.DataFrame,
    margin: float = SETTINGS.geometry.crop_margin,
    size: int = SETTINGS.geometry.crop_px,
) -> dict:
    """Write cell crops to ``out/<split>/<class>/`` (weak labels: the image's diagnosis).

    The crop geometry goes into ``summary.json`` so that training can put it on the classifier's card
    and inference crops exactly as the model was trained."""
    tq = data_root / "all-taleqani"
    for split in SPLITS:
        fresh(out / split, "*.png")
        for key in CLASSES:
            (out / split / key).mkdir(exist_ok=True)
    used = manifest[manifest.split != ""]
    counts: dict[str, dict[str, int]] = {}
    for row in track(list(used.itertuples()), "classification crops"):
        rgb, boxes, _ = taleqani_cells(tq, row)
        for i, crop in enumerate(crop_cells(rgb, boxes.xyxy, size=size, margin=margin)):
            cv2.imwrite(str(out / row.split / row.class_key / f"{Path(row.file).stem}_{i:02d}.png"), to_bgr(crop))
        c = counts.setdefault(row.split, {k: 0 for k in CLASSES})
        c[row.class_key] += len(boxes)
    summary = {"counts": counts, "geometry": {"crop_margin": margin, "crop_px": size}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def build_fields(data_root: Path, out: Path, manifest: pd.DataFrame) -> dict:
    """Whole 224x224 fields in ``out/<split>/<class>/``: the original notebook's approach, kept as a baseline."""
    tq = data_root / "all-taleqani"
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        fresh(out / split, "*.jpg")
    for row in track(list(manifest[manifest.split != ""].itertuples()), "whole-field baseline"):
        dst = out / row.split / row.class_key
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tq / "Original" / row.file, dst / Path(row.file).name)
        c = counts.setdefault(row.split, {k: 0 for k in CLASSES})
        c[row.class_key] += 1
    (out / "summary.json").write_text(json.dumps({"counts": counts}, indent=2))
    return {"counts": counts}
