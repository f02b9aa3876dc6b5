"""Can a lab's own normal cells choose the window its cells are cut at (#15, the next step after
``bench/window_heldout.py``)? Each leave-one-lab-out model on the source it never saw, that source taken as
one laboratory whose normal slides are its reference (split as ``bench/eval_lab_reference.py`` splits it:
half of Munich's neutrophils, of PBC's and of Zheng's normal cells; Taleqani's Benign cells of its validation
blocks), every cell cut as ``leukoscan data cells`` cuts it (around the detector's box nearest the image
centre, or a Taleqani field's box) with the model's window x ``factor``.

Per factor: how familiar the reference cells look to the model (the mean, over them, of the largest
probability of a normal type: no blast is looked at), then the figures on the rest of the source (the table's
headline: Munich's AUC of P(blast), myeloblasts vs neutrophils; Taleqani's image AUC on its test blocks; the
normal cells called blast), without a reference and with the call placed at 2 % of the reference cells (as
``leukoscan lab-reference`` places it). The chosen factor is the most familiar one.

    python bench/window_reference.py        # writes bench/results/window_reference.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from eval_crosslab import NORMAL, auc, cell_boxes, cut, eval_cells, taleqani  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.config import BUILD_DIR, DATA_ROOT, SETTINGS, WEIGHTS_DIR  # noqa: E402

FACTORS = (0.76, 0.86, 1.0, 1.15)
SOURCES = ("munich", "pbc", "zheng", "taleqani")


def reference_split(source: str, subset: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The reference cells, the cells scored and which are blasts (masks over ``subset``), as
    ``eval_lab_reference.lab_sets`` splits a source."""
    if source == "taleqani":
        blast = (subset.original_type == "blast").to_numpy()
        return (subset.split == "val").to_numpy() & ~blast, (subset.split == "test").to_numpy(), blast
    blast = (subset.type == "blast").to_numpy()
    half = np.arange(len(subset)) % 2 == 0
    return half & ~blast, ~half | blast, blast


def figures(source: str, subset: pd.DataFrame, probs: np.ndarray, ref: np.ndarray, scored: np.ndarray, blast):
    """The figures of one factor: the reference's familiarity, the headline and the calls without a
    reference and at 2 % of the reference cells."""
    from leukoscan.cells import BLAST, CELL_TYPES, IS_WHITE, blast_margin
    from leukoscan.lab import fit_offset, shift_blast

    normal = [CELL_TYPES.index(t) for t in CELL_TYPES if t in NORMAL]
    reference = probs[ref]
    out = {"familiarity": round(float(reference[:, normal].max(1).mean()), 4)}
    if source == "munich":
        out["auc_blast_vs_neutrophil"] = round(auc(probs[scored & blast, BLAST], probs[scored & ~blast, BLAST]), 4)
    elif source == "taleqani":
        out["image_auc_all_vs_benign"] = taleqani(subset[scored], probs[scored])["image_auc_all_vs_benign"]
    offset = fit_offset(blast_margin(reference[IS_WHITE[reference.argmax(1)]]), SETTINGS.lab.normal_called_blast)
    for name, p in (("", probs), (" (2 % reference)", shift_blast(probs, offset))):
        calls = p.argmax(1) == BLAST
        out["normal called blast" + name] = round(float(calls[scored & ~blast].mean()), 4)
        if (scored & blast).any():
            out["blasts called blast" + name] = round(float(calls[scored & blast].mean()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="cell dataset folder")
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT)
    ap.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="models folder with lolo/")
    ap.add_argument("--name", default="window_reference", help="results file name")
    args = ap.parse_args()
    runtime.setup()
    from leukoscan.classify.predict import CellClassifier
    from leukoscan.detect.predict import Detector

    cells = eval_cells(args.cells)
    detector = Detector(device="cpu")
    rows = []
    for source in SOURCES:
        subset = cells[cells.source == source]
        subset = subset[subset.split.isin(["val", "test"])] if source == "taleqani" else subset[subset.type != "other"]
        subset = subset.reset_index(drop=True)
        ref, scored, blast = reference_split(source, subset)
        model = CellClassifier(args.weights / "lolo" / f"no-{source}.pt", device="cpu", strict=False)
        images, boxes = cell_boxes(subset, args.data_root, detector)
        found = []
        for factor in FACTORS:
            crops = cut(images, boxes, model.window_cells * factor * subset.cell_px.to_numpy(), model.crop_px)
            found.append(
                {"source": source, "factor": factor, **figures(source, subset, model.probs(crops), ref, scored, blast)}
            )
            print(json.dumps(found[-1]), flush=True)
        best = max(found, key=lambda r: r["familiarity"])["factor"]
        rows += [{**r, "chosen": r["factor"] == best} for r in found]
        del images
    save(args.name, {"weights": str(args.weights.name), "factors": list(FACTORS), "rows": rows}, markdown(rows))


def markdown(rows: list[dict]) -> str:
    headline = ["auc_blast_vs_neutrophil", "image_auc_all_vs_benign"]
    table = pd.DataFrame(rows)
    first = ["source", "factor", "chosen", "familiarity", *(c for c in headline if c in table)]
    table = table[first + [c for c in table if c not in first]].astype(object).where(table.notna(), "")
    return "\n".join(
        [
            "Each leave-one-lab-out model on the source it never saw, its cells cut with the model's window x factor "
            "(around the boxes the dataset's crops are cut around); familiarity: the mean largest normal-type "
            "probability of the lab's reference cells (no blast looked at); chosen: the most familiar factor; "
            "2 % reference: the blast call placed at 2 % of the reference cells (`python bench/window_reference.py`).",
            "",
            table.to_markdown(index=False),
        ]
    )


if __name__ == "__main__":
    main()
