"""A trial of the class-prior correction (no training): P(blast) as the models give it (the cards' strength 2), and
the other types shared out with a weaker correction (strength 0 or 1 among them), so that a cell's type, when it
is not a blast, is drawn less towards the rare types (eosinophil, basophil), which the strength-2 correction
favours. The blast-vs-rest probability is the card's; a cell's call (the most likely type) can still change.

Each leave-one-lab-out model on the source it never saw, and the shipped model on every source's test split, as
``bench/eval_crosslab.py`` scores them.

    python bench/eval_normal_prior.py     # writes bench/results/crosslab_normal_prior.{json,md}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_crosslab import RESULTS, eval_cells, flat_source_figures, held_out_row, held_out_sets, trial_parser  # noqa: E402

from leukoscan import runtime  # noqa: E402

NORMAL_STRENGTHS = (None, 0.0, 1.0)  # None: one correction for every type (the cards' strength, 2)
SHIPPED = {
    "munich": ("blast_recall", "accuracy"),
    "pbc": ("accuracy", "normal_called_blast"),
    "zheng": ("accuracy", "normal_called_blast"),
    "taleqani": ("image_auc_all_vs_benign", "cell_blast_recall_all_fields", "benign_cells_called_blast"),
}


def variants(weights: Path, crops: np.ndarray):
    """(normal strength, probabilities) of ``crops`` under ``weights``: one correction for every type (the cards
    before this trial), then P(blast) kept and the other types' share made at each of ``NORMAL_STRENGTHS``, as a
    card's ``others_strength`` makes it (``Classifier.calibrated``; the model runs once)."""
    from leukoscan.classify.predict import CellClassifier

    clf = CellClassifier(weights, device="cpu", strict=False)
    plain = clf.view_probs(crops)
    for s in NORMAL_STRENGTHS:
        clf.others_strength = s
        yield "one correction" if s is None else f"others at {s:g}", clf.calibrated(plain)


def main() -> None:
    runtime.setup()
    args = trial_parser(__doc__, "crosslab_normal_prior").parse_args()
    from leukoscan.datasets.cells import read_crops

    cells = eval_cells(args.cells)
    held, shipped = [], []
    for source, subset in held_out_sets(cells).items():
        for name, probs in variants(args.weights / "lolo" / f"no-{source}.pt", read_crops(subset)):
            row = held_out_row(source, subset, probs)
            keep = {k: v for k, v in row.items() if k != "n" and not k.startswith("n_")}
            held.append({"held out": source, "scores": name, **keep})
            print(json.dumps(held[-1]), flush=True)
    test = cells[cells.split == "test"]
    for name, probs in variants(args.weights / "classifier.pt", read_crops(test)):
        shipped.append({"scores": name, **flat_source_figures(test, probs, SHIPPED)})
        print(json.dumps(shipped[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"held_out": held, "shipped": shipped}, indent=2) + "\n")

    def text(rows: list[dict]) -> str:
        df = pd.DataFrame(rows).map(
            lambda x: f"{x:.3f}" if isinstance(x, float) else json.dumps(x) if isinstance(x, dict) else x
        )
        return df.to_markdown(index=False, disable_numparse=True)

    md = "\n".join(
        [
            "P(blast) as the cards give it, the other types shared out at a weaker class-prior correction "
            "(`python bench/eval_normal_prior.py`). Held out: each leave-one-lab-out model on the source it never saw.",
            "",
            text(held),
            "",
            "The shipped model on each source's test split:",
            "",
            text(shipped),
            "",
        ]
    )
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
