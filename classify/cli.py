"""``leukoscan classify …``: train, calibrate, validate and run the crop classifier."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from classify.train import ClassifierRecipe
from leukoscan.config import BUILD_DIR, CLASSIFIER_WEIGHTS, REPO_ROOT
from leukoscan.progress import console

app = typer.Typer(help="Cell-crop classifier: train, val, predict.", no_args_is_help=True)
CROPS = BUILD_DIR / "classify"
RUNS = REPO_ROOT / "runs"


@app.command()
def train(
    data: Path = typer.Option(CROPS, help="Crop dataset folder (from `leukoscan data classify`)."),
    epochs: int = typer.Option(ClassifierRecipe.epochs, help="Training epochs."),
    imgsz: int = typer.Option(64, help="Crop size the model sees."),
    balance: bool = typer.Option(False, help="Balance classes: subsample large ones, fill small ones with stain-jittered "
                                 "copies (measured: worse than all the crops as they are; see README)."),
    per_class: int = typer.Option(3000, help="Training crops per class after balancing."),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu or cuda:N."),
    project: Path = typer.Option(RUNS / "classify", help="Folder for training runs."),
    name: str = typer.Option("classifier", help="Run name."),
    ship_to: Path = typer.Option(None, help="Copy best.pt here with a card (e.g. weights/classifier.pt)."),
) -> None:
    """Train YOLOv8n-cls from scratch, fit a temperature on val, and optionally ship the weights."""
    from classify.dataset import balance as make_balanced
    from classify.predict import Classifier
    from classify.stain import stain_reference
    from classify.train import calibrate, crop_geometry, sample_crops
    from classify.train import train as run_train
    from datasets.splits import manifest_hash
    from leukoscan.cards import ship

    train_data = data
    counts = None
    if balance:
        train_data = Path(str(data) + "_balanced")
        counts = make_balanced(data, train_data, per_class)
        console.print(f"balanced training set: {counts}")
    best, card = run_train(train_data, project, name, ClassifierRecipe(epochs=epochs, imgsz=imgsz), device)
    calib = calibrate(Classifier(best, device), data / "val")
    card.update(calib)
    card["stain_reference"] = stain_reference(sample_crops(data / "train"))
    card["classes"] = ["Benign", "Early Pre-B", "Pre-B", "Pro-B"]
    card["balanced_train_counts"] = counts
    card["geometry"] = crop_geometry(data)
    manifest = data / "manifest.csv"
    card["data"] = {
        "folder": str(data), "split": "all-taleqani contiguous blocks (manifest)",
        "manifest_sha256": manifest_hash(manifest) if manifest.exists() else None,
    }
    best.with_suffix(".json").write_text(json.dumps(card, indent=2))  # read_card finds it beside best.pt
    console.print(json.dumps(card, indent=2))
    if ship_to:
        ship(best, ship_to, card)
        console.print(f"shipped {ship_to}")


@app.command()
def val(
    data: Path = typer.Option(CROPS, help="Crop dataset folder."),
    split: str = typer.Option("val", help="Split: val or test."),
    weights: Path = typer.Option(CLASSIFIER_WEIGHTS, help="Classifier weights."),
    device: str = typer.Option("auto", help="auto, cpu or cuda:N."),
) -> None:
    """Accuracy, macro-F1, per-class recall and ECE (calibrated) on a split of the crop dataset."""
    from classify.calibrate import apply_temperature, ece
    from classify.predict import Classifier
    from classify.train import folder_predictions

    clf = Classifier(weights, device)
    raw, labels, _ = folder_predictions(clf, data / split)
    probs = apply_temperature(raw, clf.temperature)
    pred = probs.argmax(1)
    recall = {k: round(float((pred[labels == i] == i).mean()), 4) for i, k in enumerate(clf.model.names.values()) if (labels == i).any()}
    console.print(json.dumps({"split": split, "n": int(len(labels)), "accuracy": round(float((pred == labels).mean()), 4),
                              "recall": recall, "ece": round(ece(probs, labels), 4)}, indent=2))


@app.command()
def predict(
    crops: list[Path] = typer.Argument(..., help="Crop images or folders of crops."),
    weights: Path = typer.Option(CLASSIFIER_WEIGHTS, help="Classifier weights."),
    device: str = typer.Option("auto", help="auto, cpu or cuda:N."),
    out: Path = typer.Option(Path("predictions.csv"), help="CSV of calibrated probabilities."),
) -> None:
    """Classify ready-made cell crops (batched) and write their calibrated probabilities."""
    import cv2
    import numpy as np
    import pandas as pd

    from classify.predict import Classifier
    from leukoscan import outputs
    from leukoscan.cells import LABELS
    from leukoscan.images import ImageError, expand_images, load_rgb

    files = expand_images(crops)
    clf = Classifier(weights, device)
    good, arrays = [], []
    for f in files:
        try:
            arrays.append(cv2.resize(load_rgb(f), (clf.imgsz, clf.imgsz), interpolation=cv2.INTER_AREA))
            good.append(f)
        except ImageError as e:
            console.print(f"[yellow]skipped[/] {f}: {e}", soft_wrap=True)
    probs = clf.probs(np.stack(arrays)) if arrays else np.zeros((0, 4))
    df = pd.DataFrame(probs, columns=[f"p_{k}" for k in ("benign", "early_pre_b", "pre_b", "pro_b")])
    df.insert(0, "label", [LABELS[i] for i in probs.argmax(1)] if len(probs) else [])
    df.insert(0, "crop", [str(f) for f in good])
    outputs.write_csv(out, df)
    console.print(f"{len(df)} crops classified -> {out}")
