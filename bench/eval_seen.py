"""The leave-one-lab-out models on the test splits of the sources they saw (not held out): what a recipe does on
the labs a model knows, measured without training the shipped model (~2 h), from one or more model folders
(``--weights``, repeatable: the committed models, a second run, a trial's), as ``bench/eval_crosslab.py`` scores
the shipped model.

    python bench/eval_seen.py --weights weights --weights runs/seed1 --weights runs/eqblasts \
        --name crosslab_seen_eqblasts
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_crosslab import HEADLINE, RESULTS, eval_cells, flat_source_figures, predict  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.config import BUILD_DIR  # noqa: E402

FIGURES = {
    "munich": ("blast_recall", "auc_blast_vs_neutrophil"),
    "pbc": ("accuracy", "normal_called_blast"),
    "zheng": ("accuracy", "normal_called_blast"),
    "taleqani": ("cell_blast_recall_all_fields", "benign_cells_called_blast", "image_auc_all_vs_benign"),
}


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="cell dataset folder")
    ap.add_argument("--weights", type=Path, action="append", required=True, help="a folder holding lolo/no-*.pt")
    ap.add_argument("--name", default="crosslab_seen", help="results file name")
    args = ap.parse_args()
    cells = eval_cells(args.cells)
    test = cells[cells.split == "test"]
    rows = []
    for folder in args.weights:
        for held_out in HEADLINE:
            weights = folder / "lolo" / f"no-{held_out}.pt"
            if not weights.exists():
                continue
            seen = {source: names for source, names in FIGURES.items() if source != held_out}
            subset = test[test.source.isin(seen)]
            rows.append(
                {"models": str(folder), "model": weights.stem}
                | flat_source_figures(subset, predict(weights, subset, cells), seen)
            )
            print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    table = pd.DataFrame(rows).map(lambda x: "–" if pd.isna(x) else f"{x:.3f}" if isinstance(x, float) else x)
    command = "python bench/eval_seen.py " + " ".join(f"--weights {w}" for w in args.weights) + f" --name {args.name}"
    md = (
        f"The leave-one-lab-out models on the test splits of the sources they saw (`{command}`; the shipped model's "
        "figures are in `crosslab.md`).\n\n" + table.to_markdown(index=False, disable_numparse=True) + "\n"
    )
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
