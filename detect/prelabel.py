"""Pre-label a lab's new photographs: detector boxes merged with the colour segmentation's proposals."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from leukoscan import outputs
from leukoscan.cells import cells
from leukoscan.datasets.build import yolo_lines
from leukoscan.datasets.segment import TALEQANI_CELL_PX, colour_boxes
from leukoscan.detect.labels import CELL_PX, PRELABELS, text_sha256, to_coco, write_split
from leukoscan.detect.scale import white_cell_px
from leukoscan.images import ImageError, list_images, load_rgb, rescale, to_bgr
from leukoscan.quality import field_problem

SOURCE = "source"  # key in sv.Detections.data: which proposer found a box ("detector" or "segmentation")


def merge(detected: sv.Detections, proposed: sv.Detections, iou: float = 0.3) -> sv.Detections:
    """Detector boxes plus every segmentation proposal that no detector box already covers."""
    if len(proposed) and len(detected):
        keep = sv.box_iou_batch(proposed.xyxy, detected.xyxy).max(axis=1) < iou
        proposed = proposed[keep]
    conf = np.concatenate(
        [detected.confidence if detected.confidence is not None else np.ones(len(detected)), np.zeros(len(proposed))]
    )
    merged = cells(np.concatenate([detected.xyxy, proposed.xyxy]), conf)
    merged.data[SOURCE] = np.array(["detector"] * len(detected) + ["segmentation"] * len(proposed))
    return merged


def _say_if_not_a_smear(rgb: np.ndarray, n_cells: int, cell_px: float, name: str, counts: dict, log) -> None:
    """A photograph that `run` would call no usable smear (too dark, blank, grayscale...): said, and listed in
    the counts' ``not_smears``; the reviewer decides whether it stays in the label set."""
    if problem := field_problem(rgb, n_cells, cell_px):
        counts.setdefault("not_smears", []).append(f"{name}: {problem}")
        log(
            f"warning: {name} does not look like a usable smear ({problem}): remove images/{name} and "
            f"labels/{Path(name).stem}.txt unless it is one"
        )


def _write_overlay(path: Path, rgb: np.ndarray, boxes: sv.Detections) -> None:
    """The quick-look overlay: detector boxes vermilion, segmentation proposals blue."""
    scene = sv.BoxAnnotator(
        color=sv.ColorPalette.from_hex(["#D55E00", "#0072B2"]), thickness=max(1, max(rgb.shape[:2]) // 500)
    ).annotate(to_bgr(rgb), _by_source(boxes))
    outputs.write_jpeg(path, scene)


def prelabel(
    detector, images: Path, labset: Path, cell_size: float | None = None, um_per_px: float | None = None, log=print
) -> dict:
    """Write a YOLO + COCO label set from ``images`` (PNG copies at their own resolution, boxes in their
    pixels) with each one's white-cell size (``cell_px.json``, from which fine-tuning scales them). A photograph
    the label set already has labels for is kept as it is (its labels may be reviewed): new photographs are added."""
    check_names(images)
    counts = {"images": 0, "detector_boxes": 0, "segmentation_boxes": 0, "skipped": [], "kept": []}
    cell_px = json.loads((labset / CELL_PX).read_text()) if (labset / CELL_PX).is_file() else {}
    written = json.loads((labset / PRELABELS).read_text()) if (labset / PRELABELS).is_file() else {}
    for path in list_images(images):
        if (labset / "labels" / f"{path.stem}.txt").exists():
            counts["kept"].append(f"{path.stem}.png")
            log(f"kept {path.stem}.png: already in the label set (delete labels/{path.stem}.txt to pre-label it again)")
            continue
        try:
            rgb = load_rgb(path)
        except ImageError as e:
            counts["skipped"].append(f"{path.name}: {e}")
            log(f"skipped {path.name}: {e}")
            continue
        cell = (
            white_cell_px(rgb, cell_size, um_per_px, detector.geo)
            if cell_size or um_per_px
            else detector.estimate_cell_px([rgb])
        )
        det = detector(rgb, cell_size=cell)
        boxes = merge(det, segmentation_boxes(rgb, cell))
        name, label = f"{path.stem}.png", f"{path.stem}.txt"
        for sub in ("images", "labels", "overlays"):  # only once a photograph is readable: no empty label set
            (labset / sub).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(labset / "images" / name), to_bgr(rgb))
        cell_px[name] = cell
        text = yolo_lines(boxes, rgb.shape[1], rgb.shape[0])
        (labset / "labels" / label).write_text(text)
        written[label] = text_sha256(text)  # recorded at once: pre-labels of an interrupted run stay unreviewed
        (labset / PRELABELS).write_text(json.dumps(written, indent=1))
        _write_overlay(labset / "overlays" / f"{path.stem}.jpg", rgb, boxes)
        counts["images"] += 1
        counts["detector_boxes"] += int((boxes.data[SOURCE] == "detector").sum())
        counts["segmentation_boxes"] += int((boxes.data[SOURCE] == "segmentation").sum())
        log(f"{path.name}: {len(det)} detected + {len(boxes) - len(det)} proposed by segmentation")
        _say_if_not_a_smear(rgb, len(det), cell, name, counts, log)
    if counts["images"] == 0:
        if counts["kept"]:  # nothing new: the label set stays exactly as it was
            return counts
        raise ValueError(f"no readable images in {images}")
    (labset / CELL_PX).write_text(json.dumps(cell_px, indent=1))
    write_split(labset)
    (labset / "annotations.coco.json").write_text(json.dumps(to_coco(labset), indent=1))
    (labset / "prelabel.json").write_text(
        json.dumps({"source": str(images), "detector": str(detector.weights), **counts}, indent=2)
    )
    return counts


def check_names(images: Path) -> None:
    """A ``ValueError`` when two photographs of ``images`` would get one label set name (``<stem>.png``: the same
    name but for the extension or case), the second overwriting the first."""
    seen: dict[str, str] = {}
    for path in list_images(images):
        other = seen.setdefault(path.stem.casefold(), path.name)
        if other != path.name:
            raise ValueError(f"{other} and {path.name} would both be labelled as {path.stem}.png: rename one")


def segmentation_boxes(rgb: np.ndarray, cell_px: float) -> sv.Detections:
    """The colour segmentation's cells of ``rgb``, found on a copy at the scale it was tuned on (white cells
    ``TALEQANI_CELL_PX`` wide, the Taleqani fields'), boxes in ``rgb``'s pixels."""
    h, w = rgb.shape[:2]
    small = rescale(rgb, TALEQANI_CELL_PX / cell_px)
    found = colour_boxes(small, TALEQANI_CELL_PX)
    sx, sy = small.shape[1] / w, small.shape[0] / h
    found.xyxy = (found.xyxy / [sx, sy, sx, sy]).clip(0, [w, h, w, h]).astype(np.float32)
    return found


def _by_source(boxes: sv.Detections) -> sv.Detections:
    boxes.class_id = (boxes.data[SOURCE] == "segmentation").astype(int)
    return boxes
