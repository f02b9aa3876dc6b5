"""Is sharpness what makes an unseen lab's normal cells look like blasts? (#15, Zheng's d1 lab)

All of Zheng's held-out false blasts are its d1 lab's, most of them lymphocytes (README). The training blasts
come mostly from Taleqani, whose fields are blurred: a model might learn "blurred" as part of "blast" in spite
of the blur and down-and-up-sampling augmentation. Two measures:

1. How sharp each source's crops are: the variance of the Laplacian of the crop's gray levels (median over up to
   ``--per-group`` crops of each source or lab and type), and the crops' mean HSV saturation (the stain's
   strength) beside it.
2. Each source held out, its crops sharpened (unsharp mask) or blurred (Gaussian, sigma in crop px) before the
   leave-one-lab-out model blind to it scores them (the held-out sets and figures of ``bench/eval_crosslab.py``:
   "as cut" is its table): a sharpness shortcut would raise the blast calls with blur on every source and lower
   them with sharpening, and sharpening would not cost the blast sources.

    python bench/sharpness.py [--per-group 300]   # writes bench/results/sharpness.{json,md}
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_crosslab import HEADLINE, eval_cells, held_out_row, held_out_sets, predict  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan.cells import CELL_TYPES  # noqa: E402
from leukoscan.classify.augment import sharpen  # noqa: E402
from leukoscan.config import BUILD_DIR, WEIGHTS_DIR  # noqa: E402
from leukoscan.datasets.cells import read_crops  # noqa: E402

CHANGES = ("sharpened", "as cut", "blur 0.7", "blur 1.2", "blur 2.0")


def changed(crops: np.ndarray, change: str) -> np.ndarray:
    """The crops as cut, Gaussian-blurred (``blur <sigma>``) or sharpened (``augment.sharpen``: unsharp mask,
    Gaussian sigma 1 px, amount 1, the middle of the sharpening augmentation's range)."""
    if change == "as cut":
        return crops
    if change == "sharpened":
        return np.stack([sharpen(c, 1.0) for c in crops])
    sigma = float(change.split()[1])
    return np.stack([cv2.GaussianBlur(c, (0, 0), sigma) for c in crops])


def sharpness(crops: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each crop's gray levels (higher: sharper)."""
    return np.array([cv2.Laplacian(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for c in crops])


def saturation(crops: np.ndarray) -> np.ndarray:
    return np.array([cv2.cvtColor(c, cv2.COLOR_RGB2HSV)[..., 1].mean() for c in crops])


def sample(cells: pd.DataFrame, n: int) -> pd.DataFrame:
    out = cells.sample(min(n, len(cells)), random_state=0).reset_index(drop=True)
    out.attrs = cells.attrs
    return out


def by_group(cells: pd.DataFrame, n: int, measures: dict[str, Callable[[np.ndarray], float]]) -> list[dict]:
    """Up to ``n`` crops of each labelled lab and type, and each of ``measures`` (name: crops -> figure) on them."""
    rows = []
    for (lab, cell_type), group in cells[cells.type != ""].groupby(["lab", "type"]):
        crops = read_crops(sample(group, n))
        rows.append({"lab": lab, "type": cell_type, "n": len(crops)} | {k: f(crops) for k, f in measures.items()})
    return rows


MEASURES = {
    "sharpness": lambda crops: round(float(np.median(sharpness(crops))), 1),
    "saturation": lambda crops: round(float(saturation(crops).mean()), 1),
}


def blur_probe(cells: pd.DataFrame) -> list[dict]:
    """Each leave-one-lab-out model on the source it never saw (``held_out_sets``, as ``eval_crosslab.py`` scores
    it), the crops changed before scoring: the headline figure, and for the normal sources the share of their
    lymphocytes called blast and the false blasts of each of Zheng's labs."""
    rows = []
    for source, held in held_out_sets(cells).items():
        crops = read_crops(held)
        lymphocyte = (held.type == "lymphocyte").to_numpy()
        metric = HEADLINE[source][0]
        for change in CHANGES:
            probs = predict(WEIGHTS_DIR / "lolo" / f"no-{source}.pt", held, cells, crops=changed(crops, change))
            figures = held_out_row(source, held, probs)
            row = {"held out": source, "crops": change, "n": len(held), "figure": metric, "value": figures[metric]}
            if source in ("pbc", "zheng"):
                called = probs[lymphocyte].argmax(1) == CELL_TYPES.index("blast")
                row["lymphocytes called blast"] = round(float(called.mean()), 4)
                row |= {
                    f"{lab} normal called blast": v for lab, v in figures.get("normal_called_blast_by_lab", {}).items()
                }
            rows.append(row)
            print(rows[-1], flush=True)
    return rows


def group_args(doc: str, script: str) -> tuple[argparse.Namespace, pd.DataFrame, str]:
    """The command line of a script that measures up to ``--per-group`` crops of each lab and type: its
    arguments, the cells it scores and the command that reruns it."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells")
    ap.add_argument("--per-group", type=int, default=300, help="crops of each lab and type measured")
    args = ap.parse_args()
    command = f"python bench/{script}" + (f" --per-group {args.per_group}" if args.per_group != 300 else "")
    return args, eval_cells(args.cells), command


def main() -> None:
    args, cells, command = group_args(__doc__, "sharpness.py")
    groups, probe = by_group(cells, args.per_group, MEASURES), blur_probe(cells)
    markdown = "\n".join(
        [
            f"Sharpness of the training crops and a blur probe (`{command}`; up to {args.per_group} crops a group).",
            "",
            "Sharpness: median variance of the Laplacian of the crop's gray levels (higher: sharper); saturation: "
            "mean HSV saturation (0-255).",
            "",
            pd.DataFrame(groups).pivot(index="lab", columns="type", values="sharpness").to_markdown(),
            "",
            pd.DataFrame(groups).pivot(index="lab", columns="type", values="saturation").to_markdown(),
            "",
            "Each source held out (every cell of Munich, PBC and Zheng, Taleqani's test blocks, as "
            "`bench/eval_crosslab.py` scores them), its crops sharpened (unsharp mask, sigma 1 px, amount 1), as cut "
            "or blurred (Gaussian sigma in crop px) before the model blind to it scores them:",
            "",
            pd.DataFrame(probe).to_markdown(index=False),
        ]
    )
    save("sharpness", {"groups": groups, "blur_probe": probe}, markdown)


if __name__ == "__main__":
    main()
