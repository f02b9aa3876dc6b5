"""A lab's own reference (``leukoscan lab-reference``, ``leukoscan/lab.py``): does placing the blast call where
a lab's own normal cells sit find that lab's blasts, on labs the model never saw?

Each leave-one-lab-out model on the source it never saw, that source taken as one laboratory:
- its reference: normal cells of that lab, as the lab's own normal slides would give them (drawn in the
  normal differential of ``eval_slides``, among the types the source has): half of Munich's neutrophils (the
  only normal cells it has: an easier reference than a lab's slides, which hold lymphocytes and monocytes
  too), Taleqani's Benign cells of its validation blocks (hematogones and lymphocytes: a harder one), half of
  PBC's and of Zheng's normal cells;
- scored on the rest: the normal cells called blast, the blasts called blast (Munich's myeloblasts,
  Taleqani's ALL-field cells of its test blocks), and slides of 200 cells of that lab (bags, fixed seed) with
  the verdict rules of ``config.py``: normal slides flagged ``suspected`` (of 1,000 cells too), leukemic ones
  (10, 20, 50 % blasts) flagged. "no reference" is the model as shipped (no offset), the first row of each lab.

    python bench/eval_lab_reference.py [--lolo runs/seed1/lolo] [--weights runs/w14]  # default: both runs in weights/
    # writes bench/results/lab_reference.{json,md}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_crosslab import NORMAL, eval_cells, predict  # noqa: E402
from eval_slides import DIFFERENTIAL, LOLO_RUNS, add_lolo_argument, draw_bags, verdict_rates  # noqa: E402
from results_io import rel, save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.cells import BLAST, IS_WHITE, blast_margin  # noqa: E402
from leukoscan.config import BUILD_DIR, SETTINGS, WEIGHTS_DIR  # noqa: E402
from leukoscan.lab import fit_offset, shift_blast  # noqa: E402

SHARES = (None, 0.01, SETTINGS.lab.normal_called_blast, 0.05)  # None: no reference
SLIDE_CELLS, N_BAGS, FRACTIONS = 200, 400, (0.1, 0.2, 0.5)
LARGE_SLIDE_CELLS = 1000  # normal slides of this many cells too: a share rule flags large slides first
REFERENCE_CELLS = 2000  # a lab's reference: its normal slides' cells, in the differential


def lab_sets(cells: pd.DataFrame, lolo: Path) -> dict[str, dict]:
    """Per held-out source: its probabilities under the model blind to it, split into the reference, the
    test normal cells and the blasts (None for a source without)."""
    sets = {}
    for source in ("munich", "taleqani", "pbc", "zheng"):
        if source == "taleqani":
            subset = cells[(cells.source == source) & cells.split.isin(["val", "test"])]
            blast = (subset.original_type == "blast").to_numpy()
            reference, test = (subset.split == "val").to_numpy() & ~blast, (subset.split == "test").to_numpy()
        else:
            subset = cells[(cells.source == source) & cells.type.isin([*NORMAL, "blast"])]
            blast = (subset.type == "blast").to_numpy()
            half = np.arange(len(subset)) % 2 == 0
            reference, test = half & ~blast, ~half | blast
        probs = predict(lolo / f"no-{source}.pt", subset, cells)
        types = np.where(blast, "blast", subset.type.where(subset.source != "taleqani", "lymphocyte"))
        sets[source] = {
            "reference": (probs[reference], types[reference]),
            "normal": (probs[test & ~blast], types[test & ~blast]),
            "blast": probs[test & blast] if (test & blast).any() else None,
        }
        print(
            source,
            {k: len(v[0]) if isinstance(v, tuple) else v is not None and len(v) for k, v in sets[source].items()},
        )
    return sets


def type_pool(types: np.ndarray, n_blasts: int = 0) -> dict[str, np.ndarray]:
    """``eval_slides.draw_bags``' pool of cells of ``types`` (indices per normal type), followed by ``n_blasts``
    blasts."""
    pool = {t: np.nonzero(types == t)[0] for t in DIFFERENTIAL}
    return pool | {"blast": np.arange(len(types), len(types) + n_blasts)}


def slides_flagged(
    normal: np.ndarray, types: np.ndarray, blasts: np.ndarray | None, fraction: float, rng, size: int = SLIDE_CELLS
) -> float:
    """Share of ``N_BAGS`` slides of ``size`` cells (``fraction`` blasts) called ``suspected``."""
    probs = normal if blasts is None else np.concatenate([normal, blasts])
    calls = probs.argmax(1)
    scores = pd.DataFrame(
        {
            "p_blast": probs[:, BLAST],
            "is_blast": (calls == BLAST).astype(float),
            "is_white": IS_WHITE[calls].astype(float),
        }
    )
    bags = draw_bags(type_pool(types, len(probs) - len(normal)), size, fraction, N_BAGS, rng)
    return verdict_rates(bags, scores, SETTINGS.verdict)["suspected"]


def reference_margins(probs: np.ndarray) -> np.ndarray:
    """The blast margins a lab reference is fitted on, from its cells' probabilities: those of the cells called
    white cells, as `leukoscan lab-reference` takes them from cells.csv."""
    return blast_margin(probs[IS_WHITE[probs.argmax(1)]])


def lab_rows(source: str, lab: dict, seed: int = 0) -> list[dict]:
    rng, large_rng = np.random.default_rng(seed), np.random.default_rng(seed + 1)  # apart: the same 200-cell bags
    ref_probs, ref_types = lab["reference"]
    drawn = ref_probs[draw_bags(type_pool(ref_types), REFERENCE_CELLS, 0.0, 1, rng)[0]]
    reference = reference_margins(drawn)
    normal, types = lab["normal"]
    rows = []
    for share in SHARES:
        offset = 0.0 if share is None else fit_offset(reference, share)
        shifted, blasts = (
            shift_blast(normal, offset),
            None if lab["blast"] is None else shift_blast(lab["blast"], offset),
        )
        row = {
            "lab": source,
            "reference": "no reference" if share is None else f"{share:.0%} of its normal cells",
            "offset": round(offset, 2),
            "normal cells called blast": float(np.mean(shifted.argmax(1) == BLAST)),
            "blasts called blast": None if blasts is None else float(np.mean(blasts.argmax(1) == BLAST)),
            "normal slides flagged": slides_flagged(shifted, types, None, 0.0, rng),
            f"normal slides of {LARGE_SLIDE_CELLS:,} flagged": slides_flagged(
                shifted, types, None, 0.0, large_rng, LARGE_SLIDE_CELLS
            ),
        }
        for f in FRACTIONS:
            row[f"{f:.0%} blast slides flagged"] = (
                None if blasts is None else slides_flagged(shifted, types, blasts, f, rng)
            )
        rows.append({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells")
    ap.add_argument("--weights", type=Path, action="append", default=[], help="models folder(s) with lolo/")
    add_lolo_argument(ap, "weights/, with no --weights")
    ap.add_argument("--name", default="lab_reference")
    args = ap.parse_args()
    runtime.setup()
    cells = eval_cells(args.cells)
    results, parts = {}, []
    runs = [w / "lolo" for w in args.weights] + args.lolo or [WEIGHTS_DIR / d for d in LOLO_RUNS]
    for lolo in runs:
        rows = [row for source, lab in lab_sets(cells, lolo).items() for row in lab_rows(source, lab)]
        results[rel(lolo)] = rows
        parts.append(f"Models `{rel(lolo)}` (each on the lab it never saw):\n\n")
        parts.append(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f").replace(" nan ", "  –  ") + "\n\n")
    md = (
        "A lab's own reference (`python bench/eval_lab_reference.py`): the blast call moved so that a share of "
        f"the lab's normal reference cells ({REFERENCE_CELLS} drawn in the normal differential) is called blast; "
        f"scored on the lab's other cells and on slides of {SLIDE_CELLS} of them (normal ones of "
        f"{LARGE_SLIDE_CELLS:,} too; {N_BAGS} per row, verdict "
        "rules of config.py). Munich's reference is neutrophils only (easier than a lab's slides); Taleqani's "
        "is its Benign patients' hematogones and lymphocytes (harder).\n\n" + "".join(parts)
    )
    save(
        args.name,
        {"shares": list(SHARES), "slide_cells": SLIDE_CELLS, "large_slide_cells": LARGE_SLIDE_CELLS, "runs": results},
        md,
    )


if __name__ == "__main__":
    main()
