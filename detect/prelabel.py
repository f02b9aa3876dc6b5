"""Pre-label a lab's new photographs: detector boxes merged with the colour segmentation's proposals."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from datasets.build import yolo_lines
from datasets.segment import TALEQANI_CELL_PX, colour_boxes
from detect.labels import to_coco, write_split
from detect.scale import white_cell_px
from leukoscan import outputs
from leukoscan.cells import cells
from leukoscan.images import ImageError, list_images, load_rgb, rescale, to_bgr


def merge(detected: sv.Detections, proposed: sv.Detections, iou: float = 0.3) -> sv.Detections:
    """Detector boxes plus every segmentation proposal that no detector box already covers."""
    if len(proposed) and len(detected):
        keep = sv.box_iou_batch(proposed.xyxy, detected.xyxy).max(axis=1) < iou
        proposed = proposed[keep]
    conf = np.concatenate([detected.confidence if detected.confidence is not None else np.ones(len(detected)),
                           np.zeros(len(proposed))])
    merged = cells(np.concatenate([detected.xyxy, proposed.xyxy]), conf)
    merged.data["source"] = np.array(["detector"] * len(detected) + ["segmentation"] * len(proposed))
    return merged


def prelabel(detector, images: Path, labset: Path, cell_size: float | None = None, um_per_px: float | None = None,
             log=print) -> dict:
    """Write a YOLO + COCO label set from ``images`` (copies resized to the detector's training scale)."""
    for sub in ("images", "labels", "overlays"):
        (labset / sub).mkdir(parents=True, exist_ok=True)
    counts = {"images": 0, "detector_boxes": 0, "segmentation_boxes": 0, "skipped": []}
    for path in list_images(images):
        try:
            rgb = load_rgb(path)
        except ImageError as e:
            counts["skipped"].append(f"{path.name}: {e}")
            log(f"skipped {path.name}: {e}")
            continue
        # the training scale: white cells ~27 px (Taleqani fields), what the detector learnt from
        cell = (white_cell_px(rgb, cell_size, um_per_px, detector.geo) if cell_size or um_per_px
                else detector.estimate_cell_px([rgb]))
        s = TALEQANI_CELL_PX / cell
        small = rescale(rgb, s)
        det = detector(small, cell_size=TALEQANI_CELL_PX)
        boxes = merge(det, colour_boxes(small, TALEQANI_CELL_PX))
        name = f"{path.stem}.png"
        cv2.imwrite(str(labset / "images" / name), to_bgr(small))
        (labset / "labels" / f"{path.stem}.txt").write_text(yolo_lines(boxes, small.shape[1], small.shape[0]))
        scene = sv.BoxAnnotator(color=sv.ColorPalette.from_hex(["#D55E00", "#0072B2"]), thickness=1).annotate(
            to_bgr(small), _by_source(boxes))
        outputs.write_jpeg(labset / "overlays" / f"{path.stem}.jpg", scene)
        counts["images"] += 1
        counts["detector_boxes"] += int((boxes.data["source"] == "detector").sum())
        counts["segmentation_boxes"] += int((boxes.data["source"] == "segmentation").sum())
        log(f"{path.name}: {len(det)} detected + {len(boxes) - len(det)} proposed by segmentation")
    if counts["images"] == 0:
        raise ValueError(f"no readable images in {images}")
    write_split(labset)
    (labset / "annotations.coco.json").write_text(json.dumps(to_coco(labset), indent=1))
    (labset / "prelabel.json").write_text(json.dumps({"source": str(images), "detector": str(detector.weights), **counts}, indent=2))
    return counts


def _by_source(boxes: sv.Detections) -> sv.Detections:
    boxes.class_id = (boxes.data["source"] == "segmentation").astype(int)
    return boxes
