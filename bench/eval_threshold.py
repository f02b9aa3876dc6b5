"""Is there one P(blast) threshold that works on a lab never seen? Each leave-one-lab-out model on its
held-out source, the share of cells at or above each P(blast) threshold.

Held out, the rankings transfer (Munich AUC, Taleqani image AUC) but no blast is called a blast; this asks
whether a lower threshold (the verdict counts cells at ``confident_blast_p``) would find the unseen lab's
blasts before it flags the unseen lab's normal cells: Munich's myeloblasts (and its neutrophils), Taleqani's
ALL-field cells (and its Benign ones) against PBC's and Zheng's normal cells, each scored by the model that
never saw that source.

A second table asks the same of an open-set score, "no normal type claims the cell" (1 - the largest
normal-type probability: a cell the model cannot place among the normal types, whatever it makes of
``blast``), beside P(blast): the AUC of each unseen source's blasts against another unseen source's normal
cells (0.5: one threshold cannot tell them apart), and the share of blasts at the threshold that flags 5 %
of PBC's or Zheng's normal cells, whichever is higher. A third score puts each cell's P(blast) against a
reference inside its slide (each held-out source taken as one slide): its log-odds over the median of the
slide's confident neutrophils' (P(neutrophil) > 0.9), the cells every lab types best. Taleqani's test blocks
have almost none (their fields were chosen for lymphoid cells), so its figures there rest on a handful.

    python bench/eval_threshold.py      # writes bench/results/crosslab_threshold.{json,md}
    python bench/eval_threshold.py --lolo weights/lolo-seed2 --name crosslab_threshold_seed2   # another run's
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_crosslab import NORMAL, auc, eval_cells, held_out_sets, predict, trial_parser  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.cells import CELL_TYPES  # noqa: E402

THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)
NORMAL_COLUMNS = [CELL_TYPES.index(t) for t in NORMAL]
CONFIDENT_NEUTROPHIL = 0.9


def relative_to_neutrophils(probs: np.ndarray) -> np.ndarray:
    """A cell's P(blast) log-odds over the median of the slide's confident neutrophils' (a held-out source
    taken as one slide): a reference inside the slide, from the cells every lab types best."""
    log_odds = np.log(probs[:, 0] + 1e-9) - np.log1p(-probs[:, 0] + 1e-9)
    reference = probs[:, CELL_TYPES.index("neutrophil")] > CONFIDENT_NEUTROPHIL
    return log_odds - (np.median(log_odds[reference]) if reference.any() else np.nan)


SCORES = {  # a cell's score from its slide's calibrated CELL_TYPES probabilities
    "P(blast)": lambda probs: probs[:, 0],
    "no normal type claims it": lambda probs: 1 - probs[:, NORMAL_COLUMNS].max(1),
    "P(blast) over the slide's neutrophils": relative_to_neutrophils,
}
FALSE_SHARE = 0.05  # the owner's target for unseen labs' normal cells called blasts


def cell_groups(source: str, cells: pd.DataFrame) -> dict[str, np.ndarray]:
    """The held-out source's cells that should (blasts) and should not (normal) reach the threshold."""
    if source == "munich":
        blast = (cells.type == "blast").to_numpy()
        return {"munich myeloblasts": blast, "munich neutrophils": ~blast}
    if source == "taleqani":  # a cell's field diagnosis (weak labels): ALL fields' cells are mostly blasts
        all_fields = (cells.original_type == "blast").to_numpy()  # as eval_crosslab.taleqani tells them
        return {"taleqani ALL-field cells": all_fields, "taleqani Benign cells": ~all_fields}
    return {f"{source} normal cells": cells.type.isin(NORMAL).to_numpy()}


def cross_lab(scores: dict[str, np.ndarray]) -> dict:
    """One score's figures over the held-out groups (``cell_groups``' names): within-lab AUCs, each unseen
    blast group against each unseen normal source, and the blasts flagged at the threshold that flags
    ``FALSE_SHARE`` of PBC's or Zheng's normal cells (the higher)."""
    blasts, normals = ("munich myeloblasts", "taleqani ALL-field cells"), ("pbc normal cells", "zheng normal cells")
    row = {
        "munich AUC": auc(scores["munich myeloblasts"], scores["munich neutrophils"]),
        "taleqani cell AUC": auc(scores["taleqani ALL-field cells"], scores["taleqani Benign cells"]),
    }
    row |= {f"{b} vs {n} AUC": auc(scores[b], scores[n]) for b in blasts for n in normals}
    threshold = max(np.quantile(scores[n], 1 - FALSE_SHARE) for n in normals)
    row |= {f"{g} flagged": float(np.mean(scores[g] >= threshold)) for g in (*blasts, "taleqani Benign cells")}
    return {k: round(v, 4) for k, v in row.items()} | {"threshold": round(float(threshold), 4)}


def main() -> None:
    runtime.setup()
    ap = trial_parser(__doc__, "crosslab_threshold")
    ap.add_argument("--lolo", type=Path, help="the leave-one-lab-out models' folder (default: <weights>/lolo)")
    args = ap.parse_args()
    lolo = args.lolo or args.weights / "lolo"
    cells = eval_cells(args.cells)
    by_score = {name: {} for name in SCORES}
    for source, subset in held_out_sets(cells).items():
        probs = predict(lolo / f"no-{source}.pt", subset, cells)
        source_scores = {name: score(probs) for name, score in SCORES.items()}  # the source as one slide
        for group, mask in cell_groups(source, subset).items():
            for name, values in source_scores.items():
                by_score[name][group] = values[mask]
            print(group, flush=True)
    p_blast = by_score["P(blast)"]
    shares = {group: [round(float(np.mean(p >= t)), 4) for t in THRESHOLDS] for group, p in p_blast.items()}
    table = pd.DataFrame(shares, index=pd.Index(THRESHOLDS, name="P(blast) >="))
    scores = {name: cross_lab(groups) for name, groups in by_score.items()}
    md = (
        "Each leave-one-lab-out model on the source it never saw (`python bench/eval_threshold.py`): the share "
        "of cells with P(blast) at or above each threshold (the verdict counts cells at `confident_blast_p`).\n\n"
        + table.reset_index().to_markdown(index=False, floatfmt=".3f")
        + "\n\nEach score across unseen labs: AUCs within a lab and of one unseen source's blasts against another "
        f"unseen source's normal cells; the share flagged at the threshold that flags {FALSE_SHARE:.0%} of PBC's "
        "or Zheng's normal cells (the higher).\n\n"
        + pd.DataFrame(scores).rename_axis("figure").reset_index().to_markdown(index=False, floatfmt=".3f")
    )
    save(args.name, {"thresholds": list(THRESHOLDS), "share_at_or_above": shares, "scores": scores}, md)


if __name__ == "__main__":
    main()
