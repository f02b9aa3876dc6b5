"""``leukoscan detect …``: train, validate and run the white-cell detector."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Literal

import typer
from rich.markup import escape

from leukoscan.cli import (
    NOTHING_PROCESSED,
    USAGE_ERROR,
    cell_size_option,
    console,
    device_option,
    fail,
    finite,
    first_names,
    interrupted,
    max_megapixels_option,
    one_line,
    positive,
    report_decision,
    rollback_weights,
    show_json,
    shown_name,
    um_per_px_option,
    user_errors,
)
from leukoscan.config import BUILD_DIR, DETECTOR_WEIGHTS, RUNS, SETTINGS
from leukoscan.detect.train import FINETUNE, DetectorRecipe

app = typer.Typer(
    help="White-cell detector: train, val, predict; retraining on a lab's photographs: prelabel, "
    "import-labels, finetune, promote, rollback.",
    no_args_is_help=True,
)
DATA_YAML = BUILD_DIR / "detect" / "data.yaml"


def data_yaml(path: Path, *splits: str) -> Path:
    """``path`` if it is a YOLO data.yaml that names each of ``splits`` and whose images Ultralytics finds;
    else one error line, exit 2."""
    import yaml

    from leukoscan.runtime import ultralytics

    check_det_dataset = ultralytics("ultralytics.data.utils").check_det_dataset

    try:
        spec = yaml.safe_load(path.read_text())
        if missing := [s for s in splits if not isinstance(spec, dict) or not spec.get(s)]:
            raise ValueError(f"no {missing[0]} split")
        check_det_dataset(str(path), autodownload=False)
    except (OSError, ValueError, SyntaxError, TypeError, yaml.YAMLError) as e:  # what Ultralytics raises for a bad one
        fail(f"{path}: not a usable YOLO data.yaml ({one_line(e)})")
    return path


def _labset(labset: Path) -> Path:
    missing = [name for name in ("images", "labels", "train.txt", "val.txt") if not (labset / name).exists()]
    if missing:
        raise typer.BadParameter(
            f"{labset} is not a label set from `leukoscan detect prelabel` (no {', '.join(missing)})"
        )
    return labset


def labset_argument(help: str) -> Path:
    """``LABSET``, the same argument in every command that takes a label set, checked by typer."""
    return typer.Argument(..., callback=_labset, help=help)


@app.command()
def train(
    data: Path = typer.Option(
        DATA_YAML, exists=True, dir_okay=False, help="YOLO data.yaml (from `leukoscan data detect`)."
    ),
    epochs: int = typer.Option(DetectorRecipe.epochs, min=1, max=1000, help="Training epochs."),
    imgsz: int = typer.Option(DetectorRecipe.imgsz, min=32, help="Training image size."),
    device: str = device_option(),
    project: Path = typer.Option(RUNS / "detect", help="Folder for training runs."),
    name: str = typer.Option("detector", help="Run name."),
    fraction: float = typer.Option(1.0, max=1.0, callback=positive, help="Fraction of the training images to use."),
    ship_to: Path = typer.Option(None, help="Copy best.pt here with a card (e.g. weights/detector.pt)."),
) -> None:
    """Train a YOLOv8n detector from scratch (yolov8n.yaml) with the shipped recipe."""
    from leukoscan.cards import ship
    from leukoscan.datasets.splits import manifest_hash
    from leukoscan.detect.train import DetectorRecipe
    from leukoscan.detect.train import train as run_train

    data_yaml(data, "train", "val")
    recipe = DetectorRecipe(epochs=epochs, imgsz=imgsz)
    best, card = run_train(data, project, name, recipe, device, fraction=fraction)
    show_json(card)
    if ship_to:
        manifest = Path(data).parent / "manifest.csv"
        card["data"] = {
            "data_yaml": str(data),
            "split": "all-taleqani contiguous blocks (manifest) + txl-pbc official split",
            "manifest_sha256": manifest_hash(manifest) if manifest.exists() else None,
            "counts": json.loads((Path(data).parent / "summary.json").read_text()).get("counts")
            if (Path(data).parent / "summary.json").exists()
            else None,
        }
        ship(best, ship_to, card)
        console.print(f"shipped {escape(str(ship_to))}", soft_wrap=True)


@app.command()
def val(
    data: Path = typer.Option(DATA_YAML, exists=True, dir_okay=False, help="YOLO data.yaml."),
    weights: Path = typer.Option(DETECTOR_WEIGHTS, help="Detector weights."),
    split: Literal["val", "test"] = typer.Option("val", help="Dataset split."),
    imgsz: int = typer.Option(DetectorRecipe.imgsz, min=32, help="Validation image size."),
    device: str = device_option(),
) -> None:
    """Ultralytics validation metrics (precision, recall, mAP50, mAP50-95) on a split."""
    from leukoscan.cards import load_model
    from leukoscan.detect.score import model_metrics

    data_yaml(data, split)
    with user_errors():
        model = load_model(weights, "detect")
    metrics = model_metrics(model, data, split, imgsz, device, RUNS / "val", "detect")
    show_json({k: round(float(v), 4) for k, v in metrics.results_dict.items()})


@app.command()
def predict(
    images: list[Path] = typer.Argument(..., exists=True, help="Image files or folders."),
    out: Path = typer.Option(Path("detections"), "--out", "-o", help="Output folder (boxes.csv and overlays)."),
    weights: Path = typer.Option(DETECTOR_WEIGHTS, help="Detector weights."),
    device: str = device_option(),
    conf: float = typer.Option(
        SETTINGS.detection.conf, callback=finite, min=0.0, max=1.0, help="Confidence threshold."
    ),
    cell_size: float = cell_size_option(),
    um_per_px: float = um_per_px_option(),
    max_megapixels: float = max_megapixels_option(),
) -> None:
    """Detect white cells; write boxes.csv (one row per cell), images.csv (one row per image: its overlay, its
    number of cells, or why it was skipped) and an overlay per image."""
    import pandas as pd
    import supervision as sv

    from leukoscan import outputs
    from leukoscan.cli import track
    from leukoscan.detect.predict import Detector
    from leukoscan.images import ImageError, expand_images, load_rgb, output_stems, to_bgr

    with user_errors():
        outputs.out_folder(out)
        files = expand_images(images)
        detector = Detector(weights, device, settings=replace(SETTINGS.detection, conf=conf))
    rows, images_read, stems = [], [], output_stems(files)
    with user_errors(NOTHING_PROCESSED):  # a folder in the way, no permission, a full disk: one line
        for path in track(files, "detecting"):
            try:
                rgb = load_rgb(path, max_megapixels)
            except ImageError as e:
                console.print(f"[yellow]skipped[/] {escape(shown_name(path))}: {escape(str(e))}", soft_wrap=True)
                images_read.append({"image": str(path), "status": "error", "error": str(e)})
                continue
            det = detector(rgb, cell_size, um_per_px)
            rows += [
                {"image": str(path), "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3], "conf": c}
                for b, c in zip(det.xyxy.round(1), det.confidence.round(4))
            ]
            scene = sv.BoxAnnotator(
                color=sv.Color.from_hex("#D55E00"),
                thickness=max(1, max(rgb.shape[:2]) // 500),
                color_lookup=sv.ColorLookup.INDEX,
            ).annotate(to_bgr(rgb), det)
            overlay = outputs.write_jpeg(out / f"{stems[path]}.jpg", scene)
            images_read.append({"image": str(path), "status": "ok", "n_cells": len(det), "overlay": overlay.name})
            console.print(f"{escape(shown_name(path.name))}: {len(det)} white cells", soft_wrap=True)
        outputs.write_csv(out / "boxes.csv", pd.DataFrame(rows, columns=["image", "x1", "y1", "x2", "y2", "conf"]))
        columns = ["image", "status", "error", "n_cells", "overlay"]
        outputs.write_csv(out / "images.csv", pd.DataFrame(images_read, columns=columns).astype({"n_cells": "Int64"}))
    if not any(r["status"] == "ok" for r in images_read):
        fail("no image could be processed (each is listed above with why)", NOTHING_PROCESSED)


@app.command()
def prelabel(
    images: Path = typer.Argument(..., exists=True, file_okay=False, help="Folder of the lab's new photographs."),
    out: Path = typer.Option(..., "--out", "-o", help="Label set folder to write (YOLO + COCO + overlays)."),
    weights: Path = typer.Option(DETECTOR_WEIGHTS, help="Current detector weights."),
    device: str = device_option(),
    cell_size: float = cell_size_option(),
    um_per_px: float = um_per_px_option(),
    max_megapixels: float = max_megapixels_option(),
) -> None:
    """Step 1: boxes from the detector merged with colour-segmentation proposals, for review."""
    from leukoscan.detect.predict import Detector
    from leukoscan.detect.prelabel import check_names
    from leukoscan.detect.prelabel import prelabel as run_prelabel
    from leukoscan.images import expand_images, pixel_limit

    with user_errors():
        expand_images([images])  # a folder without images is refused before the detector loads
        check_names(images)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file, not a label set folder")
        detector = Detector(weights, device)
    with user_errors(NOTHING_PROCESSED), pixel_limit(max_megapixels):  # e.g. no image could be read
        counts = run_prelabel(
            detector, images, out, cell_size, um_per_px, log=lambda m: console.print(m, soft_wrap=True, markup=False)
        )
    show_json(counts)
    console.print(
        f"review {escape(str(out / 'annotations.coco.json'))} (COCO: CVAT, Label Studio) "
        f"or {escape(str(out / 'labels'))} (YOLO)",
        soft_wrap=True,
    )


@app.command("import-labels")
def import_labels(
    labset: Path = labset_argument("Label set folder from `prelabel`."),
    source: Path = typer.Argument(
        ..., exists=True, help="Corrected labels: a COCO .json file or a folder of YOLO .txt files."
    ),
) -> None:
    """Step 2: bring corrected boxes back, validated (nothing is written if anything is wrong)."""
    from leukoscan.detect.labels import LabelError
    from leukoscan.detect.labels import import_labels as run_import

    try:
        report = run_import(labset, source)
    except LabelError as e:
        for p in e.problems:
            console.print(f"[red]problem:[/] {escape(p)}", soft_wrap=True)
        fail(f"{len(e.problems)} problem(s) in {source} (listed above); no labels were changed", USAGE_ERROR)
    show_json(report)


@app.command()
def finetune(
    labset: Path = labset_argument("Reviewed label set folder."),
    start: Path = typer.Option(DETECTOR_WEIGHTS, "--from", help="Weights to start from."),
    out: Path = typer.Option(
        Path("runs/finetune"),
        "--out",
        "-o",
        help="Folder for the candidate weights and recipe.",
    ),
    replay: Path = typer.Option(BUILD_DIR / "detect" / "images" / "train", help="Original training images to mix in."),
    replay_n: int = typer.Option(200, min=0, help="How many original training images to replay."),
    epochs: int = typer.Option(FINETUNE.epochs, min=1, max=1000, help="Fine-tuning epochs."),
    overwrite: bool = typer.Option(False, help="Replace a candidate already in --out (else refused)."),
    device: str = device_option(),
) -> None:
    """Step 3: fine-tune from the current weights on the lab's images plus a replay sample."""
    from dataclasses import replace

    from leukoscan import outputs
    from leukoscan.cards import load_model
    from leukoscan.detect.labels import read_list, unreviewed
    from leukoscan.detect.registry import finetune as run_finetune

    with user_errors():
        load_model(start, "detect")
        if replay_n and not any(replay.glob("*.jpg")):  # the README's "+ replayed original images" would be none
            raise ValueError(
                f"no replay images (*.jpg) in {replay}: point --replay at the detector's training images "
                "(`leukoscan data detect` builds them) or fine-tune without them (--replay-n 0)"
            )
        outputs.out_folder(out)
        if (out / "candidate.pt").exists() and not overwrite:  # it may be promoted, or named in the registry
            raise ValueError(
                f"{out / 'candidate.pt'} exists: promote or move it, or give another --out (or --overwrite)"
            )
        lab = [*read_list(labset / "train.txt"), *read_list(labset / "val.txt")]
        if raw := unreviewed(labset, lab):
            console.print(
                f"[yellow]warning:[/] {len(raw)} of {len(lab)} photographs still hold their pre-labels as "
                f"`detect prelabel` wrote them ({escape(first_names(raw, 5))}): trained on "
                "unreviewed, the detector learns its own mistakes; review them and `leukoscan detect import-labels` "
                "first (README, step 2)",
                soft_wrap=True,
            )
        try:
            candidate = run_finetune(labset, start, replay, out, replace(FINETUNE, epochs=epochs), replay_n, device)
        except KeyboardInterrupt:
            interrupted(
                f"no new candidate written; the unfinished training is in {out / 'runs'} (run the command again, "
                "with --overwrite if a candidate was there)"
            )
    console.print(
        f"candidate: {escape(str(candidate))}  (recipe: {escape(str(candidate.with_suffix('.json')))})", soft_wrap=True
    )


@app.command()
def promote(
    labset: Path = labset_argument("Label set whose held-out images (val.txt) score the lab."),
    candidate: Path = typer.Argument(..., help="Candidate weights from `finetune`."),
    current: Path = typer.Option(DETECTOR_WEIGHTS, help="Current detector weights (replaced only if better)."),
    regression: Path = typer.Option(
        DATA_YAML, exists=True, dir_okay=False, help="Frozen regression set: data.yaml whose test split is used."
    ),
    tolerance: float = typer.Option(0.02, callback=finite, min=0.0, help="Largest allowed drop of regression mAP50."),
    device: str = device_option(),
) -> None:
    """Step 4: promote the candidate only if the lab improves and the regression set holds."""
    from leukoscan.cards import load_model
    from leukoscan.detect.labels import tile_labset
    from leukoscan.detect.registry import promote as run_promote
    from leukoscan.detect.registry import read_registry

    data_yaml(regression, "test")
    with user_errors():
        for weights in (candidate, current):
            load_model(weights, "detect")
        read_registry(current)  # before the scoring, not after it
        lab = tile_labset(labset)
        result = run_promote(candidate, current, regression, lab, tolerance, device=device)
    report_decision(result)


@app.command()
def rollback(
    sha: str = typer.Argument(..., help="sha256 (or its first 6 or more characters) of an archived detector."),
    current: Path = typer.Option(DETECTOR_WEIGHTS, help="Detector weights to restore into."),
) -> None:
    """Restore an earlier detector from weights/archive (see weights/registry.json)."""
    rollback_weights(current, "detector", sha)
