"""One way to run an Ultralytics training: offline-safe arguments, absolute project folder, timed."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from leukoscan.runtime import train_device, yolo


def fit(start: str | Path, task: str, data: Path, project: Path, name: str, recipe, device: str = "auto", **extra):
    """Train from ``start`` (a model yaml: from scratch; or weights: fine-tuning them) with the dataclass
    ``recipe``; return (model, seconds)."""
    model = yolo(start, task)
    args = {k: v for k, v in asdict(recipe).items() if k != "model"}
    # from a yaml nothing may be downloaded (pretrained=False); from weights, pretrained=True keeps them
    # (Ultralytics re-initialises a loaded model when told pretrained=False)
    scratch = Path(str(start)).suffix in (".yaml", ".yml")
    t = time.time()
    model.train(
        data=str(data),
        project=str(Path(project).resolve()),
        name=name,
        exist_ok=True,
        device=train_device(device),
        amp=False,
        plots=False,
        pretrained=not scratch,
        verbose=False,
        **args,
        **extra,
    )
    return model, time.time() - t
