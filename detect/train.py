"""Train or validate the white-cell detector (Ultralytics YOLOv8n built from yaml; nothing is downloaded)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from leukoscan.training import fit


@dataclass
class DetectorRecipe:
    """The shipped detector's training recipe (sized for ~1.5 h on 2 CPU cores)."""

    model: str = "yolov8n.yaml"
    imgsz: int = 320
    epochs: int = 16
    batch: int = 32
    workers: int = 2
    patience: int = 10
    seed: int = 0
    # smears have no up or down; stain colour differs between labs
    fliplr: float = 0.5
    flipud: float = 0.5
    degrees: float = 15.0
    scale: float = 0.5
    translate: float = 0.1
    mosaic: float = 1.0
    close_mosaic: int = 3
    hsv_h: float = 0.05
    hsv_s: float = 0.7
    hsv_v: float = 0.4


# fine-tuning on a lab's photographs (`detect finetune`): from the current weights, shorter, milder mosaic
FINETUNE = replace(DetectorRecipe(), epochs=10, patience=10, mosaic=0.5, close_mosaic=2)


def train(
    data_yaml: Path,
    project: Path,
    name: str = "detector",
    recipe: DetectorRecipe | None = None,
    device: str = "auto",
    weights: Path | None = None,
    fraction: float = 1.0,
) -> tuple[Path, dict]:
    """Train; returns (best.pt path, card dict with recipe, time and final validation metrics)."""
    recipe = recipe or DetectorRecipe()
    model, seconds = fit(weights or recipe.model, "detect", data_yaml, project, name, recipe, device, fraction=fraction)
    best = Path(model.trainer.best)
    metrics = {k.replace("metrics/", ""): round(float(v), 4) for k, v in model.trainer.metrics.items()}
    card = {"recipe": asdict(recipe), "train_seconds": round(seconds, 1), "val_metrics": metrics}
    (best.parent / "card.json").write_text(json.dumps(card, indent=2))
    return best, card
