"""Batched, calibrated classification of cell crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import supervision as sv

from classify.calibrate import apply_temperature
from leukoscan.cards import backend_file, read_card
from leukoscan.cells import CLASSES, with_probs
from leukoscan.config import CLASSIFIER_WEIGHTS, SETTINGS
from leukoscan.crops import crop_cells
from leukoscan.images import to_bgr
from leukoscan.runtime import resolve_device


class Classifier:
    def __init__(self, weights: Path = CLASSIFIER_WEIGHTS, device: str = "auto", batch: int = 256, backend: str = "pytorch"):
        from ultralytics import YOLO

        card = read_card(weights)
        weights = backend_file(weights, backend)
        self.model = YOLO(str(weights), task="classify")
        self.weights = Path(weights)
        self.device = resolve_device(device)
        self.batch = batch
        self.stain_reference = card.get("stain_reference")
        self.temperature = float(card.get("temperature", 1.0))
        self.margin = float(card.get("geometry", {}).get("crop_margin", SETTINGS.geometry.crop_margin))
        self.imgsz = int(self.model.overrides.get("imgsz") or card.get("recipe", {}).get("imgsz") or SETTINGS.geometry.crop_px)
        names = self.model.names
        missing = set(CLASSES) - set(names.values())
        if missing:
            raise ValueError(f"classifier {weights} lacks classes {sorted(missing)}")
        self.order = [next(i for i, n in names.items() if n == key) for key in CLASSES]

    def raw_probs(self, crops: np.ndarray) -> np.ndarray:
        """Uncalibrated softmax (N x 4, CLASSES order) for RGB crops, in batches of ``batch``.

        Crops of the model's input size go in as one RGB 0-1 tensor per batch, which is exactly what
        Ultralytics' resize / centre-crop / to-tensor makes of them, without its per-crop PIL round trip."""
        import torch

        out = np.zeros((len(crops), len(CLASSES)), dtype=np.float32)
        for start in range(0, len(crops), self.batch):
            chunk = np.asarray(crops[start : start + self.batch])
            if chunk.shape[1:3] == (self.imgsz, self.imgsz):
                chunk = torch.from_numpy(chunk).permute(0, 3, 1, 2).float().div_(255)
            else:
                chunk = [to_bgr(c) for c in chunk]  # BGR arrays, resized by Ultralytics
            results = self.model.predict(chunk, imgsz=self.imgsz, device=self.device, verbose=False, batch=len(chunk))
            out[start : start + len(chunk)] = np.stack([r.probs.data.cpu().numpy()[self.order] for r in results])
        return out

    def probs(self, crops: np.ndarray) -> np.ndarray:
        return apply_temperature(self.raw_probs(crops), self.temperature) if len(crops) else np.zeros((0, len(CLASSES)), np.float32)

    def crops(self, rgb: np.ndarray, det: sv.Detections) -> np.ndarray:
        """The crops this model sees for ``det`` (the shared crop geometry, with the margin it was trained on)."""
        return crop_cells(rgb, det.xyxy, size=self.imgsz, margin=self.margin)

    def __call__(self, rgb: np.ndarray, det: sv.Detections) -> sv.Detections:
        """Classify the cells of one field; adds ``class_id`` and ``data['probs']`` to ``det``."""
        return with_probs(det, self.probs(self.crops(rgb, det)))
