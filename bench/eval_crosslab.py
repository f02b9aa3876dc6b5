"""Leave-one-lab-out table of the cell-type classifier (README's main table) and the shipped model's figures.

For each source held out of training (weights/lolo/no-<source>.pt, trained on the others with the same
recipe) the figures are taken on the held-out source: every image of it for Munich, PBC and Zheng (none
was seen), the test blocks for Taleqani. The shipped model (weights/classifier.pt, all sources) is scored
on every source's test split. Crops come from ``leukoscan data cells`` (built here when missing).

Every model is also run on TXL-PBC's white cells (``txl_white.csv``: no types, never trained on as white
cells), lab by lab: the 575 x 575 fields are Raabin-WBC's (a dataset of normal white cells, per its
authors), so what is called blast there is a false alarm (on an unseen lab, unless the model was
self-trained on it: its card's ``data.pseudo_labs``, marked * in the table); the 360 x 363 fields are
PBC's own images (seen by every model but no-pbc).

Each held-out headline figure comes with its 95 % bootstrap interval over the scored cells (``--resamples``;
Taleqani: whole images), the spread from the sample scored; a second training run moves some figures more
(``bench/crosslab_runs.py``).

    python bench/eval_crosslab.py            # writes bench/results/crosslab.{json,md}
    python bench/eval_crosslab.py --backend openvino-int8   # the shipped export: crosslab_openvino-int8.*
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leukoscan import runtime  # noqa: E402
from leukoscan.cells import CELL_TYPES, IS_WHITE, SUBTYPES  # noqa: E402
from leukoscan.classify.gate import NORMAL_TYPES, auc  # noqa: E402,F401 (auc: the benchmarks import it from here)
from leukoscan.config import BUILD_DIR, DATA_ROOT, WEIGHTS_DIR  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
NORMAL = list(NORMAL_TYPES)  # normal white cells


def predict(
    weights: Path,
    cells: pd.DataFrame,
    all_cells: pd.DataFrame,
    normalise: bool = False,
    backend: str = "pytorch",
    crops: np.ndarray | None = None,
) -> np.ndarray:
    """Calibrated CELL_TYPES probabilities of each crop (rows of ``cells``). A model trained on
    colour-normalised crops gets each group of them (``stain_groups``: a lab, or a Taleqani block, as one
    slide) normalised with that group's own colour, as ``leukoscan run`` does with a slide; with
    ``normalise``, a model trained without gets them Reinhard-normalised to 1,000 training crops of its
    sources (the inference-only trial). ``backend``: the model's export (``leukoscan export``) instead;
    ``crops``: the crops of ``cells`` cut otherwise (default: the dataset's)."""
    from leukoscan.cards import read_card
    from leukoscan.classify.predict import CellClassifier
    from leukoscan.classify.stain import SlideColour, lab_stats, reinhard
    from leukoscan.datasets.cells import read_crops, stain_groups

    # a leave-one-out model may lack types (no-pbc: IG, erythroblast)
    clf = CellClassifier(weights, device="cpu", strict=False, backend=backend)
    crops = read_crops(cells) if crops is None else crops.copy()
    if clf.stain_normalisation:
        groups = stain_groups(cells)
        for _, idx in groups.groupby(groups).indices.items():
            sample = np.random.default_rng(0).choice(idx, size=min(len(idx), 1000), replace=False)
            colour = SlideColour.of(crops[np.sort(sample)], clf.stain_normalisation.get("region", "cells"))
            crops[idx] = clf.normalise(crops[idx], colour)
    elif normalise:
        sources = read_card(weights)["data"]["sources"]
        train = all_cells[all_cells.source.isin(sources) & (all_cells.split == "train")].sample(1000, random_state=0)
        reference = lab_stats(read_crops(train))
        crops = reinhard(crops, lab_stats(crops), reference)
    return clf.probs(crops)


def eval_cells(folder: Path) -> pd.DataFrame:
    """A built cell dataset (``leukoscan data cells``) as the benchmarks score it: each cell's label as built
    kept as ``original_type`` (a Taleqani cell's field diagnosis, whatever cleaning makes of ``type``) and its
    field's subtype as ``subtype_truth``."""
    from leukoscan.datasets.cells import read_cells

    cells = read_cells(folder)
    cells["original_type"], cells["subtype_truth"] = cells["type"], cells["subtype"]
    return cells


def per_type(cells: pd.DataFrame, probs: np.ndarray) -> dict:
    """Accuracy per true type and the share of normal cells called blast."""
    call = np.asarray(CELL_TYPES)[probs.argmax(1)]
    acc = {t: round(float((call[cells.type == t] == t).mean()), 4) for t in CELL_TYPES if (cells.type == t).any()}
    normal = cells.type.isin(NORMAL).to_numpy()
    row = {
        "n": int(len(cells)),
        "per_type_accuracy": acc,
        "accuracy": round(float((call == cells.type.to_numpy()).mean()), 4),
        "normal_called_blast": round(float((call[normal] == "blast").mean()), 4) if normal.any() else None,
    }
    if normal.any() and cells.lab.nunique() > 1:  # a source of several labs (Zheng's d1 and d2): each apart
        called = pd.Series(call[normal] == "blast", index=cells.lab.to_numpy()[normal])
        row["normal_called_blast_by_lab"] = called.groupby(level=0).mean().round(4).to_dict()
    return row


def munich(cells: pd.DataFrame, probs: np.ndarray) -> dict:
    p = probs[:, 0]
    blast = (cells.type == "blast").to_numpy()
    return {
        "n_blasts": int(blast.sum()),
        "n_neutrophils": int((~blast).sum()),
        "auc_blast_vs_neutrophil": round(auc(p[blast], p[~blast]), 4),
        "blast_recall": round(float((probs[blast].argmax(1) == 0).mean()), 4),
        "neutrophils_called_blast": round(float((probs[~blast].argmax(1) == 0).mean()), 4),
    }


def taleqani(cells: pd.DataFrame, probs: np.ndarray, subtype: np.ndarray | None = None, call_at: float = 0.5) -> dict:
    """Image level on Taleqani fields: a field's score is its cells' mean P(blast) (images.csv's p_blast); it is
    flagged when blasts are at least half its white cells, and called a subtype for the 4-class figure when they
    are at least ``call_at`` of them (half too: ``bench/eval_4class.py`` measures other shares)."""
    df = cells.assign(p_blast=probs[:, 0], is_blast=probs.argmax(1) == 0, is_white=IS_WHITE[probs.argmax(1)])
    img = df.groupby("file").agg(
        p_blast=("p_blast", "mean"),
        diagnosis=("original_type", "first"),
        subtype=("subtype_truth", "first"),
        n_blasts=("is_blast", "sum"),
        n_white=("is_white", "sum"),
    )
    # of the white cells, as images.csv's blast_fraction (cells.NOT_WHITE aside); a field without any: 0
    img["blast_fraction"] = (img.n_blasts / img.n_white.where(img.n_white > 0)).fillna(0.0)
    all_ = img.diagnosis == "blast"
    out = {
        "n_images": int(len(img)),
        "n_all": int(all_.sum()),
        "n_benign": int((~all_).sum()),
        "image_auc_all_vs_benign": round(auc(img.p_blast[all_], img.p_blast[~all_]), 4),
        "all_fields_flagged": round(float((img.blast_fraction[all_] >= 0.5).mean()), 4),
        "benign_fields_flagged": round(float((img.blast_fraction[~all_] >= 0.5).mean()), 4),
        "cell_blast_recall_all_fields": round(float(df.is_blast[df.original_type == "blast"].mean()), 4),
        "benign_cells_called_blast": round(float(df.is_blast[df.original_type != "blast"].mean()), 4),
    }
    if subtype is not None:  # image 4-class: Benign unless call_at of its white cells are blasts, then their subtype
        sub = pd.DataFrame(subtype, columns=list(SUBTYPES), index=df.index)[df.is_blast.to_numpy()]
        mean_sub = sub.groupby(df.file[df.is_blast]).mean().idxmax(axis=1)
        call = np.where(img.blast_fraction >= call_at, mean_sub.reindex(img.index).fillna("benign"), "benign")
        truth = np.where(all_, img.subtype, "benign")
        out["image_4class_accuracy"] = round(float((call == truth).mean()), 4)
    return out


def taleqani_field(file: str, data_root: Path) -> tuple:
    """A Taleqani field of the cell table (its ``file``: ``all-taleqani/Original/<class>/<name>``) and the
    white-cell boxes ``leukoscan data cells`` cut its cells at (the cell table's ``cell`` indexes them)."""
    from types import SimpleNamespace

    from leukoscan.datasets.build import taleqani_cells

    rel = Path(file).relative_to("all-taleqani/Original")
    rgb, boxes, _ = taleqani_cells(
        data_root / "all-taleqani", SimpleNamespace(file=str(rel), class_dir=rel.parent.name)
    )
    return rgb, boxes


def cell_boxes(cells: pd.DataFrame, data_root: Path, detector=None) -> tuple[list, np.ndarray]:
    """Each cell's field (RGB, each image read once) and the box its crop is cut around: a Taleqani field's own
    box; a single-cell image's detector box nearest its centre, found at the lab's white-cell estimate as
    ``leukoscan data cells`` finds it, or with no ``detector`` a 2 px box at the image centre."""
    from leukoscan.datasets.cells import central_box
    from leukoscan.images import load_rgb

    images, boxes, fields = [], np.zeros((len(cells), 4), np.float32), {}
    for i, row in enumerate(cells.itertuples()):
        if row.source == "taleqani":
            if row.file not in fields:
                fields[row.file] = taleqani_field(row.file, data_root)
            rgb, field_boxes = fields[row.file]
            boxes[i] = field_boxes.xyxy[row.cell]
        else:
            rgb = load_rgb(data_root / row.file)
            h, w = rgb.shape[:2]
            boxes[i] = (
                central_box(detector.detect([rgb], cell_size=row.cell_px)[0], rgb.shape[:2], row.cell_px)[0]
                if detector is not None
                else (w / 2 - 1, h / 2 - 1, w / 2 + 1, h / 2 + 1)
            )
        images.append(rgb)
    return images, boxes


def cut(images: list, boxes: np.ndarray, sides: np.ndarray, size: int) -> np.ndarray:
    """One crop per cell (``cell_boxes``' images and boxes), each in a window of its own side, at ``size`` px."""
    from leukoscan.crops import crop_cells

    return np.stack([crop_cells(im, b[None], size=size, side=s)[0] for im, b, s in zip(images, boxes, sides)])


def subtype_probs(model, cells: pd.DataFrame, data_root: Path) -> np.ndarray:
    """The subtype model's P(subtype | blast) for Taleqani cells, on its own box-relative crops of the fields
    (the boxes ``leukoscan data cells`` cut the cells at, recomputed)."""
    from leukoscan.crops import crop_cells

    out = np.zeros((len(cells), len(SUBTYPES)), np.float32)
    for file, idx in cells.groupby("file").indices.items():
        rgb, boxes = taleqani_field(file, data_root)
        crops = crop_cells(rgb, boxes.xyxy[cells.cell.to_numpy()[idx]], size=model.imgsz, margin=model.margin)
        out[idx] = model.subtypes(crops)
    return out


def slide_scale_crops(cells: pd.DataFrame, data_root: Path, window: float, size: int) -> np.ndarray:
    """Taleqani cells cut as ``leukoscan run`` cuts a slide's: each block of one class (about one patient, one
    slide) at its own white-cell diameter, the detector's estimate on the block's first two fields, instead of
    the lab's median (the dataset's crops, what the models were trained on); ``window`` such diameters wide (a
    model's, from its card), at ``size`` px."""
    from leukoscan.crops import crop_cells
    from leukoscan.datasets.cells import stain_groups
    from leukoscan.detect.predict import Detector

    detector = Detector(device="cpu")
    out = np.zeros((len(cells), size, size, 3), np.uint8)
    fields = {file: taleqani_field(file, data_root) for file in cells.file.unique()}
    blocks = stain_groups(cells).to_numpy()
    for block in np.unique(blocks):
        in_block = np.flatnonzero(blocks == block)
        first = sorted(cells.file.iloc[in_block].unique())[:2]
        side = window * detector.estimate_cell_px([fields[f][0] for f in first])
        for file, idx in cells.iloc[in_block].groupby("file").indices.items():
            rows = in_block[idx]
            rgb, boxes = fields[file]
            out[rows] = crop_cells(rgb, boxes.xyxy[cells.cell.to_numpy()[rows]], size=size, side=side)
    return out


def confusion(cells: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """Rows: true type; columns: predicted type (counts)."""
    call = pd.Categorical(np.asarray(CELL_TYPES)[probs.argmax(1)], categories=CELL_TYPES)
    true = pd.Categorical(cells.type.to_numpy(), categories=CELL_TYPES)
    table = pd.crosstab(true, call, dropna=False)
    return table.loc[[t for t in CELL_TYPES if (cells.type == t).any()]]


TXL_LABS = {  # TXL-PBC integrates four public sets (Gan & Li, arXiv:2407.13214); its labs by field size
    "txl-575x575": "Raabin-WBC (normal donors)",
    "txl-360x363": "PBC (the pbc source's images)",
    "txl-416x416": "BCCD or BCDD",
    "txl-366x369": "BCCD or BCDD",
}


def unlabelled_labs(white: pd.DataFrame, models: dict[str, Path], cells: pd.DataFrame) -> dict:
    """Each model's share of each TXL-PBC lab's white cells called blast, and their mean P(blast)."""
    from leukoscan.cards import read_card

    out = {}
    for name, weights in models.items():
        probs = predict(weights, white, cells)
        called = probs.argmax(1) == 0
        trained_on = set(read_card(weights).get("data", {}).get("pseudo_labs", []))
        out[name] = {
            lab: {
                "n": int(len(idx)),
                "called_blast": round(float(called[idx].mean()), 4),
                "mean_p_blast": round(float(probs[idx, 0].mean()), 4),
                "trained_on": lab in trained_on,
            }
            for lab, idx in white.groupby("lab").indices.items()
        }
        print("txl white cells", name, json.dumps(out[name]), flush=True)
    return out


def source_figures(source: str, cells: pd.DataFrame, probs: np.ndarray, subtype: np.ndarray | None = None) -> dict:
    """The shipped model's figures on one source's test cells: per type, and Munich's blast-vs-neutrophil or
    Taleqani's image-level figures (``subtype``: its blasts' subtype probabilities, for the 4-class call)."""
    row = per_type(cells, probs)
    if source == "munich":
        row.update(munich(cells, probs))
    if source == "taleqani":
        row.update(taleqani(cells, probs, subtype))
    return row


def flat_source_figures(test: pd.DataFrame, probs: np.ndarray, keys: dict[str, tuple[str, ...]]) -> dict:
    """``source_figures`` of each source in ``keys`` on its cells of ``test``, those named there, as one flat
    row (``"<source> <figure>"``) for a table of trials."""
    row = {}
    for source, names in keys.items():
        m = (test.source == source).to_numpy()
        figures = source_figures(source, test[m], probs[m])
        row |= {f"{source} {name}": figures[name] for name in names}
    return row


def trial_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The command line of a trial script over the leave-one-lab-out and shipped models: its cell dataset,
    models folder and results name."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="cell dataset folder")
    ap.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--name", default=name, help="results file name")
    return ap


def held_out_sets(cells: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """What each leave-one-lab-out model is scored on: every cell of Munich, PBC and Zheng, Taleqani's test blocks."""
    return {
        "munich": cells[cells.source == "munich"],
        "pbc": cells[cells.source == "pbc"],
        "zheng": cells[cells.source == "zheng"],
        "taleqani": cells[(cells.source == "taleqani") & (cells.split == "test")],
    }


def held_out_row(source: str, subset: pd.DataFrame, probs: np.ndarray, resamples: int = 0) -> dict:
    """The held-out figures of ``source``; with ``resamples``, the headline's 95 % interval as well."""
    row = {"munich": munich, "taleqani": taleqani}.get(source, per_type)(subset, probs)
    if resamples:
        row["headline_interval_95"] = headline_interval(source, subset, probs, resamples)
    return row


def headline_interval(source: str, subset: pd.DataFrame, probs: np.ndarray, resamples: int = 1000) -> list[float]:
    """Percentile bootstrap (2.5 %, 97.5 %) of the held-out headline figure over the test set: whole images for
    Taleqani (an image's cells stay together), cells elsewhere, drawn within each true class so that both
    sides of an AUC keep their size. It is the spread from which cells happened to be scored, not from the
    training run (``bench/crosslab_runs.py``), nor from patients: Munich and PBC have no patient ids and
    Taleqani's test blocks are one patient-like block per class, so the true spread is wider."""
    key = HEADLINE[source][0]
    unit = subset.file.to_numpy() if source == "taleqani" else np.arange(len(subset)).astype(str)
    units = pd.DataFrame({"unit": unit, "truth": subset.original_type.to_numpy()}).drop_duplicates("unit")
    rows_of = pd.Series(np.arange(len(subset))).groupby(unit).apply(np.asarray).to_dict()
    rng = np.random.default_rng(0)
    values = []
    for _ in range(resamples):
        drawn = np.concatenate(
            [rng.choice(group.unit.to_numpy(), size=len(group)) for _, group in units.groupby("truth")]
        )
        parts = [rows_of[u] for u in drawn]
        rows = np.concatenate(parts)
        # a unit drawn twice counts twice: its copies get their own names (taleqani() groups by file)
        copy = np.repeat(np.arange(len(parts)), [len(p) for p in parts]).astype(str)
        sample = subset.iloc[rows].assign(file=subset.file.to_numpy()[rows] + "#" + copy)
        values.append(held_out_row(source, sample, probs[rows])[key])
    return [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]


HEADLINE = {  # held-out source -> (metric, target, higher is better)
    "munich": ("auc_blast_vs_neutrophil", 0.95, True),
    "taleqani": ("image_auc_all_vs_benign", 0.90, True),
    "pbc": ("normal_called_blast", 0.03, False),
    "zheng": ("normal_called_blast", 0.03, False),
}


def markdown(result: dict) -> str:
    lines = (
        [
            "Leave one lab out: each source held out of training, the figures on it (cells never seen); in "
            "brackets the headline's 95 % bootstrap interval over the scored cells (Taleqani: images), not over "
            "training runs or patients.",
            "",
            "| held out | n | headline metric | target | model | Reinhard at inference | other figures (model) |",
            "|---|---|---|---|---|---|---|",
        ]
        if result["leave_one_lab_out"]
        else [f"The shipped models' {result.get('backend')} export: no leave-one-lab-out models (not exported)."]
    )
    for source, rows in result["leave_one_lab_out"].items():
        key, target, higher = HEADLINE[source]
        row, norm = rows["model"], rows.get("reinhard")
        other = {
            k: v
            for k, v in row.items()
            if k not in (key, "n", "per_type_accuracy", "headline_interval_95") and not k.startswith("n_")
        }
        if "per_type_accuracy" in row:
            other["per-type accuracy"] = row["per_type_accuracy"]
        n = row.get("n", row.get("n_images", row.get("n_blasts", 0) + row.get("n_neutrophils", 0)))
        interval = row.get("headline_interval_95")
        span = f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval else ""
        lines.append(
            f"| {source} | {n} | {key} | {'>=' if higher else '<='} {target} | {row[key]:.3f}{span} | "
            f"{'–' if norm is None else f'{norm[key]:.3f}'} | {json.dumps(other)} |"
        )
    lines += _slide_scale_lines(result) + _held_out_confusion_lines(result)
    if result["shipped"]:
        lines += [
            "",
            "Shipped model (all sources) on each source's test split:",
            "",
            "| source | n | accuracy | normal cells called blast | other figures |",
            "|---|---|---|---|---|",
        ]
        for source, row in result["shipped"].items():
            other = {k: v for k, v in row.items() if k not in ("n", "accuracy", "normal_called_blast")}
            ncb = "–" if row["normal_called_blast"] is None else f"{row['normal_called_blast']:.3f}"
            lines.append(f"| {source} | {row['n']} | {row['accuracy']:.3f} | {ncb} | {json.dumps(other)} |")
        lines += [
            "",
            "Confusion of the shipped model on the labelled test cells of PBC, Munich, Zheng and TXL-PBC "
            "(rows: true type, columns: predicted):",
            "",
            result["confusion_md"],
        ]
    if result.get("txl_white"):
        labs = {lab for row in result["txl_white"].values() for lab in row}
        labs = [lab for lab in TXL_LABS if lab in labs] + sorted(labs - set(TXL_LABS))
        lines += [
            "",
            "TXL-PBC's white cells (no types), share called blast, by lab (* the model was self-trained on "
            "that lab's cells):",
            "",
            "| model | "
            + " | ".join(f"{lab} {TXL_LABS.get(lab, '')} (n={n})" for lab, n in _counts(result, labs))
            + " |",
            "|---|" + "---|" * len(labs),
        ]
        for name, row in result["txl_white"].items():
            cells_ = (f"{row[lab]['called_blast']:.3f}" + ("*" if row[lab].get("trained_on") else "") for lab in labs)
            lines.append(f"| {name} | " + " | ".join(cells_) + " |")
    return "\n".join(lines) + "\n"


def _slide_scale_lines(result: dict) -> list[str]:
    """Markdown: Taleqani at the lab scale and at each block's own scale (``at_slide_scale``)."""
    if not result.get("taleqani_slide_scale"):
        return []
    lines = [
        "",
        "Taleqani's test blocks cut at the lab's scale (the dataset's crops, as above) and at each block's own "
        "white-cell estimate on its first two fields (as `leukoscan run` cuts a slide):",
        "",
        "| model | crops | image AUC (ALL vs Benign) | ALL-field cells called blast | Benign cells called blast |",
        "|---|---|---|---|---|",
    ]
    lab_scale = {
        "no-taleqani": result["leave_one_lab_out"].get("taleqani", {}).get("model"),
        "shipped": result["shipped"].get("taleqani"),
    }
    for name, row in result["taleqani_slide_scale"].items():
        for crops, figures in (("lab scale", lab_scale[name]), ("slide scale", row)):
            if figures:
                lines.append(
                    f"| {name} | {crops} | {figures['image_auc_all_vs_benign']:.3f} | "
                    f"{figures['cell_blast_recall_all_fields']:.3f} | {figures['benign_cells_called_blast']:.3f} |"
                )
    return lines


def _held_out_confusion_lines(result: dict) -> list[str]:
    """Markdown: the leave-one-lab-out models' confusion on the typed sources they never saw."""
    lines: list[str] = []
    confusions = {s: rows["confusion"] for s, rows in result["leave_one_lab_out"].items() if "confusion" in rows}
    if confusions:
        lines += ["", "What each leave-one-lab-out model calls the cells of the source it never saw (rows: true type):"]
    for source, table in confusions.items():
        lines += ["", f"no-{source} on {source}:", "", pd.DataFrame.from_dict(table, orient="index").to_markdown()]
    return lines


def _counts(result: dict, labs: list[str]) -> list[tuple[str, int]]:
    first = next(iter(result["txl_white"].values()))
    return [(lab, first[lab]["n"]) for lab in labs]


def shipped(result: dict, cells: pd.DataFrame, weights: Path, data_root: Path, backend: str = "pytorch") -> None:
    """The shipped model (``weights/classifier.pt``) on every source's test split, and its confusion matrix;
    the blast subtype from ``weights``' subtype.pt, or the shipped one when a trial's folder has none."""
    from leukoscan.classify.predict import SubtypeClassifier

    test = cells[cells.split == "test"]
    probs = predict(weights / "classifier.pt", test, cells, backend=backend)
    subtype = weights / "subtype.pt" if (weights / "subtype.pt").exists() else WEIGHTS_DIR / "subtype.pt"
    subtype_model = SubtypeClassifier(subtype, device="cpu", backend=backend)
    for source in ("munich", "pbc", "zheng", "txl", "taleqani"):
        m = (test.source == source).to_numpy()
        subtype = subtype_probs(subtype_model, test[m], data_root) if source == "taleqani" else None
        row = source_figures(source, test[m], probs[m], subtype)
        result["shipped"][source] = row
        print("shipped", source, json.dumps(row), flush=True)
    labelled = (test.source != "taleqani").to_numpy()
    table = confusion(test[labelled], probs[labelled])
    result["confusion"] = {t: table.loc[t].to_dict() for t in table.index}
    result["confusion_md"] = table.to_markdown()


def at_slide_scale(test: pd.DataFrame, cells: pd.DataFrame, weights: Path, data_root: Path) -> dict:
    """The Taleqani figures of the model blind to Taleqani and of the shipped one on its test blocks cut at
    each block's own scale (``slide_scale_crops``), as ``leukoscan run`` would see them."""
    from leukoscan.cards import card_geometry, read_card

    models = {"no-taleqani": weights / "lolo" / "no-taleqani.pt", "shipped": weights / "classifier.pt"}
    cut: dict[tuple, np.ndarray] = {}  # crops per (window, size): each model's, from its card
    out = {}
    for name, w in ((name, w) for name, w in models.items() if w.exists()):
        geometry = card_geometry(read_card(w))
        key = (geometry.window_cells, geometry.cell_crop_px)
        if key not in cut:
            cut[key] = slide_scale_crops(test, data_root, *key)
        out[name] = taleqani(test, predict(w, test, cells, crops=cut[key]))
    print("taleqani at slide scale", json.dumps(out), flush=True)
    return out


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="cell dataset folder")
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT)
    ap.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--name", help="results file name (default crosslab, or crosslab_<backend>)")
    ap.add_argument(
        "--backend",
        choices=("pytorch", "onnx", "openvino", "openvino-int8"),
        default="pytorch",
        help="the shipped models' export (after `leukoscan export`) on the test splits; the leave-one-lab-out "
        "models and TXL-PBC's labs are PyTorch only",
    )
    ap.add_argument(
        "--update-card",
        action="store_true",
        help="write the figures and the sources' manifest hashes into weights/classifier.json",
    )
    ap.add_argument(
        "--resamples", type=int, default=1000, help="bootstrap resamples of each held-out headline's 95 %% interval"
    )
    args = ap.parse_args()
    if args.update_card and args.backend != "pytorch":
        ap.error("--update-card writes the PyTorch model's figures: drop --backend")
    args.name = args.name or ("crosslab" if args.backend == "pytorch" else f"crosslab_{args.backend}")
    if not (args.cells / "cells.csv").exists():
        from leukoscan.datasets.cells import build_cells
        from leukoscan.detect.predict import Detector

        build_cells(args.data_root, args.cells, Detector(device="cpu"))
    from leukoscan.cards import read_card
    from leukoscan.datasets.cells import txl_white_cells

    cells = eval_cells(args.cells)
    result: dict = {"backend": args.backend, "leave_one_lab_out": {}, "shipped": {}}
    held = held_out_sets(cells)
    for source, subset in held.items() if args.backend == "pytorch" else ():
        weights = args.weights / "lolo" / f"no-{source}.pt"
        if not weights.exists():
            print(f"skipped: {weights} missing (python bench/train_crosslab.py --only {source})")
            continue
        probs = predict(weights, subset, cells)
        rows = {"model": held_out_row(source, subset, probs, resamples=args.resamples)}
        if source != "taleqani":  # typed cells: what the model calls each type it never saw from this lab
            rows["confusion"] = confusion(subset, probs).to_dict(orient="index")
        if not read_card(weights).get("stain_normalisation"):  # the inference-only trial, for a model trained without
            rows["reinhard"] = held_out_row(source, subset, predict(weights, subset, cells, normalise=True))
        result["leave_one_lab_out"][source] = rows
        print(source, json.dumps(rows), flush=True)
    if (args.weights / "classifier.pt").exists():  # a trial's folder may hold leave-one-lab-out models only
        shipped(result, cells, args.weights, args.data_root, args.backend)
    if args.backend == "pytorch":
        result["taleqani_slide_scale"] = at_slide_scale(held["taleqani"], cells, args.weights, args.data_root)
        white = txl_white_cells(args.cells, args.data_root)
        models = {f"no-{s}": args.weights / "lolo" / f"no-{s}.pt" for s in held} | {
            "shipped": args.weights / "classifier.pt"
        }
        result["txl_white"] = unlabelled_labs(white, {k: v for k, v in models.items() if v.exists()}, cells)
    RESULTS.mkdir(exist_ok=True)
    md = markdown(result)
    result.pop("confusion_md", None)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(md)
    if args.update_card:
        update_card(args.weights / "classifier.json", result, args.data_root, args.cells / "cleaned" / "clean.json")
    print(md)


def update_card(card_path: Path, result: dict, data_root: Path, cleaning: Path) -> None:
    """Put the leave-one-lab-out table, the shipped model's figures and every source's manifest hash on
    the shipped model's card (the weights and their sha256 are unchanged)."""
    from leukoscan.datasets.cells import FOLDER
    from leukoscan.datasets.splits import manifest_hash

    card = json.loads(card_path.read_text())
    manifests = {}
    for source, folder in FOLDER.items():
        for name in ("manifest.csv", "manifest.sha256"):
            if (data_root / folder / name).exists():
                manifests[f"{folder}/{name}"] = manifest_hash(data_root / folder / name)
    card["data"]["source_manifests_sha256"] = manifests
    if cleaning.exists():  # what the weak-label cleaning did to the shipped model's training labels
        card["data"]["weak_label_cleaning"] = json.loads(cleaning.read_text())
    card["metrics"] = {
        "leave_one_lab_out": result["leave_one_lab_out"],
        "shipped_test": result["shipped"],
        "from": "python bench/eval_crosslab.py --update-card (bench/results/crosslab.md)",
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main()
