"""Train, calibrate and evaluate the crop classifier (Ultralytics YOLOv8n-cls built from yaml)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from leukoscan.training import fit


@dataclass
class ClassifierRecipe:
    model: str = "yolov8n-cls.yaml"
    imgsz: int = 64
    epochs: int = 8  # x 23.8k crops: the same number of updates as 15 epochs of the 12k balanced set
    batch: int = 128
    workers: int = 2
    patience: int = 15
    seed: int = 0
    fliplr: float = 0.5
    flipud: float = 0.5
    scale: float = 0.3  # RandomResizedCrop area range (0.7, 1)
    hsv_h: float = 0.05
    hsv_s: float = 0.6
    hsv_v: float = 0.4
    erasing: float = 0.2
    dropout: float = 0.1


@dataclass
class CellRecipe:
    """The cross-lab cell-type classifier's recipe (``classify/augment.py`` adds the lab augmentation)."""

    model: str = "yolov8n-cls.yaml"
    imgsz: int = 64  # model input: the 48 px crops (SETTINGS.geometry.cell_crop_px) upsampled (a multiple of 32)
    epochs: int = 12
    batch: int = 128
    workers: int = 2
    patience: int = 50
    seed: int = 0
    fliplr: float = 0.5
    flipud: float = 0.5
    scale: float = 0.15  # RandomResizedCrop area 0.85-1: little zoom, since a cell's physical size is a cue
    hsv_h: float = 0.0  # colour is jittered by LabAugment (HED + HSV), not by Ultralytics
    hsv_s: float = 0.0
    hsv_v: float = 0.0
    erasing: float = 0.1
    dropout: float = 0.1
    auto_augment: str = ""  # no RandAugment: LabAugment replaces it
    save_period: int = -1  # keep every this many epochs' weights too (epochN.pt; -1: best and last only)


def check_architecture(model: str) -> None:
    """A ``ValueError`` (one line) unless ``model`` is an Ultralytics classification yaml that builds (training
    starts from scratch: no weights can be downloaded)."""
    from ultralytics.nn.modules import Classify

    from leukoscan.runtime import yolo

    if Path(model).suffix not in (".yaml", ".yml"):
        raise ValueError(f"--model {model}: give a model yaml (yolov8n-cls.yaml, yolov8s-cls.yaml, ...), not weights")
    try:
        head = yolo(model, "classify").model.model[-1]
    except FileNotFoundError:
        raise ValueError(f"--model {model}: no such model yaml (yolov8n-cls.yaml, yolov8s-cls.yaml, ...)") from None
    if not isinstance(head, Classify):
        raise ValueError(f"--model {model}: not a classification model (its name ends in -cls.yaml)")


def training_cells(cells: Path, cleaned: Path | None, pseudo: Path | None):
    """The cells a cell-type model learns from: CELLS' table, Taleqani's types from ``cleaned`` when given, and
    with ``pseudo`` (self-training) the teacher's confident calls on unlabelled cells; and those calls alone."""
    import pandas as pd

    from leukoscan.classify.weak import cleaned_types
    from leukoscan.datasets.cells import read_cells

    df = read_cells(cells)
    if cleaned:
        df["type"] = cleaned_types(df, cleaned)
    taught = pd.DataFrame(columns=df.columns)
    if pseudo:
        taught = pd.read_csv(pseudo, keep_default_na=False)
        if missing := set(df.columns) - set(taught.columns):
            raise ValueError(f"{pseudo} has no {sorted(missing)} columns: not a table `classify pseudo-label` wrote")
        taught = taught.assign(weak=False).query("type != ''")[df.columns]
        df = pd.concat([df, taught], ignore_index=True)
        df.attrs["root"] = cells
    return df, taught


def train_cells(
    data: Path,
    project: Path,
    name: str,
    recipe: CellRecipe | None = None,
    device: str = "auto",
    colour: str = "rgb",
    augment=None,
) -> tuple[Path, dict]:
    """Train the cell-type classifier on a ``training_folder`` (``train/``, ``val/``) with crops of ``colour``
    (``rgb``, or ``gray``: ``classify.augment.as_input``) and ``augment`` (default ``LabAugment()``);
    (best.pt, card)."""
    from leukoscan.classify.augment import LabAugment, cell_trainer

    recipe, augment = recipe or CellRecipe(), augment or LabAugment()
    trainer = cell_trainer(augment, colour=colour)
    model, seconds = fit(recipe.model, "classify", data, project, name, recipe, device, trainer=trainer)
    return Path(model.trainer.best), cell_card(recipe, round(seconds, 1), colour, augment)


def cell_card(recipe: CellRecipe, train_seconds: float | None, colour: str = "rgb", augment=None) -> dict:
    """What a cell-type model's card says of its training (its augmentation, default ``LabAugment()``) and
    the colour of its input (``input_colour``, which inference follows)."""
    from leukoscan.classify.augment import LabAugment

    return {
        "recipe": asdict(recipe),
        "augment": asdict(augment or LabAugment()),
        "input_colour": colour,
        "train_seconds": train_seconds,
    }


def train(
    data: Path, project: Path, name: str = "classifier", recipe: ClassifierRecipe | None = None, device: str = "auto"
) -> tuple[Path, dict]:
    recipe = recipe or ClassifierRecipe()
    model, seconds = fit(recipe.model, "classify", data, project, name, recipe, device)
    card = {"recipe": asdict(recipe), "train_seconds": round(seconds, 1)}
    return Path(model.trainer.best), card


def crop_geometry(data: Path) -> dict:
    """The crop geometry a crop dataset was built with (recorded by ``leukoscan data classify``)."""
    import json

    from leukoscan.config import SETTINGS

    summary = data / "summary.json"
    default = {"crop_margin": SETTINGS.geometry.crop_margin, "crop_px": SETTINGS.geometry.crop_px}
    return json.loads(summary.read_text()).get("geometry", default) if summary.exists() else default


def crop_files(folder: Path) -> list[Path]:
    """The crops (PNG or JPEG files) in one class folder, by name."""
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in (".png", ".jpg"))


def folder_crops(folder: Path, classes=None) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """The crops, true labels (indices of ``classes``) and files of every crop in ``folder/<class>/``."""
    from leukoscan.cells import CLASSES, PART
    from leukoscan.images import read_crop

    files, labels = [], []
    for i, key in enumerate(classes or CLASSES):
        for part in (folder / key, *sorted(folder.glob(f"{key}{PART}*"))):  # blast/, blast~munich/, ...
            found = crop_files(part) if part.is_dir() else []
            files += found
            labels += [i] * len(found)
    crops = np.stack([read_crop(f) for f in files]) if files else np.zeros((0, 1, 1, 3), np.uint8)
    return crops, np.array(labels, dtype=int), files


def folder_predictions(classifier, folder: Path, classes=None) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Uncalibrated probabilities (``raw_probs``), true labels and files for every crop in ``folder/<class>/``."""
    crops, labels, files = folder_crops(folder, classes)
    return classifier.raw_probs(crops), labels, files


def sample_crops(folder: Path, n: int = 2000, seed: int = 0) -> np.ndarray:
    """A fixed random sample of RGB crops from ``folder/<class>/`` (all classes together)."""
    from leukoscan.images import read_crop

    files = [f for d in sorted(folder.iterdir()) if d.is_dir() for f in crop_files(d)]
    pick = np.random.default_rng(seed).choice(len(files), size=min(n, len(files)), replace=False)
    return np.stack([read_crop(files[i]) for i in sorted(pick)])


def folder_counts(folder: Path) -> dict[str, int]:
    """Crops per class in ``folder/<class>/`` (a class's parts, ``<class>~<part>/``, counted as the class)."""
    from leukoscan.cells import by_type

    return by_type({d.name: len(crop_files(d)) for d in sorted(folder.iterdir()) if d.is_dir()})


def scores_card(train_counts: dict[str, int], views: int, prior_correction: float, others: float | None = None) -> dict:
    """What a cell-type model's card says of how its probabilities are made (``Classifier.configure_scores``):
    its test-time views, the class prior (each class's share of ``train_counts``) its outputs are divided by, to
    the power ``prior_correction``, and the weaker one (``others``) the types other than blast share what P(blast)
    leaves with (default ``SETTINGS.scores.others_prior_correction``)."""
    from leukoscan.cells import by_type
    from leukoscan.config import SETTINGS

    counts = by_type(train_counts)  # a class's parts (blast~munich) as the class: its share is theirs
    total = sum(counts.values())
    prior = {key: round(n / total, 6) for key, n in sorted(counts.items()) if n}
    others = SETTINGS.scores.others_prior_correction if others is None else others
    correction = {"strength": prior_correction, "others_strength": others, "class_prior": prior}
    return {"test_time_views": views, "prior_correction": correction}


def calibrate_scores(classifier, scores: dict, val_folder: Path) -> dict:
    """Make ``classifier``'s cell-type probabilities as ``scores`` says (``scores_card``), then fit its
    temperature (``calibrate``): what its card says of both."""
    from leukoscan.cells import CELL_TYPES
    from leukoscan.classify.predict import CardScores

    classifier.configure_scores(CardScores.of(scores))
    return scores | calibrate(classifier, val_folder, CELL_TYPES)


def calibrate(classifier, val_folder: Path, classes=None) -> dict:
    """Fit the temperature on the validation split's scores before it (``raw_probs``: one class-prior correction
    for every type, the one P(blast) comes out of), and report the ECE of the probabilities a run gives
    (``probs``, the other types shared out as the card says) at temperature 1 and at the fitted one (the
    classifier keeps it)."""
    from leukoscan.classify.calibrate import correct_prior, ece, fit_temperature

    crops, labels, _ = folder_crops(val_folder, classes)
    plain = classifier.view_probs(crops)  # the model runs once: raw_probs and probs are both made from it
    t = fit_temperature(correct_prior(plain, classifier.prior, classifier.prior_strength), labels)
    errors = []
    for temperature in (1.0, t):
        classifier.temperature = temperature
        errors.append(round(ece(classifier.calibrated(plain), labels), 4))
    return {"temperature": round(t, 4), "val_ece_before": errors[0], "val_ece_after": errors[1]}
