"""Fine-tune a cell-type model on a laboratory's own reviewed cells (``leukoscan classify finetune``).

A lab's hematologist corrects calls on the review page (``corrections.csv``); ``classify lab-cells`` cuts those
cells as ``leukoscan run`` cut them. Fine-tuning starts from the model's weights and trains a few epochs on the
lab's cells, repeated to ``lab_share`` of the set, with a sample of the model's own training crops replayed so
that it does not forget the labs it knew. The model keeps its scores (test-time views, class prior) and its
temperature is fitted again on its own validation crops (the labs it knew), so a run reads its probabilities
as before.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from leukoscan.classify.train import CellRecipe, crop_files, training_cells

if TYPE_CHECKING:
    import pandas as pd

LAB_COLUMNS = ("crop", "type", "slide", "image", "cell", "predicted")  # LABCELLS/cells.csv


def reviewed_cells(
    corrections: pd.DataFrame,
    results: Path,
    classifier,
    out: Path,
    warn=print,
    max_megapixels: float | None = None,
) -> pd.DataFrame:
    """Cut the cells of ``corrections`` (the review page's ``corrections.csv``: ``CORRECTION_COLUMNS``) from the
    fields of the slides screened into ``results`` as ``classifier`` (a ``CellClassifier``) cuts them: its
    window around each box at the slide's scale (``verdict.json``'s), into ``out/crops/<slide>/`` (up to the
    boxes' rounding in cells.csv, 0.1 px); a row that cannot be cut (its slide or field gone, a field over
    ``max_megapixels``, a type that is not one) is skipped with one line to ``warn``; a cell corrected twice takes
    its last row. Each crop is written anew (a new file, never through a link a fine-tuning set made to it).
    The rows cut, ``LAB_COLUMNS`` (crops relative to ``out``), labelled with the reviewer's type."""
    import pandas as pd
    import supervision as sv

    from leukoscan.cells import CELL_TYPES
    from leukoscan.classify.stain import SlideColour
    from leukoscan.cli import one_line
    from leukoscan.report import CORRECTION_COLUMNS

    if missing := sorted(set(CORRECTION_COLUMNS) - set(corrections.columns)):
        raise ValueError(f"no {missing} columns: not the review page's corrections.csv")
    corrections = corrections.drop_duplicates(["slide", "image", "cell"], keep="last")  # reviewed twice: the last
    rows = []
    for (slide, image), group in corrections.groupby(["slide", "image"], sort=True):
        where = f"{slide}/{image}"
        if not (results / str(slide) / "verdict.json").is_file():
            warn(f"skipped {where}: no slide {slide} screened into {results} (its verdict.json)")
            continue
        try:
            verdict, rgb, cell_px = _screened_field(results / str(slide), str(image), max_megapixels)
        except (OSError, ValueError) as e:
            warn(f"skipped {where}: {one_line(e)}")
            continue
        if not (known := group.reviewed.isin(CELL_TYPES)).all():
            unknown = sorted(set(group.reviewed[~known]))
            warn(f"skipped {(~known).sum()} cell(s) of {where}: {unknown} is not a cell type ({', '.join(CELL_TYPES)})")
            group = group[known]
        det = sv.Detections(xyxy=group[["x1", "y1", "x2", "y2"]].to_numpy(float))
        colour = SlideColour.from_record(verdict.get("stain_normalisation"))
        crops = classifier.normalise(classifier.crops(rgb, det, cell_px), colour)
        for crop, row in zip(crops, group.itertuples()):
            name = Path("crops") / str(slide) / f"{Path(str(image)).name}_{row.cell}.png"  # f0.jpg, f0.png apart
            _write_new(out / name, crop)
            rows.append((str(name), row.reviewed, slide, image, row.cell, row.predicted))
    return pd.DataFrame(rows, columns=list(LAB_COLUMNS))


def _screened_field(slide: Path, image: str, max_megapixels: float | None) -> tuple[dict, np.ndarray, float]:
    """A screened slide's verdict.json, its field ``image`` (RGB, read from where ``run`` read it) and that
    field's white-cell size in px (the scale ``run`` used); an ``OSError`` or ``ValueError`` saying why not."""
    import json

    from leukoscan.images import load_rgb
    from leukoscan.scale import Scale, shape_key

    verdict = json.loads((slide / "verdict.json").read_text())
    if not verdict.get("source"):
        raise ValueError("its verdict.json names no source (the folder or image it was read from)")
    source = Path(verdict["source"])
    rgb = load_rgb(source / image if source.is_dir() else source, max_megapixels)
    scale = Scale.from_record(verdict.get("scale"))
    if not (cell_px := scale.given_px or scale.by_field_size.get(shape_key(rgb))):
        raise ValueError(f"its verdict.json has no scale for a {shape_key(rgb)} field")
    return verdict, rgb, cell_px


def _write_new(path: Path, crop: np.ndarray) -> None:
    """An RGB crop as a PNG at ``path``, a new file (never written through a hard link to the old one)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    if not cv2.imwrite(str(tmp), crop[..., ::-1]):
        raise OSError(f"could not write {tmp}")
    tmp.replace(path)


@dataclass
class FinetuneRecipe(CellRecipe):
    """``CellRecipe`` from trained weights: a few epochs at a tenth of the training's learning rate (Ultralytics'
    ``optimizer=auto`` chose AdamW at 0.00077 for it), no warm-up."""

    epochs: int = 4
    optimizer: str = "AdamW"
    lr0: float = 0.0001
    warmup_epochs: float = 0.0


def model_training_folder(weights: Path, cells: Path) -> Path:
    """The training folder a cell-type model of ``weights/`` (the shipped one or a leave-one-lab-out one) was
    trained on, rebuilt under ``cells/runs/`` from ``cells`` (``leukoscan data cells``) with the weak-label
    cleaning and self-training tables its card names (``weights/cleaning``, ``weights/pseudo``), as ``python
    bench/train_crosslab.py`` builds it: what fine-tuning replays. A ``ValueError`` when a table is missing or
    the folder rebuilt is not what the card says the model was trained on (another build of the cell dataset)."""
    from leukoscan.cards import read_card
    from leukoscan.classify.weak import redo_cleaning
    from leukoscan.config import WEIGHTS_DIR
    from leukoscan.datasets.cells import training_folder
    from leukoscan.datasets.splits import manifest_hash

    data = read_card(weights).get("data", {})
    if "train_counts" not in data:
        raise ValueError(f"{weights}'s card says nothing of its training crops: not a cell-type model of train-cells")
    excluded = tuple(data.get("excluded", ()))
    name = "-".join(["no", *excluded]) if excluded else "all"
    tables = weights.parent.parent if weights.parent.name == "lolo" else weights.parent
    if not (tables / "cleaning").is_dir():  # a candidate fine-tuned elsewhere: the tables of the shipped models
        tables = WEIGHTS_DIR
    cleaning = tables / "cleaning" / ("clean" + (f"-{name}" if excluded else "") + ".csv")
    labs = data.get("pseudo_labs") or ["txl-575x575"]  # the lab self-trained on (one, in every shipped model)
    pseudo = tables / "pseudo" / f"{labs[0]}-by-{name if excluded else 'classifier'}.csv"
    cleaned = redo_cleaning(cells, cleaning) if cleaning.exists() else None
    for table, key in ((cleaned or cells / "cells.csv", "cells_csv_sha256"), (pseudo, "pseudo_csv_sha256")):
        if data.get(key) and (not table.exists() or manifest_hash(table) != data[key]):
            raise ValueError(f"{table} is not the table {weights.name} was trained on ({key} in its card)")
    folder = cells / "runs" / name
    if _linked_counts(folder) == data["train_counts"]:  # built already (a training may be reading it): kept
        return folder
    df, _ = training_cells(cells, cleaned, pseudo if data.get("pseudo_csv_sha256") else None)
    counts = training_folder(
        df,
        folder,
        excluded,
        equal_blast_sources=data.get("equal_blast_sources", False),
        blast_parts=data.get("blast_parts", False),
    )
    if counts != data["train_counts"]:
        raise ValueError(f"{folder} rebuilt is not what {weights.name} was trained on (its card's train_counts)")
    return folder


def _linked_counts(folder: Path) -> dict[str, dict[str, int]]:
    """Crops per split and class folder of a training folder ({} when there is none)."""
    return {
        split.name: {d.name: len(crop_files(d)) for d in sorted(split.iterdir()) if d.is_dir()}
        for split in sorted(folder.iterdir() if folder.is_dir() else [])
        if split.is_dir()
    }


@dataclass(frozen=True)
class Replay:
    """What fine-tuning replays so that a model keeps what it knew: crops by type (``pools``, every class of the
    model, a type with none left empty) and the validation crops Ultralytics scores each epoch on (``val``: a
    folder of ``<type>/`` crops, or crops by type). ``calibrate``: the validation types are a truth, so the
    temperature is fitted again on them; else they are the model's own calls and it keeps its temperature.
    ``soft``: a crop's target probabilities (the model's classes in sorted order) where it is trained towards
    them rather than towards its pool's type."""

    pools: dict[str, list[Path]]
    val: Path | dict[str, list[Path]]
    calibrate: bool
    source: str
    soft: dict[Path, np.ndarray] | None = None

    @classmethod
    def training(cls, training: Path) -> Replay:
        """The model's own training crops (``model_training_folder``: its sources, from ../shared) and their
        ``val/``: the labs it knew."""
        classes = sorted(d.name for d in (training / "train").iterdir() if d.is_dir())
        pools = {kind: crop_files(training / "train" / kind) for kind in classes}
        return cls(pools, training / "val", True, "training crops")

    def draw(self, n: int, rng: np.random.Generator) -> list[tuple[str, Path]]:
        """About ``n`` crops (type, file) from the pools, each type in its share there and at least one where it
        has any, a small pool drawn again (as many training steps on a small lab as on a large one)."""
        total = sum(map(len, self.pools.values()))
        drawn = []
        for kind, files in self.pools.items():
            if files:
                k = max(1, round(n * len(files) / total))
                drawn += [(kind, files[i]) for i in sorted(rng.choice(len(files), size=k, replace=k > len(files)))]
        return drawn

    def link_val_and_targets(self, out: Path, classes: list[str], replayed: dict[str, Path]) -> None:
        """``out/val/`` (the validation crops) and, with ``soft``, the target probabilities of the ``replayed``
        crops (their files under ``out/train`` -> the crop each was linked from) in ``out/SOFT_TARGETS``."""
        import pandas as pd

        from leukoscan.classify.augment import SOFT_TARGETS

        if self.soft is not None:  # ``cell_trainer`` reads them
            rows = [(name, *self.soft[crop]) for name, crop in replayed.items()]
            pd.DataFrame(rows, columns=["file", *classes]).to_csv(out / SOFT_TARGETS, index=False)
        if isinstance(self.val, Path):
            (out / "val").symlink_to(self.val.resolve(), target_is_directory=True)
            return
        for kind in classes:
            (out / "val" / kind).mkdir(parents=True)
            for n, crop in enumerate(self.val.get(kind, [])):
                link(crop, out / "val" / kind / f"{n}_{crop.name}")


def finetune_folder(
    lab: pd.DataFrame,
    replay: Replay | Path,
    out: Path,
    replay_n: int = 3000,
    lab_share: float = 0.25,
    seed: int = 0,
    root: Path = Path(),
) -> dict[str, dict[str, int]]:
    """Link a fine-tuning set into ``out/{train,val}/<type>/``: ``lab``'s crops (columns ``crop``, a file under
    ``root``, and ``type``) repeated to about ``lab_share`` of the training crops, ``replay_n`` crops drawn from
    ``replay`` (``Replay.draw``; a training folder: its ``Replay.training``), and its validation crops. A
    ``ValueError`` for a type the model was not trained on (the pools' types are the model's classes). The crops
    per split and type, and of the training crops those replayed and the lab's cells (each once)."""
    if missing := sorted({"crop", "type"} - set(lab.columns)):
        raise ValueError(f"the lab's cells have no {missing} column (`leukoscan classify lab-cells` writes them)")
    replay = replay if isinstance(replay, Replay) else Replay.training(replay)
    classes = sorted(replay.pools)
    if unknown := sorted(set(lab.type) - set(classes)):
        raise ValueError(f"the model was not trained on {unknown} (its types: {', '.join(classes)})")
    if lab.empty:
        raise ValueError("no reviewed cells to fine-tune on")
    if out.exists():
        shutil.rmtree(out)
    replayed = replay.draw(replay_n, np.random.default_rng(seed))
    repeats = max(1, round(lab_share * len(replayed) / ((1 - lab_share) * len(lab)))) if replayed else 1
    taught = [(t, root / str(c)) for _ in range(repeats) for t, c in zip(lab.type, lab.crop)]
    counts: dict[str, dict[str, int]] = {
        "train": {},
        "replay": {kind: sum(k == kind for k, _ in replayed) for kind in classes},
        "lab": lab.type.value_counts().sort_index().to_dict(),
    }
    for kind in classes:  # every class folder, empty or not: the model's classes stay its own
        (out / "train" / kind).mkdir(parents=True)
    names = []
    for n, (kind, crop) in enumerate(replayed + taught):
        prefix = "replay" if n < len(replayed) else f"lab{(n - len(replayed)) // len(lab)}"
        names.append(f"{kind}/{prefix}_{n}_{crop.name}")
        link(crop, out / "train" / names[-1])
        counts["train"][kind] = counts["train"].get(kind, 0) + 1
    replay.link_val_and_targets(out, classes, {names[n]: crop for n, (_, crop) in enumerate(replayed)})
    counts["val"] = {kind: len(crop_files(out / "val" / kind)) for kind in classes}
    return counts


def link(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (nothing is written through it), a copy across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def finetune_cells(
    start: Path,
    folder: Path,
    project: Path,
    name: str,
    recipe: FinetuneRecipe | None = None,
    device: str = "auto",
    calibrate: bool = True,
) -> tuple[Path, dict]:
    """Fine-tune the cell-type model ``start`` on ``folder`` (``finetune_folder``) with its own augmentation and
    input colour; (the last epoch's weights, ``last.pt``, and their card: ``start``'s, less its measured figures
    (``metrics``), with the fine-tuning and, with ``calibrate`` (``Replay.calibrate``), a temperature fitted again
    on ``folder/val``; without, ``start``'s)."""
    from leukoscan.cards import read_card, sha256
    from leukoscan.classify.augment import LabAugment, cell_trainer
    from leukoscan.classify.predict import CardScores, CellClassifier
    from leukoscan.classify.train import calibrate_scores
    from leukoscan.training import fit

    recipe = recipe or FinetuneRecipe()
    card = read_card(start)
    augment = LabAugment(**{k: tuple(v) if isinstance(v, list) else v for k, v in card.get("augment", {}).items()})
    colour = card.get("input_colour", "rgb")
    trainer = cell_trainer(augment, colour)
    model, seconds = fit(start, "classify", folder, project, name, recipe, device, trainer=trainer)
    weights = Path(model.trainer.last)  # not best.pt: the best by the known labs' val would favour forgetting
    clf = CellClassifier(weights, device, strict=False)
    clf.colour = colour
    scores = {k: card[k] for k in ("test_time_views", "prior_correction") if k in card}
    facts = calibrate_scores(clf, scores, folder / "val") if calibrate else {}
    finetuned = {
        "from": str(start),
        "from_sha256": sha256(start),
        "recipe": asdict(recipe),
        "train_seconds": round(seconds, 1),
        "temperature_before": CardScores.of(card).temperature,
    }
    card = {k: v for k, v in card.items() if k != "metrics"}  # the start's measured figures are not the candidate's
    return weights, {**card, **facts, "finetune": finetuned}
