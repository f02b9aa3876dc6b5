"""Markdown tables of the built datasets (split counts, detection labels, crop counts, segmentation agreement).

python bench/dataset_tables.py      # after `leukoscan data detect` and `leukoscan data classify`;
                                    # writes bench/results/dataset_tables.{json,md}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.config import BUILD_DIR  # noqa: E402


def main() -> None:
    runtime.setup()
    manifest = pd.read_csv(BUILD_DIR / "detect" / "manifest.csv", keep_default_na=False)
    used = manifest[manifest.split != ""]
    images = used.groupby(["class_dir", "split"]).size().unstack()[["train", "val", "test"]]
    dropped = manifest[manifest.dropped != ""].dropped.str.replace(r" of .*", "", regex=True).value_counts()
    det = json.loads((BUILD_DIR / "detect" / "summary.json").read_text())
    rows = [{"source/split": k, **v} for k, v in det["counts"].items()]
    a = det["colour_vs_mask"]
    cls = json.loads((BUILD_DIR / "classify" / "summary.json").read_text())
    md = "\n".join(
        [
            "Taleqani images per split (after deduplication and guard bands):\n",
            images.to_markdown(),
            "\nDropped: " + ", ".join(f"{n} {k}" for k, n in dropped.items()) + f" (of {len(manifest)}).\n",
            "Detection dataset (images, white-cell boxes):\n",
            pd.DataFrame(rows).astype(object).fillna("").to_markdown(index=False),
            f"\nColour segmentation vs mask boxes on Benign/Early/Pre (all used images, IoU {a['iou']}): "
            f"precision {a['precision']:.3f}, recall {a['recall']:.3f} ({a['true_positives']} matched boxes).\n",
            "Classification crops (weak labels) per split and class:\n",
            pd.DataFrame(cls["counts"]).T.to_markdown(),
        ]
    )
    results = {
        "taleqani_images": images.to_dict(),
        "dropped": dropped.to_dict(),
        "n_manifest": len(manifest),
        "detection": det["counts"],
        "colour_vs_mask": a,
        "classification_crops": cls["counts"],
    }
    save("dataset_tables", results, md)


if __name__ == "__main__":
    main()
