"""Score the trial of one physical scale by a normal type (bench/scaled_cells.py): the model blind to Munich
trained on the scaled copy (runs/scaled/lolo/no-munich.pt), against the committed one (weights/lolo/), each on
Munich's crops cut both ways (the dataset's, and the scaled copy's, whose factor came from Munich's neutrophils
and PBC's lymphocytes, never from a blast). Beside the argmax calls, the blast recall with the call placed at 2 %
of Munich's neutrophils, as a lab's own reference places it (on P(blast) here; `leukoscan lab-reference` fits it
on the blast margin of the lab's normal slides).

    python bench/eval_scaled.py        # writes bench/results/crosslab_scaled_munich.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from eval_crosslab import eval_cells, munich, predict  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.config import BUILD_DIR, WEIGHTS_DIR  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells")
    ap.add_argument("--scaled", type=Path, default=BUILD_DIR / "cells_scaled")
    ap.add_argument("--trial", type=Path, default=ROOT / "runs" / "scaled" / "lolo" / "no-munich.pt")
    ap.add_argument("--name", default="crosslab_scaled_munich", help="results file name")
    args = ap.parse_args()
    runtime.setup()
    models = {"committed (dataset's scale)": WEIGHTS_DIR / "lolo" / "no-munich.pt", "trial (scaled)": args.trial}
    rows = []
    factor = pd.read_csv(args.scaled / "cells.csv").query("lab == 'munich'").cell_px.iloc[0] / 109.5
    for crops_name, folder in (("dataset's crops", args.cells), (f"scaled crops ({factor:.2f}x window)", args.scaled)):
        cells = eval_cells(folder)
        held = cells[cells.source == "munich"]
        for model_name, weights in models.items():
            probs = predict(weights, held, cells)
            figures = munich(held, probs)
            # a lab's own reference (`leukoscan lab-reference`): the blast call placed at 2 % of its normal cells
            blast = (held.type == "blast").to_numpy()
            threshold = np.quantile(probs[~blast, 0], 0.98)
            figures["recall_at_2pct_of_neutrophils"] = round(float((probs[blast, 0] > threshold).mean()), 4)
            rows.append({"model": model_name, "munich crops": crops_name, **figures})
            print(json.dumps(rows[-1]), flush=True)
    lines = [
        "Munich held out (1,995 cells), the model blind to it trained on the dataset's crops (committed) or on the "
        "copy whose PBC and Munich crops are cut so that a normal type sits at one size across labs "
        "(`bench/scaled_cells.py`; trial), each on Munich's crops cut both ways (`python bench/eval_scaled.py`):",
        "",
        pd.DataFrame(rows).to_markdown(index=False),
    ]
    save(args.name, rows, "\n".join(lines))


if __name__ == "__main__":
    main()
