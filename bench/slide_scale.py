"""Does a slide's own cell-size estimate follow its diagnosis? The crop window of every cell is 1.6 times
the slide's white-cell diameter, estimated by ``leukoscan run`` from two of its fields
(``Detector.estimate_cell_px``: the detector's self-consistent white-cell boxes), while the training crops
of a lab were all cut at the lab's median estimate. If a slide full of blasts (larger than lymphocytes)
gets a larger estimate than a normal slide of the same lab, its blasts look smaller in their crops than in
training: the size cue cancels itself on exactly the slides that matter.

This takes each Taleqani class (one hospital, one camera) and its contiguous file-number blocks (about one
patient each), estimates the diameter on consecutive field pairs as ``leukoscan run`` would on a slide,
and reports it beside the lab's median (the training scale) and the red-cell ruler (``white_cell_px``:
red-cell diameter x 12/7.5, the estimate's starting guess) on the same fields.

    python bench/slide_scale.py      # writes bench/results/slide_scale.{json,md} (~3 min on 2 CPU cores)
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
from leukoscan.config import BUILD_DIR, DATA_ROOT  # noqa: E402


def block_estimates(manifest: pd.DataFrame, data_root: Path, detector, pairs: int) -> pd.DataFrame:
    """One row per (class, block, field pair): the detector's and the red-cell ruler's diameter (px)."""
    from leukoscan.detect.scale import white_cell_px
    from leukoscan.images import load_rgb

    rows = []
    for (cls, block), files in manifest.groupby(["class_dir", "block"]).file:
        files = sorted(files)
        starts = np.linspace(0, len(files) - 2, num=min(pairs, len(files) // 2)).astype(int)
        for k in starts:
            rgb = [load_rgb(data_root / "all-taleqani" / "Original" / f) for f in files[k : k + 2]]
            rows.append(
                {
                    "class": cls,
                    "block": int(block),
                    "detector_px": detector.estimate_cell_px(rgb),
                    "red_cell_px": float(np.median([white_cell_px(im) for im in rgb])),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="cell dataset (its manifest, lab scale)")
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT)
    ap.add_argument("--pairs", type=int, default=5, help="field pairs per block")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from leukoscan.datasets.cells import read_cells
    from leukoscan.detect.predict import Detector

    manifest = pd.read_csv(args.cells / "taleqani_manifest.csv", keep_default_na=False)
    manifest = manifest[manifest.dropped == ""]
    cells = read_cells(args.cells)
    lab_px = float(cells.loc[cells.source == "taleqani", "cell_px"].median())
    est = block_estimates(manifest, args.data_root, Detector(device=args.device), args.pairs)
    by_class = est.groupby("class").agg(
        field_pairs=("block", "size"),
        blocks=("block", "nunique"),
        detector_px=("detector_px", "median"),
        detector_q25=("detector_px", lambda s: s.quantile(0.25)),
        detector_q75=("detector_px", lambda s: s.quantile(0.75)),
        red_cell_px=("red_cell_px", "median"),
    )
    by_class["window_vs_training"] = by_class.detector_px / lab_px
    by_class["red_cell_vs_training"] = by_class.red_cell_px / lab_px
    results = {
        "lab_training_px": lab_px,
        "pairs_per_block": args.pairs,
        "by_class": by_class.round(3).to_dict(orient="index"),
        "by_block": est.groupby(["class", "block"]).detector_px.median().round(2).unstack().to_dict(orient="index"),
    }
    lines = [
        f"Taleqani: white-cell diameter estimated per slide (field pairs, {args.pairs} per block, every block) vs the "
        f"training crops' lab scale ({lab_px:.2f} px). window = the slide's crop window relative to training's.",
        "",
        "| class | field pairs | detector px (IQR) | window vs training | red-cell ruler px | ruler vs training |",
        "|---|---|---|---|---|---|",
    ]
    for cls, r in by_class.iterrows():
        lines.append(
            f"| {cls} | {int(r.field_pairs)} | {r.detector_px:.1f} ({r.detector_q25:.1f}-{r.detector_q75:.1f}) | "
            f"{r.window_vs_training:.2f}x | {r.red_cell_px:.1f} | {r.red_cell_vs_training:.2f}x |"
        )
    save("slide_scale", results, "\n".join(lines))


if __name__ == "__main__":
    main()
