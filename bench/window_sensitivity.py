"""How much a cell-type model's blast calls depend on the crop window (the slide's cell-size estimate).

A slide's white cells are cut in a window of 1.6 cell diameters, the diameter being the slide's estimate
(``Detector.estimate_cell_px``); an estimate 20 % off makes every cell 20 % larger or smaller in its crop.
This re-cuts TXL-PBC's white cells (``txl_white.csv`` of ``leukoscan data cells``) of one lab with the
window scaled by each factor and reports the share each model calls blast. On Raabin-WBC's fields
(txl-575x575, normal donors) every blast call is a false alarm.

    python bench/window_sensitivity.py                       # shipped model, Raabin-WBC's cells
    python bench/window_sensitivity.py --weights runs/self-weights/classifier.pt --name window_self
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.cells import CELL_TYPES  # noqa: E402
from leukoscan.config import BUILD_DIR, DATA_ROOT, SETTINGS, WEIGHTS_DIR  # noqa: E402

FACTORS = (0.8, 1.0, 1.2, 1.4, 1.7)


def recut(white: pd.DataFrame, data_root: Path, factor: float) -> np.ndarray:
    """The cells of ``white`` cut again from their fields with the window ``factor`` x as wide."""
    from leukoscan.crops import crop_cells, window_px
    from leukoscan.datasets.build import read_yolo
    from leukoscan.images import load_rgb

    crops = np.zeros((len(white), SETTINGS.geometry.cell_crop_px, SETTINGS.geometry.cell_crop_px, 3), np.uint8)
    for file, idx in white.groupby("file").indices.items():
        rgb = load_rgb(data_root / file)
        h, w = rgb.shape[:2]
        label = (data_root / file.replace("/images/", "/labels/")).with_suffix(".txt")
        boxes = read_yolo(label, w, h, 0).xyxy[white.cell.to_numpy()[idx]]
        side = window_px(float(white.cell_px.iloc[idx[0]]) * factor)
        crops[idx] = crop_cells(rgb, boxes, size=SETTINGS.geometry.cell_crop_px, side=side)
    return crops


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="cell dataset (its txl_white.csv)")
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT)
    ap.add_argument("--weights", type=Path, action="append", help="cell-type model(s) (default: the shipped one)")
    ap.add_argument("--lab", default="txl-575x575")
    ap.add_argument("--name", default="window_sensitivity")
    args = ap.parse_args()
    from leukoscan.classify.predict import CellClassifier
    from leukoscan.datasets.cells import txl_white_cells

    white = txl_white_cells(args.cells, args.data_root)
    white = white[white.lab == args.lab].reset_index(drop=True)
    weights = args.weights or [WEIGHTS_DIR / "classifier.pt"]
    crops = {f: recut(white, args.data_root, f) for f in FACTORS}
    rows = []
    for w in weights:
        clf = CellClassifier(w, device="cpu", strict=False)
        for f, c in crops.items():
            calls = np.asarray(CELL_TYPES)[clf.probs(c).argmax(1)]
            rows.append({"model": str(w), "window": f, "called_blast": round(float((calls == "blast").mean()), 4)})
            rows[-1] |= {f"n_{t}": int((calls == t).sum()) for t in CELL_TYPES}
    table = pd.DataFrame(rows)
    md = (
        f"{args.lab}: {len(white)} white cells re-cut with the window (1.6 x the lab's cell-size estimate) scaled; "
        "share called blast, and the calls by type:\n\n" + table.to_markdown(index=False)
    )
    save(args.name, {"lab": args.lab, "n": len(white), "rows": rows}, md)


if __name__ == "__main__":
    main()
