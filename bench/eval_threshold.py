"""Is there one P(blast) threshold that works on a lab never seen? Each leave-one-lab-out model on its
held-out source, the share of cells at or above each P(blast) threshold.

Held out, the rankings transfer (Munich AUC, Taleqani image AUC) but no blast is called a blast; this asks
whether a lower threshold (the verdict counts cells at ``confident_blast_p``) would find the unseen lab's
blasts before it flags the unseen lab's normal cells: Munich's myeloblasts (and its neutrophils), Taleqani's
ALL-field cells (and its Benign ones) against PBC's and Zheng's normal cells, each scored by the model that
never saw that source.

    python bench/eval_threshold.py      # writes bench/results/crosslab_threshold.{json,md}
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_crosslab import NORMAL, eval_cells, held_out_sets, predict, trial_parser  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402

THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.95)


def cell_groups(source: str, cells: pd.DataFrame) -> dict[str, np.ndarray]:
    """The held-out source's cells that should (blasts) and should not (normal) reach the threshold."""
    if source == "munich":
        blast = (cells.type == "blast").to_numpy()
        return {"munich myeloblasts": blast, "munich neutrophils": ~blast}
    if source == "taleqani":  # a cell's field diagnosis (weak labels): ALL fields' cells are mostly blasts
        all_fields = (cells.original_type == "blast").to_numpy()  # as eval_crosslab.taleqani tells them
        return {"taleqani ALL-field cells": all_fields, "taleqani Benign cells": ~all_fields}
    return {f"{source} normal cells": cells.type.isin(NORMAL).to_numpy()}


def main() -> None:
    runtime.setup()
    args = trial_parser(__doc__, "crosslab_threshold").parse_args()
    cells = eval_cells(args.cells)
    shares = {}
    for source, subset in held_out_sets(cells).items():
        p_blast = predict(args.weights / "lolo" / f"no-{source}.pt", subset, cells)[:, 0]
        for group, mask in cell_groups(source, subset).items():
            shares[group] = [round(float(np.mean(p_blast[mask] >= t)), 4) for t in THRESHOLDS]
            print(group, shares[group], flush=True)
    table = pd.DataFrame(shares, index=pd.Index(THRESHOLDS, name="P(blast) >="))
    md = (
        "Each leave-one-lab-out model on the source it never saw (`python bench/eval_threshold.py`): the share "
        "of cells with P(blast) at or above each threshold (the verdict counts cells at `confident_blast_p`).\n\n"
        + table.reset_index().to_markdown(index=False, floatfmt=".3f")
    )
    save(args.name, {"thresholds": list(THRESHOLDS), "share_at_or_above": shares}, md)


if __name__ == "__main__":
    main()
