"""Detector accuracy on the held-out split, model-level (Ultralytics val) and pipeline-level.

    python bench/eval_detector.py [--weights weights/detector.pt] [--split test]

Model level: Ultralytics `val` on data/detect (Taleqani contiguous-block split + TXL-PBC official split).
Pipeline level: the `Detector` as `leukoscan run` uses it (cell size estimated once from the first two
fields, operating confidence 0.25), precision and recall at IoU 0.5 against the labels, per source. Also counts on the
bundled lab photographs. Writes bench/results/detector.{json,md} (detector_<backend>.* with --backend).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import supervision as sv  # noqa: E402

from bench.results_io import save  # noqa: E402
from leukoscan import runtime  # noqa: E402
from leukoscan.config import BUILD_DIR, DETECTOR_WEIGHTS, REPO_ROOT  # noqa: E402
from leukoscan.datasets.splits import manifest_hash  # noqa: E402
from leukoscan.detect.predict import Detector  # noqa: E402
from leukoscan.detect.score import score_fields  # noqa: E402
from leukoscan.images import list_images, load_rgb  # noqa: E402


def model_level(weights: Path, data: Path, split: str, imgsz: int) -> dict:
    from leukoscan.detect.score import model_metrics
    from leukoscan.runtime import yolo

    m = model_metrics(
        yolo(weights, "detect"), data / "data.yaml", split, imgsz, "auto", REPO_ROOT / "runs" / "val", "bench"
    )
    return {k.replace("metrics/", ""): round(float(v), 4) for k, v in m.results_dict.items()}


def pipeline_level(detector: Detector, data: Path, split: str) -> dict:
    out = {}
    for source, prefix in (("taleqani", "tq_"), ("txl-pbc", "txl_")):
        files = sorted((data / "images" / split).glob(f"{prefix}*.jpg"))
        # as `leukoscan run` does for a slide: the cell size is estimated once from the first two fields;
        # TXL mosaics are already at Taleqani scale (27 px), given instead of estimated
        cell_px = 27.0 if prefix == "txl_" else detector.estimate_cell_px([load_rgb(f) for f in files[:2]])
        out[f"{source}_cell_px"] = round(cell_px, 2)
        labels = [data / "labels" / split / f"{img.stem}.txt" for img in files]
        score = score_fields(detector, files, labels, cell_px, batch=1)  # one field at a time, as measured before
        for det in (*score.detections, *score.truths):
            det.class_id = np.zeros(len(det), int)
        mean_ap = sv.metrics.MeanAveragePrecision().update(score.detections, score.truths).compute()
        out[source] = {
            "images": len(score.detections),
            "cells": score.n_true,
            "precision": round(score.precision, 4),
            "recall": round(score.recall, 4),
            "mAP50": round(float(mean_ap.map50), 4),
        }
    return out


def lab_counts(detector: Detector) -> dict:
    return {p.name: len(detector(load_rgb(p))) for p in list_images(REPO_ROOT / "datasets" / "samples")}


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=DETECTOR_WEIGHTS)
    ap.add_argument("--data", type=Path, default=BUILD_DIR / "detect")
    ap.add_argument("--split", default="test")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--backend", default="pytorch", help="an exported backend (results get its name)")
    args = ap.parse_args()
    detector = Detector(args.weights, backend=args.backend)
    res = {
        "split": args.split,
        "manifest_sha256": manifest_hash(args.data / "manifest.csv"),
        "weights": str(detector.weights),
        "backend": args.backend,
        "operating_conf": detector.settings.conf,
        "model_level_ultralytics_val": model_level(detector.weights, args.data, args.split, args.imgsz),
        "pipeline_level": pipeline_level(detector, args.data, args.split),
        "lab_samples_detected": lab_counts(detector),
    }
    m = res["model_level_ultralytics_val"]
    lines = [
        f"Split `{args.split}`, manifest sha256 `{res['manifest_sha256'][:12]}`.",
        "",
        "| level | source | precision | recall | mAP50 | mAP50-95 |",
        "|---|---|---|---|---|---|",
        f"| model (Ultralytics val, imgsz {args.imgsz}) | all | {m['precision(B)']:.3f} | {m['recall(B)']:.3f} | "
        f"{m['mAP50(B)']:.3f} | {m['mAP50-95(B)']:.3f} |",
    ]
    for src, v in res["pipeline_level"].items():
        if not isinstance(v, dict):
            continue
        lines.append(
            f"| pipeline (conf {detector.settings.conf}) | {src} ({v['images']} images, {v['cells']} cells) | "
            f"{v['precision']:.3f} | {v['recall']:.3f} | {v['mAP50']:.3f} | |"
        )
    save("detector" + ("" if args.backend == "pytorch" else f"_{args.backend}"), res, "\n".join(lines))
    print(json.dumps(res["lab_samples_detected"], indent=2))


if __name__ == "__main__":
    main()
