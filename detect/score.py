"""How well the detector, run as the pipeline runs it, agrees with YOLO labels (matches at IoU 0.5)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import supervision as sv

from leukoscan.datasets.build import read_yolo
from leukoscan.datasets.segment import agreement
from leukoscan.images import ImageError, load_rgb
from leukoscan.runtime import train_device


def model_metrics(model, data: Path, split: str, imgsz: int, device: str, project: Path, name: str):
    """Ultralytics' own validation of a detector ``model`` on a split of the YOLO ``data`` yaml (mAP over all
    confidences; no plots), its files under ``project/name``: the metrics object."""
    return model.val(
        data=str(data),
        split=split,
        imgsz=imgsz,
        device=train_device(device),
        plots=False,
        verbose=False,
        project=str(project),
        name=name,
        exist_ok=True,
    )


@dataclass
class Score:
    tp: int = 0
    n_pred: int = 0
    n_true: int = 0
    detections: list[sv.Detections] = field(default_factory=list)
    truths: list[sv.Detections] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # fields left out, each "path: why" (as Ultralytics' val does)

    @property
    def recall(self) -> float:
        return self.tp / max(self.n_true, 1)

    @property
    def precision(self) -> float:
        return self.tp / max(self.n_pred, 1)


def score_fields(detector, images: list[Path], labels: list[Path], cell_px: float, batch: int = 32) -> Score:
    """Detect ``images`` (``batch`` fields per pass, at white-cell size ``cell_px``) and match each one's
    cells against its YOLO ``labels`` file at IoU 0.5. A field that cannot be read (a link to nowhere, a corrupt
    file) is left out and named in ``Score.unreadable``, as Ultralytics' val leaves it out of the mAP."""
    score = Score()
    for start in range(0, len(images), batch):
        fields, field_labels = [], []
        for path, label in zip(images[start : start + batch], labels[start : start + batch]):
            try:
                fields.append(load_rgb(path))
                field_labels.append(label)
            except ImageError as e:
                score.unreadable.append(f"{path}: {e}")
        for rgb, det, label in zip(fields, detector.detect(fields, cell_px) if fields else [], field_labels):
            truth = read_yolo(Path(label), rgb.shape[1], rgb.shape[0])
            tp, n_pred, n_true = agreement(det, truth, 0.5)
            score.tp, score.n_pred, score.n_true = score.tp + tp, score.n_pred + n_pred, score.n_true + n_true
            score.detections.append(det)
            score.truths.append(truth)
    return score
