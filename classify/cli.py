"""``leukoscan classify …``: train, calibrate, validate and run the crop classifier."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import typer
from rich.markup import escape

from leukoscan.classify.finetune import FinetuneRecipe
from leukoscan.classify.train import CellRecipe, ClassifierRecipe, check_architecture, training_cells
from leukoscan.cli import (
    NOTHING_PROCESSED,
    USAGE_ERROR,
    console,
    device_option,
    error,
    fail,
    finite,
    interrupted,
    max_megapixels_option,
    one_line,
    report_decision,
    rollback_weights,
    show_json,
    shown_name,
    user_errors,
)
from leukoscan.config import (
    BUILD_DIR,
    CLASSIFIER_WEIGHTS,
    DATA_ROOT,
    RUNS,
    SETTINGS,
    SUBTYPE_WEIGHTS,
    TEST_TIME_VIEWS,
    Colour,
)
from leukoscan.locks import exclusive

app = typer.Typer(
    help="Cell classifiers: train-cells, calibrate, clean, pseudo-label, val, predict, lab-cells, finetune, promote, "
    "rollback (cell types); train (blast subtype).",
    no_args_is_help=True,
)
CROPS = BUILD_DIR / "classify"


def _views(value: int) -> int:
    if value not in TEST_TIME_VIEWS:
        raise typer.BadParameter(f"{value} is not 1, 2, 4 or 8")
    return value


def views_option():
    """``--test-time-views``: how many rotations and mirror images of each crop the model's card asks for."""
    return typer.Option(
        SETTINGS.scores.test_time_views,
        callback=_views,
        help="Rotations and mirror images of each crop whose probabilities are averaged at run time (1, 2, 4, 8).",
    )


def prior_option(others: bool = False):
    """``--prior-correction``: the strength of the class-prior correction the model's card asks for (P(blast)
    comes out of it); ``others``: ``--others-prior-correction``, the one the other types share the rest with."""
    default, help = (
        (
            SETTINGS.scores.others_prior_correction,
            "The other types than blast share what P(blast) leaves in proportions corrected to this power (0: the "
            "model's own; the same as --prior-correction: one correction for every type, as before 2026-12-06).",
        )
        if others
        else (
            SETTINGS.scores.prior_correction,
            "Divide each type's probability by its share of the training crops to this power (0: off; 1: as if "
            "every type were equally common).",
        )
    )
    return typer.Option(default, callback=finite, min=0.0, help=help)


def cell_type_model(weights: Path, device: str):
    """The cell-type model in ``weights`` for calibrate, clean and pseudo-label (a model trained without some types
    is accepted: their probability is 0); a ``WeightsError`` for a model of other classes (the subtype model's)."""
    from leukoscan.cards import WeightsError
    from leukoscan.cells import CELL_TYPES, type_of
    from leukoscan.classify.predict import CellClassifier

    clf = CellClassifier(weights, device, strict=False)
    if foreign := sorted({type_of(n) for n in clf.model.names.values()} - set(CELL_TYPES)):
        raise WeightsError(f"{weights} is not a cell-type model: its classes are {foreign}")
    return clf


def share_option(help: str):
    """A training option that is a share of crops or batches (0 to 1; 0: off)."""
    return typer.Option(0.0, callback=finite, min=0.0, max=1.0, help=help)


@app.command()
def train(
    data: Path = typer.Option(
        CROPS, exists=True, file_okay=False, help="Crop dataset folder (from `leukoscan data classify`)."
    ),
    epochs: int = typer.Option(ClassifierRecipe.epochs, min=1, max=1000, help="Training epochs."),
    imgsz: int = typer.Option(ClassifierRecipe.imgsz, min=32, help="Crop size the model sees."),
    balance: bool = typer.Option(
        False,
        help="Balance classes: subsample large ones, fill small ones with stain-jittered "
        "copies (measured: worse than all the crops as they are; see README).",
    ),
    per_class: int = typer.Option(3000, min=1, help="Training crops per class after balancing."),
    device: str = device_option(),
    project: Path = typer.Option(RUNS / "classify", help="Folder for training runs."),
    name: str = typer.Option("classifier", help="Run name."),
    ship_to: Path = typer.Option(None, help="Copy best.pt here with a card (e.g. weights/subtype.pt)."),
) -> None:
    """Train the blast subtype model (YOLOv8n-cls from scratch, Taleqani crops), fit its temperature on val."""
    from leukoscan.cards import ship, write_card
    from leukoscan.classify.dataset import balance as make_balanced
    from leukoscan.classify.predict import Classifier
    from leukoscan.classify.stain import stain_reference
    from leukoscan.classify.train import calibrate, crop_geometry, sample_crops
    from leukoscan.classify.train import train as run_train
    from leukoscan.datasets.splits import manifest_hash

    if missing := [split for split in ("train", "val") if not (data / split).is_dir()]:
        fail(f"{data} has no {missing[0]}/ folder of <class>/ crops (build it with `leukoscan data classify`)")
    train_data = data
    counts = None
    if balance:
        train_data = Path(str(data) + "_balanced")
        counts = make_balanced(data, train_data, per_class)
        console.print(f"balanced training set: {counts}", markup=False, soft_wrap=True)
    best, card = run_train(train_data, project, name, ClassifierRecipe(epochs=epochs, imgsz=imgsz), device)
    calib = calibrate(Classifier(best, device), data / "val")
    card.update(calib)
    card["stain_reference"] = stain_reference(sample_crops(data / "train"))
    card["classes"] = ["Benign", "Early Pre-B", "Pre-B", "Pro-B"]
    card["balanced_train_counts"] = counts
    card["geometry"] = crop_geometry(data)
    manifest = data / "manifest.csv"
    card["data"] = {
        "folder": str(data),
        "split": "all-taleqani contiguous blocks (manifest)",
        "manifest_sha256": manifest_hash(manifest) if manifest.exists() else None,
    }
    card = write_card(best, card)  # read_card finds it beside best.pt
    show_json(card)
    if ship_to:
        ship(best, ship_to, card)
        console.print(f"shipped {escape(str(ship_to))}", soft_wrap=True)


def cell_model_facts(best: Path, device: str, colour: str, folder: Path, cells: Path, scores: dict) -> dict:
    """What a trained cell-type model's card says of it: how its probabilities are made (``scores``, from
    ``scores_card``), temperature (fitted on ``folder/val``), the training crops' colour, classes, input size,
    crop geometry, and the slide normalisation it was trained with."""
    from leukoscan.cells import CELL_TYPES
    from leukoscan.classify.predict import CellClassifier
    from leukoscan.classify.stain import stain_reference
    from leukoscan.classify.train import calibrate_scores, sample_crops
    from leukoscan.datasets.cells import dataset_geometry

    clf = CellClassifier(best, device, strict=False)  # without Taleqani and Munich there are no blasts
    clf.colour = colour  # (its card is not written yet)
    facts = calibrate_scores(clf, scores, folder / "val")
    facts["stain_reference"] = stain_reference(sample_crops(folder / "train"))
    facts["classes"] = list(CELL_TYPES)
    facts["input_px"] = clf.imgsz
    facts["geometry"] = dataset_geometry(cells).crop_record()  # as its crops were cut
    if (cells / "normalisation.json").exists():  # trained on colour-normalised crops: inference normalises each slide
        facts["stain_normalisation"] = json.loads((cells / "normalisation.json").read_text())
    return facts


@app.command("train-cells")
def train_cells(
    cells: Path = typer.Option(
        BUILD_DIR / "cells", exists=True, file_okay=False, help="Cell dataset folder (from `leukoscan data cells`)."
    ),
    exclude: list[str] = typer.Option([], help="Source left out of training (leave-one-lab-out); repeatable."),
    cleaned: Path = typer.Option(
        None, exists=True, dir_okay=False, help="cells.csv with cleaned weak labels (from `leukoscan classify clean`)."
    ),
    epochs: int = typer.Option(CellRecipe.epochs, min=1, max=1000, help="Training epochs."),
    model: str = typer.Option(
        CellRecipe.model,
        help="The network, built from scratch: an Ultralytics classification yaml (yolov8n-cls.yaml, "
        "yolov8s-cls.yaml, ...; a larger one: the trial, see README).",
    ),
    seed: int = typer.Option(
        CellRecipe.seed, help="Random seed of the training run (another: how much a figure moves)."
    ),
    save_period: int = typer.Option(
        CellRecipe.save_period,
        min=-1,
        help="Also keep every this many epochs' weights (weights/epochN.pt in the run; -1: best and last only).",
    ),
    average_last: int = typer.Option(
        0,
        min=0,
        help="Ship the average of the last this many epochs' weights (kept by --save-period 1) instead of the "
        "best epoch by val (0: the best epoch; 1: the last; the trial, see README).",
    ),
    remeasure_batchnorm: bool = typer.Option(
        False, help="--average-last: batch norm's statistics measured again on training crops, not averaged."
    ),
    device: str = device_option(),
    project: Path = typer.Option(RUNS / "cells", help="Folder for training runs."),
    name: str = typer.Option("", help="Run name (default: all, or no-<source>)."),
    ship_to: Path = typer.Option(None, help="Copy best.pt here with a card (e.g. weights/classifier.pt)."),
    reuse: bool = typer.Option(False, help="Finish a run already trained (its best.pt): calibration and card only."),
    colour: Colour = typer.Option(
        Colour.rgb,
        help="Input colour: rgb, or gray (every crop's luminance only, in "
        "training and at inference: the trial of a stain-blind model, see README).",
    ),
    pseudo: Path = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        help="Pseudo-labelled cells to train on as well (from `leukoscan classify pseudo-label`): self-training.",
    ),
    stain_transfer: float = share_option(
        "Share of training crops recoloured with a training lab's colour statistics (the trial, see README)."
    ),
    zoom: float = share_option(
        "Share of training crops whose cell is zoomed by up to 1.3x either way (0.5 in the shipped recipe)."
    ),
    quarter_turns: float = share_option(
        "Share of training crops turned a quarter (with the flips: every orientation; 0.5 in the shipped recipe)."
    ),
    contrast: float = share_option(
        "Share of training crops whose lightness contrast (up to 1.6x either way) and brightness are "
        "changed (the trial, see README)."
    ),
    sharpen: float = share_option("Share of training crops sharpened by an unsharp mask (the trial, see README)."),
    white_balance: float = share_option(
        "Share of training crops given another lamp's colour cast (RGB gains up to 1.3x; the trial, see README)."
    ),
    mixstyle: float = share_option(
        "Share of training batches whose early feature statistics are mixed between crops (MixStyle; the "
        "trial, see README)."
    ),
    mixup: float = share_option(
        "Share of training crops blended with another training crop, their targets alike (mixup; the trial, see "
        "README)."
    ),
    equal_blast_sources: bool = typer.Option(
        False,
        help="Every source of training blasts (Munich's myeloblasts, Taleqani's lymphoblasts) gives as many crops, "
        "as many blasts in all (the trial, see README).",
    ),
    blast_parts: bool = typer.Option(
        False,
        help="Each source's blasts a class of their own (blast~munich, blast~taleqani), added up into P(blast) "
        "(the trial, see README).",
    ),
    test_time_views: int = views_option(),
    prior_correction: float = prior_option(),
    others_prior_correction: float = prior_option(others=True),
) -> None:
    """Train the cross-lab cell-type classifier (YOLOv8n-cls unless --model, from yaml), fit its temperature on val."""
    from leukoscan.cards import ship, write_card
    from leukoscan.classify.augment import LabAugment
    from leukoscan.classify.train import scores_card
    from leukoscan.classify.train import train_cells as run_train
    from leukoscan.datasets.cells import SOURCES, lab_stain_targets, training_folder
    from leukoscan.datasets.splits import manifest_hash

    _check_options(exclude, model, average_last, save_period, reuse, remeasure_batchnorm)
    name = name or ("no-" + "-".join(exclude) if exclude else "all")
    folder = cells / "runs" / name
    with exclusive(folder.with_name(f".{name}.lock"), lambda holder: _busy(folder, holder)):
        with user_errors():
            df, taught = training_cells(cells, cleaned, pseudo)
        counts = training_folder(
            df, folder, tuple(exclude), equal_blast_sources=equal_blast_sources, blast_parts=blast_parts
        )
        show_json(counts, indent=None)
        targets = lab_stain_targets(df, tuple(exclude)) if stain_transfer else {}
        augment = LabAugment(
            p_transfer=stain_transfer,
            transfer_labs=tuple((k, *v) for k, v in targets.items()),
            p_zoom=zoom,
            p_quarter_turn=quarter_turns,
            p_contrast=contrast,
            p_sharpen=sharpen,
            p_white_balance=white_balance,
            p_mixstyle=mixstyle,
            p_mixup=mixup,
        )
        recipe = CellRecipe(model=model, epochs=epochs, seed=seed, save_period=save_period)
        if reuse:
            best = project / name / "weights" / "best.pt"
            card = _reused_card(best, recipe, colour.value, augment, exclude, equal_blast_sources, blast_parts)
        else:
            best, card = run_train(folder, project, name, recipe, device, colour.value, augment)
        if average_last:
            from leukoscan.classify.average import average_run

            with user_errors():
                best = average_run(
                    project / name, average_last, folder if remeasure_batchnorm else None, augment, recipe.imgsz
                )
            card["averaged"] = {
                "epochs": average_last,
                "batchnorm": "remeasured" if remeasure_batchnorm else "averaged",
            }
        # how its probabilities are made
        scores = scores_card(counts["train"], test_time_views, prior_correction, others_prior_correction)
        card.update(cell_model_facts(best, device, colour.value, folder, cells, scores))
        card["data"] = {
            "sources": [s for s in SOURCES if s not in exclude],
            "excluded": list(exclude),
            "train_counts": counts,
            "equal_blast_sources": equal_blast_sources,
            "blast_parts": blast_parts,
            "cells_csv_sha256": manifest_hash((cleaned or cells / "cells.csv")),
            "pseudo_csv_sha256": manifest_hash(pseudo) if pseudo else None,
            "pseudo_labs": sorted(set(taught.lab)),
            "taleqani_manifest_sha256": manifest_hash(cells / "taleqani_manifest.csv"),
        }
        write_card(best, card)
        show_json(
            {k: card[k] for k in ("temperature", "val_ece_before", "val_ece_after", "train_seconds")}, indent=None
        )
        if ship_to:
            ship(best, ship_to, card)
            console.print(f"shipped {escape(str(ship_to))}", soft_wrap=True)


def _busy(folder: Path, holder: str) -> typer.Exit:
    """Another ``train-cells`` of the same --name is running: it rebuilds and trains on the same crop folder (and
    Ultralytics run), so this one stops before touching them: one line, and the exit to end with."""
    error(f"another train-cells ({holder}) is training on {folder} now: wait for it, or give this one another --name")
    return typer.Exit(USAGE_ERROR)


def _check_options(
    exclude: list[str], model: str, average_last: int, save_period: int, reuse: bool, remeasure_batchnorm: bool
) -> None:
    """``train-cells``' options that cannot work (a source it does not know, a --model that is not a classifier's
    yaml, weight averaging without the epochs to average): one line and exit 2, before any training."""
    from leukoscan.datasets.cells import SOURCES

    if unknown := set(exclude) - set(SOURCES):
        fail(f"unknown source {sorted(unknown)} (use {', '.join(SOURCES)})")
    with user_errors():
        check_architecture(model)
    if average_last and save_period != 1 and not reuse:
        fail("--average-last needs each epoch's weights: give --save-period 1")
    if remeasure_batchnorm and not average_last:
        fail("--remeasure-batchnorm is part of --average-last: give both")


def _reused_card(
    best: Path,
    recipe: CellRecipe,
    colour: str,
    augment,
    exclude: list[str],
    equal_blast_sources: bool,
    blast_parts: bool,
) -> dict:
    """``train-cells --reuse``: the card of the run already trained in ``best``, how it was trained taken from its
    own card (not this command's options); one line and exit 2 when it is missing or was trained on other crops
    (another colour, other sources, or the blasts drawn otherwise: the card would record this command's)."""
    from leukoscan.cards import read_card
    from leukoscan.classify.train import cell_card

    if not best.is_file():
        fail(f"--reuse: {best} not found")
    card = cell_card(recipe, None, colour, augment)
    with user_errors():
        trained = read_card(best)
    if trained.get("input_colour", colour) != colour:
        fail(f"--reuse: {best} was trained on {trained['input_colour']} crops, not --colour {colour}")
    if sorted(trained.get("data", {}).get("excluded", exclude)) != sorted(exclude):  # `clean` trusts it
        fail(f"--reuse: {best} was trained without {trained['data']['excluded']}, not --exclude {list(exclude)}")
    data = trained.get("data", {})
    for flag, value in (("equal_blast_sources", equal_blast_sources), ("blast_parts", blast_parts)):
        if data.get(flag, False) != value:  # a card from before the flag: trained without it
            option = "--" + flag.replace("_", "-")
            fail(f"--reuse: {best} was trained {'without' if value else 'with'} {option}: give it the same way")
    card.update({k: trained[k] for k in ("recipe", "augment", "input_colour", "train_seconds") if k in trained})
    return card


@app.command("calibrate")
def calibrate_cells(
    weights: Path = typer.Option(..., exists=True, dir_okay=False, help="A cell-type model (its card is rewritten)."),
    data: Path = typer.Option(
        ...,
        exists=True,
        file_okay=False,
        help="The folder it was trained from (train/<type>/ and val/<type>/ crops, e.g. data/cells/runs/all).",
    ),
    test_time_views: int = views_option(),
    prior_correction: float = prior_option(),
    others_prior_correction: float = prior_option(others=True),
    device: str = device_option(),
) -> None:
    """Re-make a trained cell-type model's scores: its test-time views and class-prior correction (the prior
    from the crops of DATA/train), then its temperature fitted on DATA/val; its card is rewritten. Figures
    measured with the old scores no longer hold: rerun bench/eval_crosslab.py."""
    from leukoscan.classify.calibrate import at_bound
    from leukoscan.classify.train import calibrate_scores, folder_counts, scores_card

    if not ((data / "train").is_dir() and (data / "val").is_dir()):
        fail(f"{data} has no train/ and val/ crop folders (the training folder of the model)")
    counts = {split: folder_counts(data / split) for split in ("train", "val")}
    if empty := [split for split, n in counts.items() if not sum(n.values())]:
        fail(f"no crops under {data / empty[0]}/<type>/ (the training folder of the model)")
    card_path = weights.with_suffix(".json")
    with user_errors():
        card = json.loads(card_path.read_text()) if card_path.exists() else {}
        clf = cell_type_model(weights, device)
    if unknown := sorted(k for split in counts.values() for k in split if k not in clf.classes):
        fail(
            f"{data} has crop folders of no type this model knows ({', '.join(dict.fromkeys(unknown))}): "
            "is it the model's training folder?"
        )
    if missing := [k for k in clf.classes if not counts["train"].get(k)]:
        fail(
            f"no crops of {', '.join(missing)} under {data / 'train'}: the class prior needs every type the model "
            "knows (is it the model's training folder?)"
        )
    scores = scores_card(counts["train"], test_time_views, prior_correction, others_prior_correction)
    with user_errors():  # a crop that is not an image: one line, the card as it was
        calibrated = calibrate_scores(clf, scores, data / "val")
    if at_bound(calibrated["temperature"]):  # no temperature fits: the card is kept
        fail(
            f"no temperature fits {weights} on {data / 'val'} ({calibrated['temperature']:g}, at a bound of the fit): "
            "is it the model trained on these crops? its card is left as it was"
        )
    card.update(calibrated)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    show_json({k: card[k] for k in ("test_time_views", "temperature", "val_ece_before", "val_ece_after")}, indent=None)


@app.command()
def clean(
    cells: Path = typer.Option(
        BUILD_DIR / "cells", exists=True, file_okay=False, help="Cell dataset folder (from `leukoscan data cells`)."
    ),
    weights: Path = typer.Option(
        ..., help="A cell-type model trained without Taleqani (`train-cells --exclude taleqani`)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the cleaned cells.csv (crops stay in CELLS)."),
    confident: float = typer.Option(
        0.9, callback=finite, min=0.5, max=1.0, help="Probability of a granulocyte type that relabels a weak cell."
    ),
    device: str = device_option(),
) -> None:
    """Clean Taleqani's weak labels with a model that never saw Taleqani (see classify/weak.py)."""
    import numpy as np

    from leukoscan.cards import read_card
    from leukoscan.cells import CELL_TYPES
    from leukoscan.classify.weak import clean_weak_labels, cleaning_summary
    from leukoscan.datasets.cells import read_cells, read_crops

    with user_errors():
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder, not the CSV to write")
        df = read_cells(cells)
        classifier = cell_type_model(weights, device)
    if "taleqani" not in read_card(weights).get("data", {}).get("excluded", []):
        fail(f"{weights} was trained on Taleqani; clean with a model that never saw it")
    probs = np.zeros((len(df), len(CELL_TYPES)), np.float32)
    with user_errors():  # a crop that cannot be read: named
        probs[df.weak.to_numpy()] = classifier.probs(read_crops(df[df.weak]))
    cleaned = clean_weak_labels(df, probs, confident)
    out.parent.mkdir(parents=True, exist_ok=True)
    cleaned.to_csv(out, index=False)
    summary = cleaning_summary(cleaned)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    show_json(summary, indent=None)


@app.command("pseudo-label")
def pseudo_label(
    cells: Path = typer.Option(
        BUILD_DIR / "cells", exists=True, file_okay=False, help="Cell dataset folder (from `leukoscan data cells`)."
    ),
    weights: Path = typer.Option(..., exists=True, dir_okay=False, help="The teacher: a cell-type model."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Where to write the pseudo-labelled cells (a cells.csv of CELLS' crops)."
    ),
    confident: float = typer.Option(
        0.9,
        callback=finite,
        min=0.3,
        max=1.0,
        help="Probability of a normal white-cell type that a cell needs to be kept.",
    ),
    lab: list[str] = typer.Option([], help="Only the white cells of this TXL-PBC lab (e.g. txl-575x575); repeatable."),
    known_normal: bool = typer.Option(
        False,
        help="The cells are normal white cells (a lab of normal donors): the teacher's best normal type is taken, "
        "its blast and other probabilities set aside.",
    ),
    data_root: Path = typer.Option(DATA_ROOT, help="Folder holding txl-pbc/ (when CELLS has no txl_white.csv)."),
    device: str = device_option(),
) -> None:
    """Self-training: label TXL-PBC's white cells (several labs, no types) with a teacher's confident
    normal-type calls (see classify/weak.py)."""
    import numpy as np

    from leukoscan.cells import CELL_TYPES
    from leukoscan.classify.weak import pseudo_labels
    from leukoscan.datasets.cells import read_crops, txl_white_cells
    from leukoscan.datasets.splits import manifest_hash

    with user_errors():
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder, not the CSV to write")
        white = txl_white_cells(cells, data_root, device)
        if lab:
            unknown = set(lab) - set(white.lab)
            if unknown:
                fail(f"no white cells of {sorted(unknown)} (labs: {', '.join(sorted(set(white.lab)))})")
            white = white[white.lab.isin(lab)].reset_index(drop=True)
        white.attrs["root"] = cells
        classifier = cell_type_model(weights, device)
    with user_errors():
        probs = classifier.probs(read_crops(white)) if len(white) else np.zeros((0, len(CELL_TYPES)))
    kept = pseudo_labels(white, probs, confident, known_normal)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept.to_csv(out, index=False)
    summary = {
        "teacher": str(weights),
        "teacher_sha256": manifest_hash(weights),
        "white_cells": len(white),
        "kept": len(kept),
        "types": kept.type.value_counts().to_dict(),
    }
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2))
    show_json(summary, indent=None)


@app.command()
def val(
    data: Path = typer.Option(
        BUILD_DIR / "cells" / "runs" / "all",
        help="Folder of <split>/<class>/ crops (a `train-cells` run's folder; `data classify`'s for --subtype).",
    ),
    split: Literal["val", "test"] = typer.Option("val", help="Split."),
    weights: Path = typer.Option(None, help="Weights (default: the shipped cell-type or subtype model)."),
    subtype: bool = typer.Option(
        False, help="Validate the subtype model (Benign / Early Pre-B / Pre-B / Pro-B crops)."
    ),
    device: str = device_option(),
) -> None:
    """Accuracy, per-class recall and ECE (calibrated) on a split of a crop folder."""
    from leukoscan.classify.calibrate import ece
    from leukoscan.classify.predict import CellClassifier, Classifier
    from leukoscan.classify.train import folder_crops

    folder = data / split
    if not folder.is_dir():
        how = "`classify train-cells` builds val only" if split == "test" and not subtype else "build it first"
        fail(f"{folder} not found ({how}, or pass --data)")
    with user_errors():
        clf = (Classifier if subtype else CellClassifier)(
            weights or (SUBTYPE_WEIGHTS if subtype else CLASSIFIER_WEIGHTS), device
        )
        crops, labels, _ = folder_crops(folder, clf.classes)  # a crop that cannot be read: named
    if not len(labels):
        fail(f"no crops under {folder}/<class>/ (classes: {', '.join(clf.classes)})")
    probs = clf.probs(crops)  # as a run makes them
    pred = probs.argmax(1)
    recall = {
        k: round(float((pred[labels == i] == i).mean()), 4) for i, k in enumerate(clf.classes) if (labels == i).any()
    }
    show_json(
        {
            "split": split,
            "n": int(len(labels)),
            "accuracy": round(float((pred == labels).mean()), 4),
            "recall": recall,
            "ece": round(ece(probs, labels), 4),
        }
    )


@app.command()
def predict(
    crops: list[Path] = typer.Argument(
        ..., exists=True, help="Crop images or folders of crops (one cell each, centred)."
    ),
    weights: Path = typer.Option(CLASSIFIER_WEIGHTS, help="Cell-type classifier weights."),
    device: str = device_option(),
    out: Path = typer.Option(Path("predictions.csv"), "--out", "-o", help="CSV of calibrated probabilities."),
) -> None:
    """Classify ready-made cell crops (batched) and write their calibrated cell-type probabilities.

    Each crop is taken whole, resized as `leukoscan run` resizes its crops (so a crop `run` cut gets `run`'s
    probabilities): for the physical scale the model was trained on, a crop should span about 1.6 white-cell
    diameters, as `leukoscan run` cuts them."""
    import cv2
    import numpy as np
    import pandas as pd

    from leukoscan import outputs
    from leukoscan.cells import CELL_TYPES, TYPE_LABELS
    from leukoscan.classify.predict import CellClassifier
    from leukoscan.images import ImageError, expand_images, load_rgb

    with user_errors():
        files = expand_images(crops)
        if out.is_dir():
            raise ValueError(f"--out {out} is a folder, not a CSV file")
        clf = CellClassifier(weights, device)
    good, arrays = [], []
    for f in files:
        try:
            rgb = load_rgb(f)  # to the crop size it was trained on, as `run` cuts its crops (then upsampled alike)
            shrink = max(rgb.shape[:2]) > clf.crop_px
            size, interpolation = (clf.crop_px, cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            arrays.append(
                rgb if rgb.shape[:2] == (size, size) else cv2.resize(rgb, (size, size), interpolation=interpolation)
            )
            good.append(f)
        except ImageError as e:
            console.print(f"[yellow]skipped[/] {escape(shown_name(f))}: {escape(str(e))}", soft_wrap=True)
    if not good:  # an earlier predictions file is left as it was
        fail("no crop could be processed (each is listed above with why)", NOTHING_PROCESSED)
    probs = clf.probs(np.stack(arrays))
    df = pd.DataFrame(probs, columns=[f"p_{k}" for k in CELL_TYPES])
    df.insert(0, "label", [TYPE_LABELS[i] for i in probs.argmax(1)])
    df.insert(0, "crop", [str(f) for f in good])
    with user_errors(NOTHING_PROCESSED):
        outputs.write_csv(out, df)
    console.print(f"{len(df)} crops classified -> {escape(str(out))}", soft_wrap=True)


@app.command("lab-cells")
def lab_cells(
    corrections: list[Path] = typer.Argument(
        ..., exists=True, dir_okay=False, help="corrections.csv files downloaded from review pages."
    ),
    results: Path = typer.Option(
        ..., exists=True, file_okay=False, help="The run's output folder (`leukoscan run --out`): its slides' scale."
    ),
    out: Path = typer.Option(
        Path("lab-cells"), "--out", "-o", help="Folder of the lab's reviewed cells (added to when it exists)."
    ),
    weights: Path = typer.Option(CLASSIFIER_WEIGHTS, help="The cell-type model to fine-tune: its crop window."),
    max_megapixels: float = max_megapixels_option(),
) -> None:
    """Cut the cells a reviewer corrected or confirmed on the review page, as `leukoscan run` cut them, labelled
    with the reviewer's type: the lab's own cells for `leukoscan classify finetune` and `classify promote`.

    Reads each slide's fields from where `run` read them (its verdict.json's `source`) at the scale it used;
    a cell reviewed again replaces its earlier row in OUT/cells.csv."""
    import pandas as pd

    from leukoscan import outputs
    from leukoscan.cards import card_geometry, read_card
    from leukoscan.classify.finetune import LAB_COLUMNS, reviewed_cells
    from leukoscan.classify.gate import HOLD_OUT_EVERY, held_out, read_lab_cells

    def warn(line: str) -> None:
        console.print(f"[yellow]{escape(line)}[/]", soft_wrap=True)

    def read(f: Path) -> pd.DataFrame:  # slide and image names as written ("001" stays "001")
        try:
            return pd.read_csv(f, keep_default_na=False, dtype={"slide": str, "image": str})
        except ValueError as e:  # an empty file, not a CSV
            raise ValueError(f"{f}: {one_line(e)}") from None

    with user_errors():
        outputs.out_folder(out)
        table = pd.concat([read(f) for f in corrections], ignore_index=True)
        clf = cell_type_model(weights, "cpu")
        geometry = card_geometry(read_card(weights)).crop_record()  # finetune checks its model cuts alike
        cut = reviewed_cells(table, results, clf, out, warn, max_megapixels)
    if table.empty:
        fail(f"no corrections in {', '.join(map(str, corrections))}", NOTHING_PROCESSED)
    if cut.empty:
        fail("no reviewed cell could be cut (each is listed above with why)", NOTHING_PROCESSED)
    before = pd.DataFrame(columns=list(LAB_COLUMNS))
    if (out / "cells.csv").exists():
        with user_errors():
            before = read_lab_cells(out)
    key = ["slide", "image", "cell"]
    kept = before[~before.set_index(key).index.isin(cut.set_index(key).index)]
    merged = pd.concat([kept, cut], ignore_index=True).sort_values(key, kind="stable")
    with user_errors(NOTHING_PROCESSED):
        outputs.write_csv(out / "cells.csv", merged)
        outputs.write_text(out / "geometry.json", json.dumps(geometry, indent=2) + "\n")
    counts = merged.type.value_counts().sort_index().to_dict()
    console.print(f"{len(cut)} reviewed cells cut; {len(merged)} in {escape(str(out))}: {counts}", soft_wrap=True)
    held, confirmed = held_out(merged), int((merged.type == merged.predicted).sum())
    console.print(
        f"{confirmed} of them confirm the call shown, {len(merged) - confirmed} correct it; {int(held.sum())} (one "
        f"field in {HOLD_OUT_EVERY}) are held out of fine-tuning for `classify promote`",
        soft_wrap=True,
    )


def need_cell_dataset(cells: Path, why: str) -> None:
    """A ``ValueError`` saying what to do when ``cells`` is not a cell dataset (``leukoscan data cells``), which
    needs the public datasets (../shared): a lab that has not got them screens with the shipped model."""
    from leukoscan.config import DATA_ROOT

    if not (cells / "cells.csv").is_file():
        found = "found" if DATA_ROOT.is_dir() else "not found"
        raise ValueError(
            f"no cell dataset at {cells} ({why}): build it with `leukoscan data cells --out {cells}` from the public "
            f"datasets (LEUKOSCAN_DATA, now {DATA_ROOT}: {found}); without them, screen with the shipped model and a "
            "lab reference (`leukoscan lab-reference`)"
        )


@app.command()
def finetune(
    lab: Path = typer.Argument(..., exists=True, file_okay=False, help="The lab's reviewed cells (`lab-cells`)."),
    start: Path = typer.Option(CLASSIFIER_WEIGHTS, "--from", help="Cell-type model to start from."),
    cells: Path = typer.Option(
        BUILD_DIR / "cells",
        file_okay=False,
        help="Cell dataset (`leukoscan data cells`, from the public datasets): the model's own training crops, "
        "replayed.",
    ),
    out: Path = typer.Option(
        Path("runs/cells-finetune"),
        "--out",
        "-o",
        help="Folder for the candidate weights and their card.",
    ),
    replay_n: int = typer.Option(3000, min=1, help="How many of the model's own training crops to replay."),
    lab_share: float = typer.Option(
        0.25, callback=finite, min=0.01, max=0.9, help="Share of the training crops that are the lab's (repeated)."
    ),
    epochs: int = typer.Option(FinetuneRecipe.epochs, min=1, max=100, help="Fine-tuning epochs."),
    seed: int = typer.Option(0, help="Random seed (the replayed crops, the training)."),
    overwrite: bool = typer.Option(False, help="Replace a candidate already in --out (else refused)."),
    device: str = device_option(),
) -> None:
    """Fine-tune the cell-type model on a lab's reviewed cells, replaying its own training crops: a candidate
    to screen that lab's slides with (`leukoscan run ... --classifier-weights OUT/candidate.pt`), or to promote.

    One reviewed field in 4 is held out (never trained on) for `leukoscan classify promote`."""

    from leukoscan import outputs
    from leukoscan.cards import ship
    from leukoscan.classify.finetune import finetune_cells, finetune_folder, model_training_folder
    from leukoscan.classify.gate import HOLD_OUT_EVERY, check_cut, held_out, read_lab_cells

    candidate = out / "candidate.pt"
    with user_errors():
        outputs.out_folder(out)
        if candidate.exists() and not overwrite:
            raise ValueError(f"{candidate} exists: move it, or give another --out (or --overwrite)")
        cell_type_model(start, "cpu")
        check_cut(lab, start)
        need_cell_dataset(cells, "fine-tuning replays the model's own training crops from it")
        table = read_lab_cells(lab)
        if (kept := table[~held_out(table)]).empty and not table.empty:
            raise ValueError(
                f"every reviewed field in {lab} is held out for the promotion gate (one in {HOLD_OUT_EVERY}): "
                "review cells of more fields"
            )
        training = model_training_folder(start, cells)
        counts = finetune_folder(kept, training, out / "data", replay_n, lab_share, seed, root=lab)
        show_json(counts, indent=None)
        try:
            best, card = finetune_cells(
                start, out / "data", out / "runs", "finetune", FinetuneRecipe(epochs=epochs, seed=seed), device
            )
        except KeyboardInterrupt:
            interrupted(f"no candidate written; the unfinished training is in {out / 'runs'}")
        held = {"held_out_every": HOLD_OUT_EVERY, "held_out_cells": len(table) - len(kept)}
        card["finetune"] |= {"lab_cells": counts["lab"], **held, "replayed": sum(counts["replay"].values())}
        ship(best, candidate, card)
    console.print(f"candidate: {escape(str(candidate))}  (card: {escape(str(candidate.with_suffix('.json')))})")


@app.command()
def promote(
    lab: Path = typer.Argument(..., exists=True, file_okay=False, help="The lab's reviewed cells (`lab-cells`)."),
    candidate: Path = typer.Argument(..., exists=True, dir_okay=False, help="Candidate weights from `finetune`."),
    current: Path = typer.Option(CLASSIFIER_WEIGHTS, help="Cell-type model in use (replaced only if the gate passes)."),
    cells: Path = typer.Option(
        BUILD_DIR / "cells",
        file_okay=False,
        help="Cell dataset (`leukoscan data cells`, from the public datasets): its labelled test cells are the "
        "regression set.",
    ),
    tolerance: float = typer.Option(
        0.02,
        callback=finite,
        min=0.0,
        max=1.0,
        help="Largest drop of blast recall (the lab's) and of the AUC of P(blast), and rise of normal cells called "
        "blast (the lab's and the regression set's), the gate allows.",
    ),
    device: str = device_option(),
) -> None:
    """Promote a fine-tuned cell-type model only if it does better on the lab's held-out reviewed cells and the
    regression set holds (weights/classifier-registry.json records every decision)."""
    from leukoscan.classify.gate import promote as run_promote

    with user_errors():
        for weights in (candidate, current):
            cell_type_model(weights, "cpu")
        need_cell_dataset(cells, "the gate's regression set is its labelled test cells")
        result = run_promote(candidate, current, lab, cells, tolerance, device)
    report_decision(
        result,
        after_promotion="A lab reference made with the model it replaced is refused with this one: make it again "
        "(`leukoscan lab-reference`).",
    )


@app.command()
def rollback(
    sha: str = typer.Argument(..., help="sha256 (or its first 6 or more characters) of an archived cell-type model."),
    current: Path = typer.Option(CLASSIFIER_WEIGHTS, help="Cell-type model weights to restore into."),
) -> None:
    """Restore an earlier cell-type model from weights/archive (see weights/classifier-registry.json)."""
    rollback_weights(current, "classifier", sha)
