"""``leukoscan detect …``: train, validate and run the white-cell detector."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from leukoscan.config import BUILD_DIR, DETECTOR_WEIGHTS, REPO_ROOT
from leukoscan.progress import console

app = typer.Typer(help="White-cell detector: train, val, predict.", no_args_is_help=True)
DATA_YAML = BUILD_DIR / "detect" / "data.yaml"
RUNS = REPO_ROOT / "runs"


@app.command()
def train(
    data: Path = typer.Option(DATA_YAML, help="YOLO data.yaml (from `leukoscan data detect`)."),
    epochs: int = typer.Option(16, help="Training epochs."),
    imgsz: int = typer.Option(320, help="Training image size."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda:N."),
    project: Path = typer.Option(RUNS / "detect", help="Folder for training runs."),
    name: str = typer.Option("detector", help="Run name."),
    fraction: float = typer.Option(1.0, help="Fraction of the training images to use."),
    ship_to: Path = typer.Option(None, help="Copy best.pt here with a card (e.g. weights/detector.pt)."),
) -> None:
    """Train a YOLOv8n detector from scratch (yolov8n.yaml) with the shipped recipe."""
    from detect.train import DetectorRecipe
    from detect.train import train as run_train
    from leukoscan.cards import ship
    from datasets.splits import manifest_hash

    recipe = DetectorRecipe(epochs=epochs, imgsz=imgsz)
    best, card = run_train(data, project, name, recipe, device, fraction=fraction)
    console.print(json.dumps(card, indent=2))
    if ship_to:
        manifest = Path(data).parent / "manifest.csv"
        card["data"] = {
            "data_yaml": str(data), "split": "all-taleqani contiguous blocks (manifest) + txl-pbc official split",
            "manifest_sha256": manifest_hash(manifest) if manifest.exists() else None,
            "counts": json.loads((Path(data).parent / "summary.json").read_text()).get("counts")
            if (Path(data).parent / "summary.json").exists() else None,
        }
        ship(best, ship_to, card)
        console.print(f"shipped {ship_to}")


@app.command()
def val(
    data: Path = typer.Option(DATA_YAML, help="YOLO data.yaml."),
    weights: Path = typer.Option(DETECTOR_WEIGHTS, help="Detector weights."),
    split: str = typer.Option("val", help="Dataset split: val or test."),
    imgsz: int = typer.Option(320, help="Validation image size."),
    device: str = typer.Option("auto", help="auto, cpu or cuda:N."),
) -> None:
    """Ultralytics validation metrics (precision, recall, mAP50, mAP50-95) on a split."""
    from ultralytics import YOLO

    from leukoscan.runtime import train_device

    metrics = YOLO(str(weights), task="detect").val(
        data=str(data), split=split, imgsz=imgsz, device=train_device(device), plots=False, verbose=False,
        project=str(RUNS / "val"), name="detect", exist_ok=True,
    )
    console.print(json.dumps({k: round(float(v), 4) for k, v in metrics.results_dict.items()}, indent=2))
