"""How the cell-type models' probabilities are made (``CellScores``): test-time views x class-prior correction.

Each combination of 1, 2, 4 or 8 test-time views (a crop's rotations and mirror images, probabilities
averaged) and prior-correction strength (each type's probability divided by its share of the training
crops to that power, renormalised), with its temperature fitted on the model's validation crops as
``leukoscan classify calibrate`` does, scored as ``bench/eval_crosslab.py`` scores them: each
leave-one-lab-out model on the source it never saw, and the shipped model on every source's test split.
The models are those of ``--weights``; their cards' own scores are not used.

    python bench/eval_scores.py     # writes bench/results/crosslab_scores.{json,md}
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_crosslab import (  # noqa: E402
    HEADLINE,
    RESULTS,
    eval_cells,
    flat_source_figures,
    held_out_row,
    held_out_sets,
    trial_parser,
)

from leukoscan import runtime  # noqa: E402
from leukoscan.config import TEST_TIME_VIEWS  # noqa: E402

STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0)
SHIPPED = {  # source -> figures of the shipped model on its test split
    "munich": ("auc_blast_vs_neutrophil", "blast_recall"),
    "pbc": ("accuracy", "normal_called_blast"),
    "zheng": ("accuracy", "normal_called_blast"),
    "taleqani": ("image_auc_all_vs_benign", "cell_blast_recall_all_fields", "benign_cells_called_blast"),
}


def variants(weights: Path, crops: np.ndarray, data: Path):
    """(views, strength) -> calibrated probabilities of ``crops`` under ``weights``, each combination with its
    own temperature fitted on ``data/val`` (the model's training folder)."""
    from leukoscan.cells import CELL_TYPES
    from leukoscan.classify.calibrate import apply_temperature, correct_prior, fit_temperature
    from leukoscan.classify.predict import CardScores, CellClassifier
    from leukoscan.classify.train import folder_counts, folder_predictions, scores_card

    clf = CellClassifier(weights, device="cpu", strict=False)
    every_view = _AllViews(clf)
    val, labels, _ = folder_predictions(every_view, data / "val", CELL_TYPES)
    test = every_view.raw_probs(crops)
    scores = CardScores.of(scores_card(folder_counts(data / "train"), 8, 1.0))  # its class prior, as at run time
    clf.configure_scores(scores)
    for views, strength in itertools.product(TEST_TIME_VIEWS, STRENGTHS):
        val_p, test_p = (correct_prior(p[:views].mean(0), clf.prior, strength) for p in (val, test))
        yield views, strength, apply_temperature(test_p, fit_temperature(val_p, labels))


class _AllViews:
    """A classifier's softmax of each of a crop's 8 views (8 x N x classes), for ``folder_predictions``."""

    def __init__(self, clf):
        self.clf = clf

    def raw_probs(self, crops: np.ndarray) -> np.ndarray:
        from leukoscan.classify.augment import as_input
        from leukoscan.classify.predict import dihedral_views

        if not len(crops):
            return np.zeros((8, 0, len(self.clf.classes)), np.float32)
        views = self.clf.softmax(dihedral_views(as_input(np.asarray(crops), self.clf.colour), 8))
        return views.reshape(8, len(crops), -1)


def markdown(rows: pd.DataFrame, shipped: pd.DataFrame) -> str:
    def text(table: pd.DataFrame) -> str:
        figures = table.drop(columns=["views", "prior correction"]).map(lambda x: f"{x:.3f}")
        settings = table[["views", "prior correction"]].map(lambda x: f"{x:g}")
        return pd.concat([settings, figures], axis=1).to_markdown(index=False, disable_numparse=True)

    lines = [
        "Test-time views x class-prior correction (`python bench/eval_scores.py`): each combination with its "
        "temperature fitted on the model's validation crops. Held out: each leave-one-lab-out model on the "
        "source it never saw (headline figure of `bench/results/crosslab.md`; targets: Munich AUC >= 0.95, "
        "Taleqani image AUC >= 0.90, PBC and Zheng normal cells called blast <= 0.03).",
        "",
        text(rows),
        "",
        "The shipped model (all sources) on each source's test split:",
        "",
        text(shipped) if len(shipped) else "(none in this folder: leave-one-lab-out models only)",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    runtime.setup()
    args = trial_parser(__doc__, "crosslab_scores").parse_args()
    from leukoscan.datasets.cells import read_crops

    cells = eval_cells(args.cells)
    rows = []
    for source, subset in held_out_sets(cells).items():
        weights, data = args.weights / "lolo" / f"no-{source}.pt", args.cells / "runs" / f"no-{source}"
        metric = HEADLINE[source][0]
        for views, strength, probs in variants(weights, read_crops(subset), data):
            row = held_out_row(source, subset, probs)
            rows.append({"held out": source, "views": views, "prior correction": strength, metric: row[metric]})
            print(json.dumps(rows[-1]), flush=True)
    test = cells[cells.split == "test"]
    shipped = []
    shipped_weights = args.weights / "classifier.pt"  # a second training run may have leave-one-lab-out models only
    for views, strength, probs in (
        variants(shipped_weights, read_crops(test), args.cells / "runs" / "all") if shipped_weights.exists() else ()
    ):
        row = {"views": views, "prior correction": strength}
        row |= flat_source_figures(test, probs, SHIPPED)
        shipped.append(row)
        print(json.dumps(row), flush=True)
    held_table = pd.DataFrame(rows).pivot_table(
        index=["views", "prior correction"], columns="held out", aggfunc="first"
    )
    held_table.columns = [f"{source}: {metric}" for metric, source in held_table.columns]
    held_table = held_table.reset_index()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"held_out": rows, "shipped": shipped}, indent=2) + "\n")
    md = markdown(held_table, pd.DataFrame(shipped))
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
