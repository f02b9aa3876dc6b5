"""The Taleqani image-level 4-class figure (#15: "not below today's 0.964") at the blast share a field is called
ALL at: the share eval_crosslab.py uses (half its white cells), and the one that does best on the Taleqani
*validation* blocks, applied to the test blocks (chosen without looking at them).

The 4-class call of a field (eval_crosslab.taleqani): Benign unless its cells called blast reach the share, then
the blasts' mean subtype (weights/subtype.pt). The share is a choice of that figure, not of the product (a slide's
verdict follows config.VerdictRules): this script says how much of the gap to 0.964 is that choice and how much
is the model. Crops from ``leukoscan data cells``.

    python bench/eval_4class.py     # writes bench/results/taleqani_4class.{json,md}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eval_crosslab import eval_cells, predict, subtype_probs, taleqani  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.config import BUILD_DIR, DATA_ROOT, WEIGHTS_DIR  # noqa: E402

SHARES = np.round(np.arange(0.05, 0.951, 0.05), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="cell dataset folder")
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT)
    ap.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--name", default="taleqani_4class", help="results file name")
    args = ap.parse_args()
    runtime.setup()
    from leukoscan.cards import sha256
    from leukoscan.classify.predict import SubtypeClassifier

    cells = eval_cells(args.cells)
    subtype_model = SubtypeClassifier(args.weights / "subtype.pt", device="cpu")
    by_share = {}
    for split in ("val", "test"):
        blocks = cells[(cells.source == "taleqani") & (cells.split == split)]
        probs = predict(args.weights / "classifier.pt", blocks, cells)
        subtype = subtype_probs(subtype_model, blocks, args.data_root)
        by_share[split] = {
            float(s): taleqani(blocks, probs, subtype, call_at=s)["image_4class_accuracy"] for s in SHARES
        }
        by_share[split]["n_images"] = int(blocks.file.nunique())
        print(split, json.dumps(by_share[split]), flush=True)
    val = {s: a for s, a in by_share["val"].items() if s != "n_images"}
    chosen = max(val, key=lambda s: (val[s], -abs(s - 0.5)))  # ties: the share nearer half
    result = {
        "classifier_sha256": sha256(args.weights / "classifier.pt"),
        "subtype_sha256": sha256(args.weights / "subtype.pt"),
        "n_images": {split: by_share[split]["n_images"] for split in by_share},
        "test_at_half": by_share["test"][0.5],
        "chosen_on_val": chosen,
        "val_at_chosen": val[chosen],
        "test_at_chosen": by_share["test"][chosen],
        "by_share": {
            split: {str(s): a for s, a in rows.items() if s != "n_images"} for split, rows in by_share.items()
        },
    }
    lines = [
        "Taleqani image-level 4-class accuracy (Benign, Early Pre-B, Pre-B, Pro-B) of the shipped models by the share "
        "of a field's white cells called blast at which it is called ALL (`python bench/eval_4class.py`):",
        "",
        f"- at half (eval_crosslab.py's figure): test {result['test_at_half']:.3f}",
        f"- at {chosen:.2f}, the share best on the {result['n_images']['val']} validation fields "
        f"({result['val_at_chosen']:.3f} there): test {result['test_at_chosen']:.3f} "
        f"({result['n_images']['test']} fields)",
        "- #15's reference: the former Taleqani-only 4-class model, 0.964 (bench/classifier_4class.md)",
        "",
        "| share | " + " | ".join(f"{s:.2f}" for s in SHARES) + " |",
        "|---|" + "---|" * len(SHARES),
        *(
            f"| {split} | " + " | ".join(f"{by_share[split][float(s)]:.3f}" for s in SHARES) + " |"
            for split in ("val", "test")
        ),
    ]
    save(args.name, result, "\n".join(lines))


if __name__ == "__main__":
    main()
