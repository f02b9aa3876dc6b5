"""The bundled lab photographs' white cells as a third source of blasts (the trial), and every model on them.

The photographs in ``datasets/samples`` come from labs no model saw; six of the seven look like leukemic blood
to their reviewer (the seventh, ``60d50441…``, of normal cells, a neutrophil and a monocyte among its three, is
left out). Their white cells, reviewed by eye (``cells.coco.json``), carry a weak label (``blast``), as a
Taleqani ALL field's do, and are cut as ``leukoscan run`` cuts a one-photograph slide: at the photograph's own
white-cell diameter (the detector's estimate), ``window_cells`` of them wide.

``--score`` (default): each model's share of each photograph's cells called blast and their mean P(blast)
→ ``bench/results/photo_cells[_NAME].{json,md}``. ``--build DIR``: a copy of the cell dataset (crops hard-linked)
with the photographs' cells added as source ``photos`` (split ``train``; the held-out photograph ``test``),
their weak labels cleaned by Taleqani's rule (``classify.weak.clean_weak_labels``: a granulocyte called with
p >= 0.9 is relabelled) by ``--cleaner``, a model blind to the source the trained model will be blind to (with
its card's scores; Taleqani's cleaners score one view without the class-prior correction),
and each training cell repeated ``--repeat`` times (hard links), so that six photographs weigh as a source:

    python bench/photo_cells.py --build data/cells_photos-no-munich --cleaner weights/lolo/no-munich.pt
    python bench/train_crosslab.py --cells data/cells_photos-no-munich --self-train txl-575x575 --zoom 0.5 \
        --quarter-turns 0.5 --only munich --ship-dir runs/photos --runs runs/cells-photos-no-munich
    python bench/eval_crosslab.py --weights runs/photos --name crosslab_photos
    python bench/photo_cells.py --weights runs/photos --name photos
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_crosslab import predict  # noqa: E402

from bench.lab_photos import SAMPLES, truth_boxes  # noqa: E402
from bench.results_io import save  # noqa: E402
from leukoscan import runtime  # noqa: E402
from leukoscan.config import BUILD_DIR, WEIGHTS_DIR  # noqa: E402

NORMAL = ("60d50441-5c92-4745-91fd-9231cc2fcbb7.jpg",)  # a neutrophil and a monocyte: not a leukemic photograph
HELD_OUT = ("EarlyPreb.jpeg",)  # never trained on (as in the detector's promotion gate)


def photo_cells(window_cells: float, crop_px: int, device: str = "cpu") -> tuple[pd.DataFrame, np.ndarray]:
    """The leukemic photographs' reviewed cells: their rows (``datasets.cells.CELL_COLUMNS``, each photograph a
    lab and a slide of its own; ``crop`` the path ``--build`` writes it to) and their crops, in that order."""
    from leukoscan.crops import crop_cells
    from leukoscan.datasets.cells import CELL_COLUMNS
    from leukoscan.detect.predict import Detector
    from leukoscan.images import load_rgb

    boxes = truth_boxes(SAMPLES / "cells.coco.json")
    detector = Detector(device=device)
    rows, crops = [], []
    for name, det in sorted(boxes.items()):
        if name in NORMAL:
            continue
        rgb = load_rgb(SAMPLES / name)
        cell_px = detector.estimate_cell_px([rgb])
        stem = "".join(c if c.isalnum() else "-" for c in Path(name).stem)[:24]
        recs = [
            {
                "crop": f"crops/photos/{stem}_{i:03d}.png",
                "source": "photos",
                "lab": f"photo-{stem}",
                "file": name,
                "cell": i,
                "type": "blast",
                "subtype": "",
                "weak": True,
                "split": "test" if name in HELD_OUT else "train",
                "cell_px": round(cell_px, 2),
                "box": "reviewed",
            }
            for i in range(len(det))
        ]
        crops.append(crop_cells(rgb, det.xyxy, size=crop_px, side=window_cells * cell_px))
        rows += recs
        print(f"{name}: {len(det)} cells at {cell_px:.1f} px", flush=True)
    return pd.DataFrame(rows, columns=CELL_COLUMNS), np.concatenate(crops)


def _link_png(src: str, dst: str) -> None:
    """shutil.copytree's copy function: a crop is hard-linked (never written again), any other file copied
    (cells.csv, summary.json, … may be rewritten in the copy without touching the source)."""
    (os.link if src.endswith(".png") else shutil.copy2)(src, dst)


def build(cells_dir: Path, out: Path, cleaner: Path, repeat: int) -> dict:
    """``out``: ``cells_dir`` (crops hard-linked) with the photographs' cells added, cleaned by ``cleaner``."""
    from leukoscan.classify.weak import clean_weak_labels, cleaning_summary
    from leukoscan.datasets.cells import CELL_COLUMNS, dataset_geometry, read_cells, write_crops

    source, target = cells_dir.resolve(), out.resolve()
    if source == target or source in target.parents or target in source.parents:
        raise SystemExit(f"--build {out}: must be a folder apart from the cell dataset {cells_dir}")
    cells = read_cells(cells_dir)
    if (cells.source == "photos").any():
        raise SystemExit(f"{cells_dir} already holds the photographs' cells: build from the dataset without them")
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(cells_dir, out, copy_function=_link_png, ignore=shutil.ignore_patterns("cleaned", "runs", "pseudo"))
    geo = dataset_geometry(cells_dir)
    photos, crops = photo_cells(geo.window_cells, geo.cell_crop_px)
    write_crops(out, photos.to_dict("records"), crops)
    cleaned = clean_weak_labels(photos, predict(cleaner, photos, photos, crops=crops))
    summary = cleaning_summary(cleaned) | {"cleaner": str(cleaner), "repeat": repeat}
    train = cleaned[cleaned.split == "train"]
    copies = []
    for k in range(1, repeat):
        copy = train.assign(crop=train.crop.str.replace(".png", f"_r{k}.png", regex=False))
        for src, dst in zip(train.crop, copy.crop):
            os.link(out / src, out / dst)
        copies.append(copy)
    added = pd.concat([cleaned, *copies])[CELL_COLUMNS]
    pd.concat([cells[CELL_COLUMNS], added]).to_csv(out / "cells.csv", index=False)
    (out / "photos.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)
    return summary


def score(models: dict[str, Path]) -> list[dict]:
    """Each model's share of each photograph's cells called blast, and their mean P(blast); the cells cut at
    each model's own window (its card's)."""
    from leukoscan.cards import card_geometry, read_card
    from leukoscan.cells import CELL_TYPES

    cut: dict[tuple, tuple[pd.DataFrame, np.ndarray]] = {}  # the photographs' cells and crops per (window, size)
    rows = []
    blast = CELL_TYPES.index("blast")
    for model, weights in models.items():
        geo = card_geometry(read_card(weights))
        key = (geo.window_cells, geo.cell_crop_px)
        if key not in cut:
            cut[key] = photo_cells(*key)
        photos, crops = cut[key]
        probs = predict(weights, photos, photos, crops=crops)
        called = probs.argmax(1) == blast
        for name, idx in photos.groupby("file").indices.items():
            rows.append(
                {
                    "model": model,
                    "photo": name + (" (held out of --build)" if name in HELD_OUT else ""),
                    "n": len(idx),
                    "called_blast": round(float(called[idx].mean()), 3),
                    "mean_p_blast": round(float(probs[idx, blast].mean()), 3),
                }
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="the cell dataset to copy (--build)")
    ap.add_argument("--build", type=Path, help="write a copy of the cell dataset with the photographs' cells")
    ap.add_argument("--cleaner", type=Path, help="--build: the model that cleans their weak labels")
    ap.add_argument("--repeat", type=int, default=4, help="--build: each training cell this many times")
    ap.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="folder of classifier.pt and lolo/")
    ap.add_argument("--name", default="", help="results name suffix")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if args.build:
        if not args.cleaner:
            ap.error("--build needs --cleaner")
        build(args.cells, args.build, args.cleaner, args.repeat)
        return
    models = {p.stem: p for p in sorted((args.weights / "lolo").glob("no-*.pt"))}
    if (args.weights / "classifier.pt").exists():
        models["shipped"] = args.weights / "classifier.pt"
    if not models:
        ap.error(f"{args.weights} holds no classifier.pt nor lolo/no-*.pt")
    rows = score(models)
    table = pd.DataFrame(rows).pivot(index=["photo", "n"], columns="model", values="called_blast").reset_index()
    name = "photo_cells" + (f"_{args.name}" if args.name else "")
    command = (
        "python bench/photo_cells.py"
        + (f" --weights {args.weights}" if args.weights != WEIGHTS_DIR else "")
        + (f" --name {args.name}" if args.name else "")
    )
    md = (
        f"Share of each bundled photograph's reviewed white cells called blast, by model (`{command}`; each "
        "photograph a one-photo slide at its own cell-size estimate; weak labels: the reviewer's reading is that "
        "each photograph's cells are mostly, not all, blasts; a model trained on a `--build` copy has seen every "
        "photograph but the held-out one):\n\n" + table.to_markdown(index=False) + "\n"
    )
    save(name, {"weights": str(args.weights), "rows": rows}, md)


if __name__ == "__main__":
    main()
