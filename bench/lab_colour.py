"""Each lab's colour against the training crops of the model blind to it (#15, Zheng's d1 lab).

All of Zheng's held-out false blasts are its d1 lab's (README). Per lab (a source, or Zheng's two labs): the
median colour of its crops' stained pixels in CIE Lab (``classify.stain.crop_colour``, what a run's stain
distance measures), the crops' mean RGB (the whole crop: background and light included), and the stain
distance ``leukoscan run`` would report for that lab as one slide under the leave-one-lab-out model blind to
its source (``stain_distance``: SDs of that model's training crops, worst Lab channel; ``needs_review`` above 3),
with the Lab channel that sets it (the training crops, and so the distance, are the same for every training run
of the recipe).

    python bench/lab_colour.py     # writes bench/results/lab_colour.{json,md}
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

from eval_crosslab import eval_cells, held_out_sets  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.classify.stain import crop_colour, stain_z  # noqa: E402
from leukoscan.config import BUILD_DIR, WEIGHTS_DIR  # noqa: E402
from leukoscan.datasets.cells import read_crops  # noqa: E402

CHANNELS = ("L", "a", "b")


def lab_rows(source: str, cells: pd.DataFrame, lolo: Path) -> list[dict]:
    """One row per lab of ``source``'s held-out cells: its colour and its stain distance under the model blind
    to ``source``."""
    rows = []
    for lab, part in cells.groupby("lab", sort=True):
        crops = read_crops(part)
        median = np.median(crop_colour(crops), axis=0)
        row = {"lab": lab, "n": len(part)}
        row |= {f"stained {c}*": round(float(v), 1) for c, v in zip(CHANNELS, median)}
        row |= {f"mean {c}": round(float(v), 1) for c, v in zip("RGB", crops.reshape(-1, 3).mean(axis=0))}
        reference = json.loads((lolo / f"no-{source}.json").read_text())["stain_reference"]
        z = stain_z(median, reference)
        row["stain z"] = round(float(z.max()), 2)  # stain_distance's figure
        row["worst channel"] = CHANNELS[int(np.argmax(z))]
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells")
    ap.add_argument("--lolo", type=Path, default=WEIGHTS_DIR / "lolo", help="the leave-one-lab-out models")
    args = ap.parse_args()
    runtime.setup()
    cells = eval_cells(args.cells)
    rows = []
    for source, subset in held_out_sets(cells).items():
        subset.attrs = cells.attrs
        rows += lab_rows(source, subset, args.lolo)
    md = (
        "Each lab's colour (`python bench/lab_colour.py`): the median CIE Lab colour of its crops' stained pixels "
        "(what a run's stain distance reads), the crops' mean RGB, and the stain distance a run would report for "
        "the lab as one slide under the leave-one-lab-out model blind to it (training crops' SDs, worst channel; "
        "`needs_review` above 3). Held-out cells as `bench/eval_crosslab.py` scores them (Taleqani: its test "
        "blocks).\n\n" + pd.DataFrame(rows).to_markdown(index=False, floatfmt=".2f")
    )
    save("lab_colour", {"rows": rows}, md)


if __name__ == "__main__":
    main()
