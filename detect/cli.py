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


@app.command()
def predict(
    images: list[Path] = typer.Argument(..., help="Image files or folders."),
    out: Path = typer.Option(Path("detections"), help="Output folder (boxes.csv and overlays)."),
    weights: Path = typer.Option(DETECTOR_WEIGHTS, help="Detector weights."),
    device: str = typer.Option("auto", help="auto, cpu or cuda:N."),
    conf: float = typer.Option(0.25, help="Confidence threshold."),
    cell_size: float = typer.Option(None, help="White-cell diameter in pixels (default: estimated)."),
    um_per_px: float = typer.Option(None, help="Micrometres per pixel."),
) -> None:
    """Detect white cells; write boxes.csv and an overlay per image."""
    import pandas as pd
    import supervision as sv

    from detect.predict import Detector
    from leukoscan import outputs
    from leukoscan.images import ImageError, expand_images, load_rgb, to_bgr
    from leukoscan.progress import track

    files = expand_images(images)
    detector = Detector(weights, device, conf=conf)
    rows = []
    for path in track(files, "detecting"):
        try:
            rgb = load_rgb(path)
        except ImageError as e:
            console.print(f"[yellow]skipped[/] {path}: {e}", soft_wrap=True)
            continue
        det = detector(rgb, cell_size, um_per_px)
        rows += [{"image": str(path), "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3], "conf": c}
                 for b, c in zip(det.xyxy.round(1), det.confidence.round(4))]
        scene = sv.BoxAnnotator(color=sv.Color.from_hex("#D55E00"), thickness=max(1, max(rgb.shape[:2]) // 500),
                                color_lookup=sv.ColorLookup.INDEX).annotate(to_bgr(rgb), det)
        outputs.write_jpeg(out / f"{path.stem}.jpg", scene)
        console.print(f"{path.name}: {len(det)} white cells", soft_wrap=True)
    outputs.write_csv(out / "boxes.csv", pd.DataFrame(rows, columns=["image", "x1", "y1", "x2", "y2", "conf"]))


@app.command()
def prelabel(
    images: Path = typer.Argument(..., help="Folder of the lab's new photographs."),
    out: Path = typer.Option(..., "--out", help="Label set folder to write (YOLO + COCO + overlays)."),
    weights: Path = typer.Option(DETECTOR_WEIGHTS, help="Current detector weights."),
    device: str = typer.Option("auto", help="auto, cpu or cuda:N."),
    cell_size: float = typer.Option(None, help="White-cell diameter in pixels (default: estimated)."),
    um_per_px: float = typer.Option(None, help="Micrometres per pixel."),
) -> None:
    """Step 1: boxes from the detector merged with colour-segmentation proposals, for review."""
    from detect.predict import Detector
    from detect.prelabel import prelabel as run_prelabel

    counts = run_prelabel(Detector(weights, device), images, out, cell_size, um_per_px,
                          log=lambda m: console.print(m, soft_wrap=True, markup=False))
    console.print(json.dumps(counts, indent=2))
    console.print(f"review {out / 'annotations.coco.json'} (COCO: CVAT, Label Studio) or {out / 'labels'} (YOLO)")


@app.command("import-labels")
def import_labels(
    labset: Path = typer.Argument(..., help="Label set folder from `prelabel`."),
    source: Path = typer.Argument(..., help="Corrected labels: a COCO .json file or a folder of YOLO .txt files."),
) -> None:
    """Step 2: bring corrected boxes back, validated (nothing is written if anything is wrong)."""
    from detect.labels import LabelError
    from detect.labels import import_labels as run_import

    try:
        report = run_import(labset, source)
    except LabelError as e:
        for p in e.problems:
            console.print(f"[red]problem:[/] {p}", soft_wrap=True, markup=False)
        console.print(f"[red]error:[/] {len(e.problems)} problem(s); no labels were changed")
        raise typer.Exit(1)
    console.print(json.dumps(report, indent=2))


@app.command()
def finetune(
    labset: Path = typer.Argument(..., help="Reviewed label set folder."),
    start: Path = typer.Option(DETECTOR_WEIGHTS, "--from", help="Weights to start from."),
    out: Path = typer.Option(RUNS / "finetune", help="Folder for the candidate weights and recipe."),
    replay: Path = typer.Option(BUILD_DIR / "detect" / "images" / "train", help="Original training images to mix in."),
    replay_n: int = typer.Option(200, help="How many original training images to replay."),
    epochs: int = typer.Option(10, help="Fine-tuning epochs."),
    device: str = typer.Option("auto", help="auto, cpu or cuda:N."),
) -> None:
    """Step 3: fine-tune from the current weights on the lab's images plus a replay sample."""
    from dataclasses import replace

    from detect.registry import FINETUNE
    from detect.registry import finetune as run_finetune

    candidate = run_finetune(labset, start, replay, out, replace(FINETUNE, epochs=epochs), replay_n, device)
    console.print(f"candidate: {candidate}  (recipe: {candidate.with_suffix('.json')})")


@app.command()
def promote(
    candidate: Path = typer.Argument(..., help="Candidate weights from `finetune`."),
    labset: Path = typer.Option(..., help="Label set whose held-out images (val.txt) score the lab."),
    current: Path = typer.Option(DETECTOR_WEIGHTS, help="Current detector weights (replaced only if better)."),
    regression: Path = typer.Option(DATA_YAML, help="Frozen regression set: data.yaml whose test split is used."),
    tolerance: float = typer.Option(0.02, help="Largest allowed drop of regression mAP50."),
    device: str = typer.Option("auto", help="auto, cpu or cuda:N."),
) -> None:
    """Step 4: promote the candidate only if the lab improves and the regression set holds."""
    from detect.labels import tile_labset
    from detect.registry import promote as run_promote

    result = run_promote(candidate, current, regression, tile_labset(labset), tolerance, device=device)
    console.print(json.dumps(result, indent=2))
    console.print(("[green]promoted[/]" if result["promoted"] else "[yellow]rejected[/]") + f": {result['reason']}")


@app.command()
def rollback(
    sha: str = typer.Argument(..., help="sha256 (or its first 12 characters) of an archived detector."),
    current: Path = typer.Option(DETECTOR_WEIGHTS, help="Detector weights to restore into."),
) -> None:
    """Restore an earlier detector from weights/archive (see weights/registry.json)."""
    from detect.registry import rollback as run_rollback

    try:
        run_rollback(current, sha)
    except FileNotFoundError as e:
        console.print(f"[red]error:[/] {e}", soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"restored {sha[:12]} as {current}")
