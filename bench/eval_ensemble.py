"""The trial of averaging training runs: each leave-one-lab-out model's held-out figures, alone and averaged.

Each ``--weights`` folder holds one training run of the same recipe (its ``lolo/no-<source>.pt``); on the
source each model never saw, every run's calibrated probabilities (its own temperature and prior correction,
as ``bench/eval_crosslab.py`` scores it) and their mean, scored as eval_crosslab scores one model. A
held-out source is scored where at least two runs hold its model. With ``--views N`` every model makes its
probabilities from N test-time views instead of its card's, its temperature refitted on its validation crops
(``leukoscan classify calibrate``): two runs of one view each cost what one run of two views costs.

    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --quarter-turns 0.5 --seed 1 \
        --only munich --only pbc --only zheng --only taleqani --ship-dir runs/seed1
    python bench/eval_ensemble.py --weights weights --weights runs/seed1   # crosslab_ensemble.{json,md}
    python bench/eval_ensemble.py --weights weights --weights runs/seed1 --views 1 --name crosslab_ensemble_1view
    python bench/eval_ensemble.py --cells data/cells_w14 --weights runs/w14 --weights runs/w14-seed1 \
        --name crosslab_ensemble_w14   # the 1.4-window recipe's two runs (bench/classifier_trials.md)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from crosslab_runs import figure_rows  # noqa: E402
from eval_crosslab import eval_cells, held_out_row, held_out_sets, predict  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.config import BUILD_DIR  # noqa: E402


def run_probs(model: Path, subset: pd.DataFrame, cells: pd.DataFrame, views: int | None, data: Path) -> np.ndarray:
    """``model``'s calibrated probabilities of ``subset``'s crops: as its card says, or from ``views``
    test-time views with the temperature refitted on ``data/val`` (the folder it was trained from)."""
    if views is None:
        return predict(model, subset, cells)
    from leukoscan.classify.predict import CellClassifier
    from leukoscan.classify.train import calibrate_scores, folder_counts, scores_card
    from leukoscan.datasets.cells import read_crops

    clf = CellClassifier(model, device="cpu", strict=False)
    others = clf.prior_strength if clf.others_strength is None else clf.others_strength  # the card's own
    scores = scores_card(folder_counts(data / "train"), views, clf.prior_strength, others)
    clf.temperature = calibrate_scores(clf, scores, data / "val")["temperature"]  # configured: views, prior
    return clf.probs(read_crops(subset))


def ensemble_rows(cells: pd.DataFrame, folders: list[Path], views: int | None, data: Path) -> list[dict]:
    """One row per held-out source and figure: each run's value and the value of their averaged probabilities
    (``data``: the cell dataset, whose ``runs/no-<source>`` folders the models were trained from)."""
    rows = []
    for source, subset in held_out_sets(cells).items():
        models = [f / "lolo" / f"no-{source}.pt" for f in folders]
        models = [m for m in models if m.exists()]
        if len(models) < 2:
            print(f"skipped {source}: {len(models)} run(s) hold its model")
            continue
        probs = [run_probs(m, subset, cells, views, data / "runs" / f"no-{source}") for m in models]
        scored = {str(m.parent.parent): held_out_row(source, subset, p) for m, p in zip(models, probs)}
        scored["average"] = held_out_row(source, subset, np.mean(probs, axis=0))
        for row in figure_rows(source):
            rows.append(row | {k: v[row["figure"]] for k, v in scored.items()})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="cell dataset folder")
    ap.add_argument(
        "--weights", type=Path, action="append", required=True, help="a training run's folder (twice or more)"
    )
    ap.add_argument(
        "--views", type=int, choices=(1, 2, 4, 8), help="test-time views of every model (default: its card's)"
    )
    ap.add_argument("--name", default="crosslab_ensemble", help="results file name")
    args = ap.parse_args()
    if len(args.weights) < 2:
        ap.error("give --weights at least twice (one folder per training run)")
    rows = ensemble_rows(eval_cells(args.cells), args.weights, args.views, args.cells)
    table = pd.DataFrame(rows)
    md = (
        "Averaging training runs (`python bench/eval_ensemble.py "
        + (f"--cells {args.cells} " if args.cells != BUILD_DIR / "cells" else "")
        + " ".join(f"--weights {w}" for w in args.weights)
        + (f" --views {args.views}" if args.views else "")
        + (f" --name {args.name}" if args.name != "crosslab_ensemble" else "")
        + "`): each leave-one-lab-out model on the source it never saw, each run alone and their calibrated "
        "probabilities averaged.\n\n"
        + table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".3f", missingval="–")
    )
    save(args.name, {"weights": [str(w) for w in args.weights], "views": args.views, "rows": rows}, md)


if __name__ == "__main__":
    main()
