"""Detector recall and precision on the bundled lab photographs, against cells counted by eye.

    python bench/lab_photos.py [--weights "before=weights/detector.pt"] [--weights "after=runs/finetune/candidate.pt"]
        [--held-out EarlyPreb.jpeg]

Truth: `datasets/samples/cells.coco.json` (every white cell in the seven photographs, reviewed by eye).
Each photograph is screened as `leukoscan run` screens a one-photo slide (cell size estimated by the
detector's scale search, operating confidence); a detection matches a cell at IoU >= 0.5. Photographs
named by `--held-out` are reported separately (they were not used for fine-tuning).
Writes bench/results/lab_photos.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results_io import save  # noqa: E402
from leukoscan import runtime  # noqa: E402
from leukoscan.config import DETECTOR_WEIGHTS, REPO_ROOT  # noqa: E402
from leukoscan.datasets.segment import agreement  # noqa: E402
from leukoscan.detect.labels import read_coco  # noqa: E402
from leukoscan.detect.predict import Detector  # noqa: E402
from leukoscan.images import list_images, load_rgb  # noqa: E402

SAMPLES = REPO_ROOT / "datasets" / "samples"


def truth_boxes(coco_path: Path) -> dict:
    """The reviewed cells per photograph (the same COCO reader `leukoscan detect import-labels` uses)."""
    boxes, problems = read_coco(coco_path, {p.name: p for p in list_images(SAMPLES)})
    if problems:
        raise SystemExit("\n".join(problems))
    return boxes


def score(detector: Detector, truth: dict) -> dict:
    rows = {}
    for name, true in truth.items():
        rgb = load_rgb(SAMPLES / name)
        cell_px = detector.estimate_cell_px([rgb])
        det = detector(rgb, cell_size=cell_px)
        tp, n_pred, n_true = agreement(det, true, 0.5)
        rows[name] = {
            "cells_by_eye": n_true,
            "detected": n_pred,
            "matched": tp,
            "cell_px": round(cell_px, 1),
            "recall": round(tp / max(n_true, 1), 3),
            "precision": round(tp / max(n_pred, 1), 3),
        }
    return rows


def pooled(rows: dict, names) -> dict:
    tp = sum(rows[n]["matched"] for n in names)
    return {
        "photos": len(names),
        "cells_by_eye": sum(rows[n]["cells_by_eye"] for n in names),
        "recall": round(tp / max(sum(rows[n]["cells_by_eye"] for n in names), 1), 3),
        "precision": round(tp / max(sum(rows[n]["detected"] for n in names), 1), 3),
    }


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--truth", type=Path, default=SAMPLES / "cells.coco.json")
    ap.add_argument("--held-out", nargs="*", default=[], help="photographs kept out of fine-tuning")
    args = ap.parse_args()
    specs = [w.partition("=")[::2] for w in args.weights] or [("current", str(DETECTOR_WEIGHTS))]
    truth = truth_boxes(args.truth)
    res = {
        "truth": str(args.truth.relative_to(REPO_ROOT)) if args.truth.is_relative_to(REPO_ROOT) else str(args.truth),
        "iou": 0.5,
        "held_out": args.held_out,
        "models": {},
    }
    for name, path in specs:
        det = Detector(Path(path), "auto")
        rows = score(det, truth)
        seen = [n for n in rows if n not in args.held_out]
        res["models"][name] = {
            "weights": path,
            "conf": det.settings.conf,
            "photos": rows,
            "all": pooled(rows, list(rows)),
            "fine-tuning photos": pooled(rows, seen),
            "held-out photos": pooled(rows, args.held_out),
        }
    lines = [
        "| photo | cells by eye | " + " | ".join(f"{m}: detected / matched / recall" for m in res["models"]) + " |",
        "|---|---|" + "---|" * len(res["models"]),
    ]
    for photo in truth:
        first = next(iter(res["models"].values()))["photos"][photo]
        tag = " (held out)" if photo in args.held_out else ""
        lines.append(
            f"| {photo}{tag} | {first['cells_by_eye']} | "
            + " | ".join(
                f"{m['photos'][photo]['detected']} / {m['photos'][photo]['matched']} / "
                f"{m['photos'][photo]['recall']:.2f}"
                for m in res["models"].values()
            )
            + " |"
        )
    for group in ("all", "fine-tuning photos", "held-out photos"):
        if next(iter(res["models"].values()))[group]["photos"]:
            lines.append(
                f"| **{group}** | {next(iter(res['models'].values()))[group]['cells_by_eye']} | "
                + " | ".join(
                    f"recall {m[group]['recall']:.3f}, precision {m[group]['precision']:.3f}"
                    for m in res["models"].values()
                )
                + " |"
            )
    save("lab_photos", res, "\n".join(lines))


if __name__ == "__main__":
    main()
