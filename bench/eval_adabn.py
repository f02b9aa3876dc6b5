"""Trial: adapt the cell-type models' batch-norm statistics to the slide they look at (AdaBN).

A model's batch-norm layers normalise each feature with the mean and variance of its training crops; on a
lab it never saw (other optics, stain, camera) those statistics are off. AdaBN re-estimates them from the
crops of the slide at hand (no labels, no training), in the first ``layers`` blocks of the network or all of
them. Scored as ``bench/eval_crosslab.py`` scores the models: each leave-one-lab-out model on the source it
never saw, and the shipped model on every source's test split. A slide here is a ``stain_groups`` group
(a lab; for Taleqani one contiguous block of one class, about one patient), so a leukemic slide is adapted
on its own blasts and a normal slide on its normal cells. Munich's crops are also adapted on its blasts
alone and on its neutrophils alone (what a slide's mix of cells does to the statistics).

    python bench/eval_adabn.py     # writes bench/results/crosslab_adabn.{json,md}
"""

from __future__ import annotations

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

LAYERS = (0, 2, 5, 10)  # adapt the batch norms of the first n blocks (0: none; 10: every block)
SHIPPED = {
    "munich": ("auc_blast_vs_neutrophil", "blast_recall", "neutrophils_called_blast"),
    "pbc": ("accuracy", "normal_called_blast"),
    "zheng": ("accuracy", "normal_called_blast"),
    "taleqani": ("image_auc_all_vs_benign", "cell_blast_recall_all_fields", "benign_cells_called_blast"),
}


def adapt(clf, crops: np.ndarray, layers: int) -> None:
    """Re-estimate the batch-norm statistics of ``clf``'s first ``layers`` blocks on ``crops``: each layer's
    running mean and variance become the average over batches of ``crops`` (the classifier's batch size) of
    the batch statistics. Only on a PyTorch model not yet run (Ultralytics folds the batch norms into the
    convolutions on the first call, which then sees the adapted statistics)."""
    import torch

    from leukoscan.classify.augment import as_input

    module = clf.model.model
    norms = [m for block in module.model[:layers] for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    module.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
        norm.train()
    with torch.no_grad():
        for _, batch in clf.batches(as_input(crops, clf.colour)):  # the tensors classification feeds the model
            module(batch)
    module.eval()


def grouped_probs(weights: Path, cells: pd.DataFrame, crops: np.ndarray, layers: int, adapt_on=None) -> np.ndarray:
    """Calibrated probabilities of ``crops``, each slide (``stain_groups``) classified by the model adapted on
    that slide's crops (``adapt_on``: a boolean mask, the crops to adapt on instead, one group)."""
    from leukoscan.classify.predict import CellClassifier
    from leukoscan.datasets.cells import stain_groups

    out = np.zeros((len(cells), 9), np.float32)
    groups = stain_groups(cells) if adapt_on is None else pd.Series("all", index=cells.index)
    for _, idx in groups.groupby(groups.to_numpy()).indices.items():
        clf = CellClassifier(weights, device="cpu", strict=False)
        if layers:
            adapt(clf, crops[idx] if adapt_on is None else crops[adapt_on], layers)
        out[idx] = clf.probs(crops[idx])
    return out


def markdown(held: pd.DataFrame, shipped: pd.DataFrame) -> str:
    lines = [
        "AdaBN trial (`python bench/eval_adabn.py`): the batch-norm statistics of the network's first n blocks "
        "re-estimated on each slide's crops (n = 0: the model as trained; 10: every block). Held out: each "
        "leave-one-lab-out model on the source it never saw (a slide: a lab, or one Taleqani test block of one "
        "class); Munich's also adapted on its blasts alone and its neutrophils alone.",
    ]
    for source, rows in held.groupby("held out", sort=False):
        lines += [
            "",
            f"Held out: {source}",
            "",
            rows.dropna(axis=1).drop(columns="held out").to_markdown(index=False, floatfmt=".3f"),
        ]
    lines += ["", "The shipped model on each source's test split (each slide adapted on itself):", ""]
    lines += [shipped.set_index("layers").T.to_markdown(floatfmt=".3f"), ""]
    return "\n".join(lines)


def main() -> None:
    runtime.setup()
    args = trial_parser(__doc__, "crosslab_adabn").parse_args()
    from leukoscan.datasets.cells import read_crops

    cells = eval_cells(args.cells)
    held, shipped = [], []
    for source, subset in held_out_sets(cells).items():
        weights, metric = args.weights / "lolo" / f"no-{source}.pt", HEADLINE[source][0]
        crops = read_crops(subset)
        trials = [("each slide", None)]
        if source == "munich":
            blast = (subset.type == "blast").to_numpy()
            trials += [("blasts only", blast), ("neutrophils only", ~blast)]
        for layers in LAYERS:
            for adapted_on, mask in trials if layers else trials[:1]:
                row = held_out_row(source, subset, grouped_probs(weights, subset, crops, layers, mask))
                keep = {k: v for k, v in row.items() if k == metric or k in SHIPPED[source]}
                held.append({"held out": source, "layers": layers, "adapted on": adapted_on} | keep)
                print(json.dumps(held[-1]), flush=True)
    test = cells[cells.split == "test"]
    crops = read_crops(test)
    for layers in LAYERS:
        probs = grouped_probs(args.weights / "classifier.pt", test, crops, layers)
        row = {"layers": layers}
        row |= flat_source_figures(test, probs, SHIPPED)
        shipped.append(row)
        print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps({"held_out": held, "shipped": shipped}, indent=2) + "\n")
    md = markdown(pd.DataFrame(held), pd.DataFrame(shipped))
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
