"""The two rulers a crop's window can be cut with, on every source of the cell dataset: the white-cell size the
crops are cut at now (``data/cells/summary.json``'s ``cell_px``: the detector's white-cell estimate, one per
source) against the red-cell ruler (``detect.scale.rbc_diameter_px``: the median red-cell diameter of each
source image), by source, lab and cell type.

Why: #15 asks for crops at one physical scale "from the slide's cell-size estimate (the red-cell ruler)". The
white-cell estimate of a source depends on which cells it holds (Munich's images are half myeloblasts, large;
Taleqani's ALL fields mostly blasts; PBC's mostly normal cells), so the same physical cell may sit at another
size in its window from one source to the next; red cells are the same size in every smear. If the ratio
``cell_px / red-cell px`` differs between sources, the window is not one physical size across them. A red-cell
diameter is only found where an image shows at least three red cells (single-cell crops may not).

    python bench/scale_rulers.py [--per-group 60]    # writes bench/results/scale_rulers.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.config import BUILD_DIR, DATA_ROOT, SETTINGS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="cell dataset folder")
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT)
    ap.add_argument("--per-group", type=int, default=60, help="source images per (source, lab, type)")
    args = ap.parse_args()
    runtime.setup()
    from leukoscan.detect.scale import rbc_diameter_px
    from leukoscan.images import load_rgb

    cells = pd.read_csv(args.cells / "cells.csv")
    cells = cells[cells.source != "txl"]  # TXL-PBC's crops here are red cells and platelets (`other`)
    images = cells.drop_duplicates("file")
    rows = []
    for (source, lab, kind), group in images.groupby(["source", "lab", "type"]):
        sample = group.sample(min(len(group), args.per_group), random_state=0)
        rbc = [rbc_diameter_px(load_rgb(args.data_root / f)) for f in sample.file]
        found = [d for d in rbc if d is not None]
        cell_px = float(group.cell_px.median())
        rows.append(
            {
                "source": source,
                "lab": lab,
                "type": kind,
                "images": len(sample),
                "with_red_cells": len(found),
                "red_cell_px": round(float(np.median(found)), 1) if found else None,
                "cell_px": round(cell_px, 1),
                "cell_px_in_red_cells": round(cell_px / float(np.median(found)), 2) if found else None,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    expected = SETTINGS.geometry.wbc_um / SETTINGS.geometry.rbc_um
    table = pd.DataFrame(rows)
    lines = [
        "The white-cell size the crops are cut at (`cell_px`, one per source or lab) in red-cell diameters of the "
        f"same images (`python bench/scale_rulers.py`; a white cell is ~{expected:.1f} red cells wide: "
        f"{SETTINGS.geometry.wbc_um:g} / {SETTINGS.geometry.rbc_um:g} um). Equal ratios across sources: one "
        "physical window; unequal: a cell of one size sits larger or smaller in its window from one source to the "
        "next.",
        "",
        table.to_markdown(index=False),
    ]
    save("scale_rulers", {"wbc_over_rbc": expected, "rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
