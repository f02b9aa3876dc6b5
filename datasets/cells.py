"""The cross-lab white-cell dataset: crops of one physical scale from five sources, with their cell type.

Sources (``../shared/datasets``): ``pbc`` (Barcelona, 8 normal types), ``munich-aml`` (Munich, myeloblasts
and segmented neutrophils), ``zheng-wbc`` (two labs, 5 normal types), ``all-taleqani`` (ALL fields; weak
per-image labels) and ``txl-pbc`` (red-cell boxes from several labs: the ``other`` class, a red cell boxed
by mistake). Every crop is a square of ``window_cells`` white-cell diameters around the cell, the cell
diameter being the lab's median of ``Detector.estimate_cell_px`` (the estimate ``leukoscan run`` makes per
slide): a blast stays larger than a lymphocyte in its crop on every source.

Splits are per source and deterministic, after exact (sha256) and near (perceptual hash) duplicates are
dropped: Taleqani keeps its contiguous file-number blocks (``datasets/splits.py``); PBC, Munich, Zheng and
TXL-PBC have no patient ids, so their images are split by a hash of the file name (70/15/15; a patient's
cells may sit in two splits of one source, which is why no figure is ever reported on a source's own
test split alone: the leave-one-lab-out table holds each source out whole).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from leukoscan.cells import CELL_TYPES, PART, SUBTYPES
from leukoscan.cli import track
from leukoscan.config import DATA_ROOT, SETTINGS, Geometry
from leukoscan.crops import crop_cells, window_px
from leukoscan.images import load_rgb, read_crop, to_bgr

SOURCES = ("pbc", "munich", "zheng", "taleqani", "txl")
# folder class -> cell type, per single-cell source
TYPE_OF = {
    "pbc": {
        "lymphocyte": "lymphocyte",
        "monocyte": "monocyte",
        "basophil": "basophil",
        "neutrophil": "neutrophil",
        "eosinophil": "eosinophil",
        "ig": "immature_granulocyte",
        "erythroblast": "erythroblast",
        "platelet": "other",
    },
    "munich": {"myeloblast": "blast", "seg_neutrophil": "neutrophil"},
    "zheng": {k: k for k in ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil")},
}
FOLDER = {"pbc": "pbc", "munich": "munich-aml", "zheng": "zheng-wbc", "taleqani": "all-taleqani", "txl": "txl-pbc"}
TALEQANI_SUBTYPE = {"Early": "early_pre_b", "Pre": "pre_b", "Pro": "pro_b"}
CELL_COLUMNS = ["crop", "source", "lab", "file", "cell", "type", "subtype", "weak", "split", "cell_px", "box"]
TXL_PER_SPLIT = {"train": 800, "val": 150, "test": 150}  # red-cell and platelet crops ("other") from TXL-PBC


def hash_split(name: str, val: float = 0.15, test: float = 0.15) -> str:
    """Deterministic split of a file with no patient id, from a hash of its name."""
    u = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 2**32
    return "test" if u < test else "val" if u < test + val else "train"


def near_duplicates(phashes: list[str], bits: int = SETTINGS.splits.near_dup_bits) -> np.ndarray:
    """True for each image within ``bits`` of an earlier one (the first copy is kept)."""
    h = np.array([int(p, 16) for p in phashes], dtype=np.uint64)
    drop = np.zeros(len(h), dtype=bool)
    for i in range(len(h)):
        if not drop[i]:
            later = np.bitwise_count(h[i + 1 :] ^ h[i]) <= bits
            drop[i + 1 :] |= later
    return drop


def single_cell_images(data_root: Path) -> pd.DataFrame:
    """One row per single-cell image (source, lab, file, type, split), duplicates dropped."""
    rows = []
    for source in ("pbc", "munich", "zheng"):
        root = data_root / FOLDER[source]
        m = pd.read_csv(root / "manifest.csv")
        for rec in m.itertuples():
            name = Path(rec.file).name
            lab = f"zheng-{name[:2]}" if source == "zheng" else source  # Zheng's two labs: d1_*, d2_*
            rows.append(
                {
                    "source": source,
                    "lab": lab,
                    "file": f"{FOLDER[source]}/{rec.file}",
                    "type": TYPE_OF[source][rec[2]],
                    "split": hash_split(name),
                }
            )
    df = pd.DataFrame(rows)
    sha, ph = [], []
    for f in track(df.file, "hashing single-cell images"):
        data = (data_root / f).read_bytes()
        sha.append(hashlib.sha256(data).hexdigest())
        with Image.open(data_root / f) as im:
            ph.append(str(imagehash.phash(im)))
    df["sha256"], df["phash"] = sha, ph
    keep = ~df.duplicated("sha256")
    for source in df.source.unique():
        idx = df.index[(df.source == source) & keep]
        keep[idx[near_duplicates(df.loc[idx, "phash"].tolist())]] = False
    return df[keep].reset_index(drop=True)


def lab_cell_px(detector, images: list[np.ndarray], pairs: int = 20, seed: int = 0) -> float:
    """A lab's white-cell diameter: the median of the detector's per-slide estimate over pairs of its images."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=min(2 * pairs, len(images)), replace=False)
    return float(
        np.median([detector.estimate_cell_px([images[i] for i in pick[k : k + 2]]) for k in range(0, len(pick), 2)])
    )


def central_box(det, shape: tuple[int, int], cell_px: float) -> tuple[np.ndarray, str]:
    """The detected box nearest the image centre (a single-cell image is centred on its cell), or a
    cell-sized box at the centre when the detector finds none near it."""
    h, w = shape
    centre = np.array([w / 2, h / 2])
    if len(det):
        d = np.linalg.norm((det.xyxy[:, :2] + det.xyxy[:, 2:]) / 2 - centre, axis=1)
        i = int(d.argmin())
        if d[i] < 0.25 * min(h, w):
            return det.xyxy[i], "detector"
    r = cell_px / 2
    return np.array([centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r], dtype=np.float32), "centre"


def write_crops(out: Path, rows: list[dict], crops: np.ndarray) -> None:
    for row, crop in zip(rows, crops):
        path = out / row["crop"]
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), to_bgr(crop))


def build_single_cells(
    data_root: Path, out: Path, detector, batch: int = 64, geo: Geometry = SETTINGS.geometry
) -> list[dict]:
    images = single_cell_images(data_root)
    rows = []
    for lab, group in images.groupby("lab", sort=True):
        rgb = [load_rgb(data_root / f) for f in track(group.file, f"{lab}: loading")]
        cell_px = lab_cell_px(detector, rgb)
        side = window_px(cell_px, geo)
        for start in track(range(0, len(rgb), batch), f"{lab}: cells at {cell_px:.1f} px"):
            chunk = rgb[start : start + batch]
            dets = detector.detect(chunk, cell_size=cell_px)
            recs, crops = [], []
            for rec, im, det in zip(group.iloc[start : start + batch].itertuples(), chunk, dets):
                box, how = central_box(det, im.shape[:2], cell_px)
                recs.append(
                    {
                        "crop": f"crops/{rec.source}/{Path(rec.file).stem}.png",
                        "source": rec.source,
                        "lab": lab,
                        "file": rec.file,
                        "cell": 0,
                        "type": rec.type,
                        "subtype": "",
                        "weak": False,
                        "split": rec.split,
                        "cell_px": round(cell_px, 2),
                        "box": how,
                    }
                )
                crops.append(crop_cells(im, box[None], size=geo.cell_crop_px, side=side)[0])
            write_crops(out, recs, crops)
            rows += recs
    return rows


def build_taleqani(
    data_root: Path, out: Path, detector, manifest: pd.DataFrame, geo: Geometry = SETTINGS.geometry
) -> list[dict]:
    """Every white cell of the used Taleqani fields (mask or colour boxes, as the detection set), labelled
    with the field's diagnosis: ``blast`` (subtype from the diagnosis) or, for Benign fields, ``lymphocyte``
    (weak: hematogones and normal lymphocytes); ``weak`` marks them for cleaning."""
    from leukoscan.datasets.build import taleqani_cells

    root = data_root / "all-taleqani"
    used = manifest[manifest.split != ""]
    sample = used.iloc[np.linspace(0, len(used) - 1, 40).astype(int)]
    cell_px = lab_cell_px(detector, [load_rgb(root / "Original" / f) for f in sample.file])
    side = window_px(cell_px, geo)
    rows = []
    for row in track(list(used.itertuples()), f"taleqani: cells at {cell_px:.1f} px"):
        rgb, boxes, _ = taleqani_cells(root, row)
        benign = row.class_dir == "Benign"
        recs = [
            {
                "crop": f"crops/taleqani/{Path(row.file).stem}_{i:02d}.png",
                "source": "taleqani",
                "lab": "taleqani",
                "file": f"all-taleqani/Original/{row.file}",
                "cell": i,
                "type": "lymphocyte" if benign else "blast",
                "subtype": "" if benign else TALEQANI_SUBTYPE[row.class_dir],
                "weak": True,
                "split": row.split,
                "cell_px": round(cell_px, 2),
                "box": "mask" if row.class_dir != "Pro" else "colour",
            }
            for i in range(len(boxes))
        ]
        write_crops(out, recs, crop_cells(rgb, boxes.xyxy, size=geo.cell_crop_px, side=side))
        rows += recs
    return rows


def inside_fraction(squares: np.ndarray, width: int, height: int) -> np.ndarray:
    """Fraction of each square box (xyxy) that lies inside a ``width`` x ``height`` image."""
    x0, y0 = squares[:, 0].clip(0, width), squares[:, 1].clip(0, height)
    x1, y1 = squares[:, 2].clip(0, width), squares[:, 3].clip(0, height)
    return (x1 - x0) * (y1 - y0) / np.maximum((squares[:, 2] - squares[:, 0]) * (squares[:, 3] - squares[:, 1]), 1e-6)


def build_txl_other(data_root: Path, out: Path, seed: int = 0, geo: Geometry = SETTINGS.geometry) -> list[dict]:
    """Red cells and platelets from TXL-PBC fields (several labs) as ``other``: what a red cell or a platelet
    clump boxed by mistake looks like. The field's cell diameter is the median of its white-cell boxes;
    only objects whose crop window lies (almost) wholly inside the field are used, so padding never marks
    the class."""
    txl = data_root / "txl-pbc"
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in TXL_PER_SPLIT.items():
        files = sorted((txl / "images" / split).glob("*.jpg"))
        files = [files[i] for i in rng.permutation(len(files))]
        picked = 0
        for img in track(files, f"txl-pbc {split}: red cells and platelets"):
            if picked >= n:
                break
            recs = _txl_other_field(txl, split, img, out, rng, geo)
            rows += recs
            picked += len(recs)
    return rows


def _txl_other_field(
    txl: Path, split: str, img: Path, out: Path, rng: np.random.Generator, geo: Geometry
) -> list[dict]:
    """Up to two red cells or platelets of one TXL-PBC field, their crops written; their rows."""
    from leukoscan.crops import square_boxes
    from leukoscan.datasets.build import read_yolo

    rgb = load_rgb(img)
    h, w = rgb.shape[:2]
    label = txl / "labels" / split / f"{img.stem}.txt"
    wbc = read_yolo(label, w, h, 0)
    if not len(wbc):
        return []
    objects = np.concatenate([read_yolo(label, w, h, 1).xyxy, read_yolo(label, w, h, 2).xyxy])
    cell_px = float(np.median(np.maximum(wbc.xyxy[:, 2] - wbc.xyxy[:, 0], wbc.xyxy[:, 3] - wbc.xyxy[:, 1])))
    side = window_px(cell_px, geo)
    ok = np.nonzero(inside_fraction(square_boxes(objects, side=side), w, h) >= 0.9)[0]
    if not len(ok):
        return []
    pick = rng.choice(ok, size=min(2, len(ok)), replace=False)
    recs = [
        {
            "crop": f"crops/txl/{img.stem}_{i:02d}.png",
            "source": "txl",
            "lab": "txl",
            "file": f"txl-pbc/images/{split}/{img.name}",
            "cell": int(i),
            "type": "other",
            "subtype": "",
            "weak": False,
            "split": split,
            "cell_px": round(cell_px, 2),
            "box": "label",
        }
        for i in pick
    ]
    write_crops(out, recs, crop_cells(rgb, objects[pick], size=geo.cell_crop_px, side=side))
    return recs


def txl_lab(width: int, height: int) -> str:
    """The lab of a TXL-PBC field: its four source sets are told apart by their image size."""
    return f"txl-{width}x{height}"


TXL_FROM = {"pbc": txl_lab(360, 363)}  # TXL-PBC labs whose fields are another source's images (PBC's, full size)


def txl_field_labs(files: pd.Series, data_root: Path = DATA_ROOT) -> pd.Series:
    """The TXL-PBC lab (``txl_lab``) of each field in ``files`` (paths under ``data_root``), from its
    image size; ``txl`` for all when ``data_root`` lacks TXL-PBC."""
    if not (data_root / FOLDER["txl"]).is_dir():
        return pd.Series("txl", index=files.index)
    sizes = {}
    for f in files.unique():
        with Image.open(data_root / f) as im:
            sizes[f] = txl_lab(*im.size)
    return files.map(sizes)


def dataset_geometry(folder: Path) -> Geometry:
    """The crop geometry a built cell dataset was cut with (its ``summary.json``; the defaults for a folder
    without one): what a model trained on it must cut a slide's cells with."""
    summary = folder / "summary.json"
    record = json.loads(summary.read_text()).get("geometry", {}) if summary.exists() else {}
    return SETTINGS.geometry.with_crop_record(record)


def txl_white_cells(folder: Path, data_root: Path = DATA_ROOT, device: str = "cpu") -> pd.DataFrame:
    """``txl_white.csv`` of a built cell dataset (``build_txl_white`` first, when it is missing), with
    ``attrs['root']`` its folder, as ``read_cells``."""
    if not (folder / "txl_white.csv").exists():
        from leukoscan.detect.predict import Detector

        build_txl_white(data_root, folder, Detector(device=device), geo=dataset_geometry(folder))
    white = pd.read_csv(folder / "txl_white.csv", keep_default_na=False)
    white.attrs["root"] = Path(folder)
    return white


def build_txl_white(
    data_root: Path, out: Path, detector, min_inside: float = 0.75, geo: Geometry = SETTINGS.geometry
) -> pd.DataFrame:
    """TXL-PBC's white cells (several labs, told apart by image size; their type unknown) as crops of the
    cell-type geometry, for self-training: ``out/crops/txlwbc/<field>_<i>.png`` and ``out/txl_white.csv``
    (``CELL_COLUMNS``, no type). A lab's cell diameter is ``lab_cell_px`` (the detector's estimate, as
    ``leukoscan run`` measures a slide); a cell whose window lies less than ``min_inside`` inside its field
    is left out."""
    from leukoscan.crops import square_boxes
    from leukoscan.datasets.build import read_yolo

    txl = data_root / FOLDER["txl"]
    fields = pd.DataFrame(
        [
            {"split": split, "path": img}
            for split in ("train", "val", "test")
            for img in sorted((txl / "images" / split).glob("*.jpg"))
        ]
    )
    images = [load_rgb(f) for f in track(fields.path, "txl-pbc: loading")]
    fields["lab"] = [txl_lab(im.shape[1], im.shape[0]) for im in images]
    rows = []
    for lab, group in fields.groupby("lab", sort=True):
        cell_px = lab_cell_px(detector, [images[i] for i in group.index])
        side = window_px(cell_px, geo)
        for i, f in zip(group.index, track(group.itertuples(), f"{lab}: white cells at {cell_px:.1f} px")):
            h, w = images[i].shape[:2]
            wbc = read_yolo(txl / "labels" / f.split / f"{f.path.stem}.txt", w, h, 0)
            keep = (
                np.nonzero(inside_fraction(square_boxes(wbc.xyxy, side=side), w, h) >= min_inside)[0]
                if len(wbc)
                else []
            )
            recs = [
                {
                    "crop": f"crops/txlwbc/{f.path.stem}_{k:02d}.png",
                    "source": "txl",
                    "lab": lab,
                    "file": f"{FOLDER['txl']}/images/{f.split}/{f.path.name}",
                    "cell": int(k),
                    "type": "",
                    "subtype": "",
                    "weak": False,
                    "split": f.split,
                    "cell_px": round(cell_px, 2),
                    "box": "annotation",
                }
                for k in keep
            ]
            write_crops(out, recs, crop_cells(images[i], wbc.xyxy[keep], size=geo.cell_crop_px, side=side))
            rows += recs
    df = pd.DataFrame(rows, columns=CELL_COLUMNS)
    df.to_csv(out / "txl_white.csv", index=False)
    return df


def build_cells(data_root: Path, out: Path, detector, geo: Geometry = SETTINGS.geometry) -> pd.DataFrame:
    """Write ``out/crops/<source>/…png`` and ``out/cells.csv`` (one row per crop, ``CELL_COLUMNS``), and
    TXL-PBC's unlabelled white cells (``build_txl_white``)."""
    from leukoscan.datasets.splits import build_manifest

    out.mkdir(parents=True, exist_ok=True)
    manifest = build_manifest(data_root / "all-taleqani", out / "taleqani_manifest.csv", progress=track)
    rows = build_single_cells(data_root, out, detector, geo=geo)
    rows += build_txl_other(data_root, out, geo=geo)
    rows += build_taleqani(data_root, out, detector, manifest, geo=geo)
    df = pd.DataFrame(rows, columns=CELL_COLUMNS)
    assert set(df.type) <= set(CELL_TYPES) and set(df.subtype) - {""} <= set(SUBTYPES)
    df.to_csv(out / "cells.csv", index=False)
    # unlabelled, for self-training (`leukoscan classify pseudo-label`)
    build_txl_white(data_root, out, detector, geo=geo)
    summary = {
        "geometry": geo.crop_record(),
        "cell_px": df.groupby("lab").cell_px.median().round(2).to_dict(),
        "counts": {f"{s}/{sp}": g.type.value_counts().to_dict() for (s, sp), g in df.groupby(["source", "split"])},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return df


def training_folder(
    df: pd.DataFrame,
    out: Path,
    exclude: tuple[str, ...] = (),
    min_per_type: int = 400,
    blasts_per_field: int = 2,
    seed: int = 0,
    data_root: Path = DATA_ROOT,
    equal_blast_sources: bool = False,
    blast_parts: bool = False,
) -> dict[str, dict[str, int]]:
    """Link a training run's crops into ``out/{train,val}/<type>/`` (Ultralytics' folder layout) from every
    source but ``exclude`` (TXL-PBC's crops from an excluded source's images too, ``TXL_FROM``). Crops
    labelled ``drop`` (weak-label cleaning) are left out; a Taleqani ALL field
    gives at most ``blasts_per_field`` blasts (its crowded fields would otherwise outnumber every other
    source); types with fewer than ``min_per_type`` training crops are repeated up to it (links under other
    names: the augmentation makes each copy different). With ``equal_blast_sources`` every source of training
    blasts gives as many as the others, as many blasts in all as before (to one; a larger source's sampled down, a
    smaller's repeated): so that one hospital's lymphoblasts do not decide what a blast is (the trial). With
    ``blast_parts`` each source's blasts are a class of their own, ``blast~<source>`` (``cells.PART``), whose
    probabilities the classifier adds up into P(blast): myeloblasts and lymphoblasts need not share one output
    (the trial)."""
    import os
    import shutil

    rng = np.random.default_rng(seed)
    if out.exists():
        shutil.rmtree(out)
    use = df[~df.source.isin(exclude) & (df.type != "drop") & df.split.isin(["train", "val"])]
    use = use.drop(_txl_from(use, exclude, data_root).index)
    field_blasts = (use.source == "taleqani") & (use.type == "blast")
    order = use[field_blasts].sample(frac=1, random_state=seed).groupby("file").cumcount()
    use = use.drop(order.index[order >= blasts_per_field])
    use = use.assign(repeat=False)  # True: a training crop linked again under another name
    if equal_blast_sources:
        use = _equal_sources(use, rng)
    if blast_parts:
        use = use.assign(type=use.type.where(use.type != "blast", "blast" + PART + use.source))
    counts: dict[str, dict[str, int]] = {}
    for (split, kind), group in use.groupby(["split", "type"]):
        folder = out / split / kind
        folder.mkdir(parents=True, exist_ok=True)
        crops, extra = list(group.crop[~group.repeat]), list(group.crop[group.repeat])
        if split == "train":
            extra += list(rng.choice(crops, size=max(0, min_per_type - len(crops) - len(extra))))
        for n, crop in enumerate(crops + extra):
            name = Path(crop).name if n < len(crops) else f"{Path(crop).stem}_r{n}.png"
            os.link(df.attrs["root"] / crop, folder / f"{Path(crop).parent.name}_{name}")  # see link_lab
        counts.setdefault(split, {})[kind] = len(crops) + len(extra)
    return counts


def _equal_sources(use: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """``use`` with each source of training blasts brought to their mean count (``training_folder``'s
    ``equal_blast_sources``): a larger source's sampled away, a smaller's repeated (rows with ``repeat``)."""
    blasts = use[(use.split == "train") & (use.type == "blast")]
    if blasts.empty:
        return use
    target = round(len(blasts) / blasts.source.nunique())
    dropped, repeated = [], []
    for _, group in blasts.groupby("source"):
        if len(group) > target:
            dropped.extend(rng.choice(group.index, size=len(group) - target, replace=False))
        else:
            repeated.extend(rng.choice(group.index, size=target - len(group)))
    return pd.concat([use.drop(dropped), use.loc[repeated].assign(repeat=True)])


def _excluded_txl_labs(exclude: tuple[str, ...]) -> set[str]:
    """The TXL-PBC labs whose fields are images of an ``exclude``d source (``TXL_FROM``): a model blind to
    PBC must not see PBC's images as TXL-PBC's red cells and platelets."""
    return {TXL_FROM[s] for s in exclude if s in TXL_FROM}


def _txl_from(cells: pd.DataFrame, exclude: tuple[str, ...], data_root: Path = DATA_ROOT) -> pd.DataFrame:
    """The TXL-PBC rows of ``cells`` whose field is an image of an ``exclude``d source."""
    labs = _excluded_txl_labs(exclude)
    txl = cells[cells.source == "txl"]
    if not labs or txl.empty:
        return txl.iloc[:0]
    return txl[txl_field_labs(txl.file, data_root).isin(labs)]


def link_lab(name: str) -> str:
    """The lab of a crop in a ``training_folder`` from its file name (``<source>_<crop name>``; Zheng's
    crops start with their lab, d1 or d2); TXL-PBC's several labs are one, ``txl``."""
    source, _, rest = name.partition("_")
    return f"zheng-{rest[:2]}" if source == "zheng" else source


def stain_groups(cells: pd.DataFrame) -> pd.Series:
    """The colour-normalisation group of each crop, what one slide is at inference: its lab, or for Taleqani
    its contiguous block of one class (about one patient)."""
    manifest = pd.read_csv(cells.attrs["root"] / "taleqani_manifest.csv", keep_default_na=False)
    block = dict(zip("all-taleqani/Original/" + manifest.file, manifest.class_dir + "-" + manifest.block.astype(str)))
    return pd.Series(
        np.where(cells.source == "taleqani", "taleqani/" + cells.file.map(block).fillna(""), cells.lab),
        index=cells.index,
    )


def lab_stain_targets(
    cells: pd.DataFrame,
    exclude: tuple[str, ...] = (),
    data_root: Path = DATA_ROOT,
    n: int = 500,
    seed: int = 0,
    region: str = "surround",
) -> dict[str, tuple[tuple[float, ...], tuple[float, ...]]]:
    """The colour of each lab a model trains on (every source but ``exclude``): the Lab mean and SD over
    ``region`` of up to ``n`` of its crops (pooled, as ``normalised_copy``), from and to which
    ``LabAugment``'s stain transfer recolours training crops. TXL-PBC's fields come from several labs,
    told apart by their image size when ``data_root`` has them (targets only: ``link_lab`` cannot tell
    them apart)."""
    from leukoscan.classify.stain import lab_stats

    use = cells[~cells.source.isin(exclude) & (cells.split == "train")]
    labs = use.lab.copy()
    txl = use.source == "txl"
    labs[txl] = txl_field_labs(use.file[txl], data_root)  # each field's size read once
    keep = ~labs.isin(_excluded_txl_labs(exclude))
    use, labs = use[keep], labs[keep]
    targets = {}
    for lab, rows in use.groupby(labs):
        if len(rows) >= 20:  # a handful of crops says little of a lab's colour
            mean, sd = lab_stats(read_crops(rows.sample(min(len(rows), n), random_state=seed)), region)
            targets[lab] = (tuple(mean.round(3).tolist()), tuple(sd.round(3).tolist()))
    return targets


def stain_reference(
    cells: pd.DataFrame, n: int = 2000, seed: int = 0, region: str = "cells", channels: str = "Lab"
) -> dict:
    """The colour every crop is normalised to: the pooled Lab mean and SD of ``n`` Taleqani training crops
    (a source every leave-one-lab-out model but one trains on; any fixed colour would do), over the pixels
    of ``region`` (``classify.stain.lab_stats``)."""
    from leukoscan.classify.stain import lab_stats

    rows = cells[(cells.source == "taleqani") & (cells.split == "train")].sample(n, random_state=seed)
    mean, sd = lab_stats(read_crops(rows), region)
    return {
        "method": "reinhard-lab",
        "per": "slide",
        "region": region,
        "channels": channels,
        "mean": mean.round(4).tolist(),
        "sd": sd.round(4).tolist(),
    }


def normalised_copy(
    cells: pd.DataFrame, out: Path, seed: int = 0, region: str = "cells", channels: str = "Lab"
) -> dict:
    """Write every crop Reinhard-normalised by its group (``stain_groups``: the group's pooled Lab statistics
    over the pixels of ``region``, from up to 1,000 of its crops, mapped onto ``stain_reference``) into
    ``out`` (same layout and tables), with ``normalisation.json``; the normalisation record (``channels``:
    ``Lab``, or ``L`` for the lightness alone)."""
    from leukoscan.classify.stain import lab_stats, reinhard

    record = stain_reference(cells, seed=seed, region=region, channels=channels)
    reference = (record["mean"], record["sd"])
    for group, rows in track(list(cells.groupby(stain_groups(cells))), "colour-normalised crops"):
        stats = lab_stats(read_crops(rows.sample(min(len(rows), 1000), random_state=seed)), region)
        write_crops(out, rows.to_dict("records"), reinhard(read_crops(rows), stats, reference, channels))
    cells[CELL_COLUMNS].to_csv(out / "cells.csv", index=False)
    for name in ("taleqani_manifest.csv", "summary.json"):
        (out / name).write_bytes((cells.attrs["root"] / name).read_bytes())
    (out / "normalisation.json").write_text(json.dumps(record, indent=2))
    return record


def read_crops(cells: pd.DataFrame) -> np.ndarray:
    """The RGB crops of rows of a ``read_cells`` table (N x crop_px x crop_px x 3)."""
    return np.stack([read_crop(cells.attrs["root"] / c) for c in cells.crop])


def read_cells(folder: Path) -> pd.DataFrame:
    """``cells.csv`` of a built cell dataset (``attrs['root']`` is its folder, where the crops are)."""
    df = pd.read_csv(folder / "cells.csv", keep_default_na=False)
    if missing := [c for c in CELL_COLUMNS if c not in df.columns]:
        raise ValueError(f"{folder / 'cells.csv'} has no {missing} columns: build it with `leukoscan data cells`")
    df["weak"] = df.weak.astype(str) == "True"
    df.attrs["root"] = Path(folder)
    return df
