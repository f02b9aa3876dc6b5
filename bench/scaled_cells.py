"""The trial of one physical scale by a normal type (#15): a copy of the cell dataset whose single-cell sources
are cut with their window scaled so that a normal type sits at one size across labs (bench/crop_sizes.py).

Taleqani is the anchor (its crops unchanged). PBC's lymphocytes (21.3 px of the 48 px crop) are put at
Taleqani's Benign-field cells' size (25.1): factor 21.3 / 25.1 = 0.85 (a smaller window: larger cells). Munich
has no lymphocytes: its neutrophils (16.7) at PBC's once scaled (19.4 / 0.85): factor 0.73. Neither factor looks
at a blast. Zheng's two labs' lymphocytes already sit at 25.0 and 25.8: unchanged, as are TXL-PBC's crops. The
crops are cut as ``leukoscan data cells`` cuts them (the detector's box nearest the centre, found at the lab's
white-cell estimate), only the window's side is scaled; ``cells.csv`` records each crop's ``cell_px`` x factor.

    python bench/scaled_cells.py                     # writes data/cells_scaled (crops of the other sources linked)
    python bench/train_crosslab.py --cells data/cells_scaled --self-train txl-575x575 --zoom 0.5 \\
        --quarter-turns 0.5 --only munich --ship-dir runs/scaled       # then bench/window_heldout.py-like scoring
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leukoscan import runtime  # noqa: E402
from leukoscan.config import BUILD_DIR, DATA_ROOT, SETTINGS  # noqa: E402

FACTORS = {"pbc": 0.85, "munich": 0.73}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="the cell dataset to copy")
    ap.add_argument("--out", type=Path, default=BUILD_DIR / "cells_scaled")
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT)
    ap.add_argument(
        "--factor", action="append", default=[], metavar="LAB=F", help="another window factor for a lab (repeatable)"
    )
    args = ap.parse_args()
    factors = {**FACTORS, **{k: float(v) for k, v in (f.split("=") for f in args.factor)}}
    runtime.setup()
    from leukoscan.crops import crop_cells, window_px
    from leukoscan.datasets.cells import central_box, write_crops
    from leukoscan.detect.predict import Detector
    from leukoscan.images import load_rgb

    cells = pd.read_csv(args.cells / "cells.csv", keep_default_na=False)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "taleqani_manifest.csv", "txl_white.csv"):
        shutil.copyfile(args.cells / name, args.out / name)
    (args.out / "crops").mkdir(exist_ok=True)
    for folder in (args.cells / "crops").iterdir():
        if folder.name not in factors and not (args.out / "crops" / folder.name).exists():
            (args.out / "crops" / folder.name).symlink_to(folder.resolve())
    detector = Detector(device="cpu")
    size = SETTINGS.geometry.cell_crop_px
    for lab, factor in factors.items():
        rows = cells[cells.lab == lab]
        cell_px = float(rows.cell_px.iloc[0])
        side = window_px(cell_px * factor)
        for start in range(0, len(rows), 64):
            chunk = rows.iloc[start : start + 64]
            rgb = [load_rgb(args.data_root / f) for f in chunk.file]
            dets = detector.detect(rgb, cell_size=cell_px)
            crops = [
                crop_cells(im, central_box(det, im.shape[:2], cell_px)[0][None], size=size, side=side)[0]
                for im, det in zip(rgb, dets)
            ]
            write_crops(args.out, chunk.to_dict("records"), crops)
        print(f"{lab}: {len(rows)} crops at {factor}x the window", flush=True)
        cells.loc[cells.lab == lab, "cell_px"] = round(cell_px * factor, 2)
    cells.to_csv(args.out / "cells.csv", index=False)


if __name__ == "__main__":
    main()
