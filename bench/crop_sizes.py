"""How large each cell type sits in its training crop, source by source: the test of #15's "one physical scale".

Every crop is a window of ``window_cells`` x the source's white-cell estimate (``data/cells/summary.json``'s
``cell_px``, ``Detector.estimate_cell_px``), so a cell type of one physical size should fill the same share of
its crop on every source. Measured here: the diameter (px of the 48 px crop; the equal-area circle) of the dark,
stained object at the crop's centre (Otsu on the crop's gray levels, holes filled): for most white cells their
nucleus and dense cytoplasm, so it compares one type across sources (stain moves it a little), not one type
with another. A second measure beside it, from the boxes the crops were cut around (``--boxes``): the box's mean
side in crop px (the detector's box nearest the centre for the single-cell sources, found at the lab's white-cell
estimate as ``leukoscan data cells`` finds it; Taleqani's mask or colour boxes): a box includes the cytoplasm.

    python bench/crop_sizes.py [--per-group 200] [--boxes]    # writes bench/results/crop_sizes.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage import filters

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_io import save  # noqa: E402

from leukoscan.config import BUILD_DIR, DATA_ROOT  # noqa: E402
from leukoscan.images import read_crop  # noqa: E402

SOURCES = ("munich", "pbc", "taleqani", "zheng")


def centre_diameter(rgb: np.ndarray) -> float | None:
    """Equal-area diameter (px) of the dark object under the crop's centre; None when there is none."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    labels, _ = ndi.label(ndi.binary_fill_holes(gray < filters.threshold_otsu(gray)))
    h, w = labels.shape
    centre = labels[h // 2 - 2 : h // 2 + 3, w // 2 - 2 : w // 2 + 3]
    ids = np.unique(centre[centre > 0])
    return float(2 * np.sqrt(np.isin(labels, ids).sum() / np.pi)) if len(ids) else None


def box_measure(data_root: Path, geo):
    """A function giving, for rows of the cell table, the mean side (crop px) of the box each crop was cut around
    (``geo``: the dataset's crop geometry)."""
    from eval_crosslab import cell_boxes

    from leukoscan.detect.predict import Detector

    detector = Detector(device="cpu")

    def sides(rows: pd.DataFrame) -> list[float]:
        _, boxes = cell_boxes(rows, data_root, detector)
        window = geo.window_cells * rows.cell_px.to_numpy()
        return list(np.mean(boxes[:, 2:] - boxes[:, :2], axis=1) * geo.cell_crop_px / window)

    return sides


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="cell dataset folder")
    ap.add_argument("--per-group", type=int, default=200, help="training crops per (source, lab, type)")
    ap.add_argument("--boxes", action="store_true", help="also the box each crop was cut around (runs the detector)")
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT)
    args = ap.parse_args()
    from leukoscan.datasets.cells import dataset_geometry

    box_side = box_measure(args.data_root, dataset_geometry(args.cells)) if args.boxes else None
    cells = pd.read_csv(args.cells / "cells.csv")
    cells = cells[(cells.split == "train") & cells.source.isin(SOURCES) & (cells.type != "other")]
    rows = []
    for (source, lab, kind), group in cells.groupby(["source", "lab", "type"]):
        sample = group.sample(min(len(group), args.per_group), random_state=0)
        found = [d for d in (centre_diameter(read_crop(args.cells / c)) for c in sample.crop) if d]
        if not found:
            continue
        q1, median, q3 = np.percentile(found, [25, 50, 75])
        rows.append(
            {
                "source": source,
                "lab": lab,
                "type": kind,
                "crops": len(found),
                "cell_px": float(group.cell_px.median()),
                "diameter_in_crop": round(float(median), 1),
                "iqr": f"{q1:.1f}-{q3:.1f}",
                **({"box_side_in_crop": round(float(np.median(box_side(sample))), 1)} if box_side else {}),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    wide = table.pivot_table(index="type", columns="lab", values="diameter_in_crop").round(1)
    boxes = (
        [
            "",
            "The boxes' mean side in crop px, by type and lab:",
            "",
            table.pivot_table(index="type", columns="lab", values="box_side_in_crop").round(1).to_markdown(),
        ]
        if box_side
        else []
    )
    lines = [
        "The dark object at the centre of each training crop (48 px), its equal-area diameter in px, median by "
        "cell type (rows) and lab (columns) (`python bench/crop_sizes.py`; Zheng's two labs apart, each with its "
        "own white-cell estimate). One physical scale would put a type at one size in every column.",
        "",
        wide.to_markdown(),
        *boxes,
        "",
        table.to_markdown(index=False),
    ]
    save("crop_sizes", rows, "\n".join(lines))


if __name__ == "__main__":
    main()
