"""Is a crop padded at a field's edge a blast cue? (#15, whole fields from an unseen lab)

A cell near a field's edge is cut with part of its window outside the image, filled with the field's median
colour (``leukoscan.crops.crop_cells``). Among the training crops that happens on the sources cut from fields
or small images (Taleqani's 224 px fields, Munich, TXL-PBC, some of Zheng's) and never on PBC, and most
training blasts are Taleqani's: a model might learn "padded" as part of "blast" and call the edge cells of
an unseen lab's whole fields blasts. Two measures:

1. The share of each lab's and type's crops padded on at least one side (an edge row or column of one colour).
2. Each source held out, its crops padded on one random side (a band of 15 % or 30 % of the crop, in the
   crop's own border median colour, as ``crop_cells`` fills with the field's) before the leave-one-lab-out
   model blind to it scores them (the held-out sets and figures of ``bench/eval_crosslab.py``: "as cut" is its
   table); for the normal sources, the blast calls of their crops padded as cut against the others too.

    python bench/edge_crops.py [--per-group 300]   # writes bench/results/edge_crops.{json,md}
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_crosslab import HEADLINE, held_out_row, held_out_sets, predict  # noqa: E402
from results_io import save  # noqa: E402
from sharpness import by_group, group_args  # noqa: E402

from leukoscan.cells import CELL_TYPES  # noqa: E402
from leukoscan.config import WEIGHTS_DIR  # noqa: E402
from leukoscan.datasets.cells import read_crops  # noqa: E402

BANDS = (0.0, 0.15, 0.30)  # share of the crop's side padded ("as cut": 0)


def padded(crops: np.ndarray) -> np.ndarray:
    """True for each crop with an edge row or column of a single colour (part of its window outside the image)."""
    edges = (crops[:, 0], crops[:, -1], crops[:, :, 0], crops[:, :, -1])
    return np.stack([edge.std(axis=1).max(axis=-1) == 0 for edge in edges], axis=1).any(axis=1)


def pad_one_side(crops: np.ndarray, band: float, seed: int = 0) -> np.ndarray:
    """Each crop with a band of ``band`` x its side on one random side filled with its border's median colour."""
    if band == 0:
        return crops
    out, k = crops.copy(), int(round(band * crops.shape[1]))
    sides = np.random.default_rng(seed).integers(4, size=len(crops))
    for crop, side in zip(out, sides):
        fill = np.median(np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]]), axis=0).astype(np.uint8)
        band_of = {0: crop[:k], 1: crop[-k:], 2: crop[:, :k], 3: crop[:, -k:]}[int(side)]
        band_of[...] = fill
    return out


def band_probe(cells: pd.DataFrame) -> list[dict]:
    """Each leave-one-lab-out model on the source it never saw, its crops padded before scoring: the headline
    figure, and for the normal sources the share called blast of their crops padded as cut and of the others."""
    rows = []
    blast = CELL_TYPES.index("blast")
    for source, held in held_out_sets(cells).items():
        crops = read_crops(held)
        as_cut = padded(crops)
        metric = HEADLINE[source][0]
        for band in BANDS:
            probs = predict(WEIGHTS_DIR / "lolo" / f"no-{source}.pt", held, cells, crops=pad_one_side(crops, band))
            row = {
                "held out": source,
                "crops": "as cut" if band == 0 else f"one side padded {band:.0%}",
                "n": len(held),
                "padded as cut": round(float(as_cut.mean()), 3),
                "figure": metric,
                "value": held_out_row(source, held, probs)[metric],
            }
            if source in ("pbc", "zheng") and band == 0:
                called = probs.argmax(1) == blast
                row["called blast, padded as cut"] = round(float(called[as_cut].mean()), 4) if as_cut.any() else None
                row["called blast, not padded"] = round(float(called[~as_cut].mean()), 4)
            rows.append(row)
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    args, cells, command = group_args(__doc__, "edge_crops.py")
    groups = by_group(cells, args.per_group, {"padded": lambda crops: round(float(padded(crops).mean()), 3)})
    probe = band_probe(cells)
    markdown = "\n".join(
        [
            f"Crops padded at a field's edge (`{command}`; up to {args.per_group} crops a group), the committed "
            "leave-one-lab-out models.",
            "",
            "Share of each lab's crops with part of their window outside the image (filled with the field's median "
            "colour):",
            "",
            pd.DataFrame(groups).pivot(index="lab", columns="type", values="padded").to_markdown(),
            "",
            "Each source held out (every cell of Munich, PBC and Zheng, Taleqani's test blocks, as "
            "`bench/eval_crosslab.py` scores them), a band on one random side of each crop filled with its border's "
            "median colour before the model blind to it scores them:",
            "",
            pd.DataFrame(probe).to_markdown(index=False),
        ]
    )
    save("edge_crops", {"groups": groups, "band_probe": probe}, markdown)


if __name__ == "__main__":
    main()
