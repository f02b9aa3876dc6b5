"""Do the exported models (ONNX, OpenVINO, OpenVINO INT8) give the PyTorch models' answers on the held-out split?

    python bench/backends_agree.py [--backends onnx openvino openvino-int8] [--images 200]

For every `--images`-th-spaced field of the detection test split (Taleqani and TXL-PBC), both models run
on each backend at the slide's cell size; every PyTorch box must have a box of the other backend at
IoU >= 0.99, and the crops of the PyTorch boxes must get the same label (and probabilities within 1e-3).
INT8 models are not expected to: for them the table also gives boxes matched at IoU >= 0.5 (the same
cell found) and the mean probability difference; their accuracy is measured by the eval scripts.
Writes bench/results/backends_agree.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import supervision as sv  # noqa: E402

from bench.results_io import save  # noqa: E402
from leukoscan import runtime  # noqa: E402
from leukoscan.config import BUILD_DIR, CLASSIFIER_WEIGHTS, DETECTOR_WEIGHTS, SUBTYPE_WEIGHTS  # noqa: E402
from leukoscan.images import load_rgb  # noqa: E402
from leukoscan.models import Models  # noqa: E402


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["onnx", "openvino", "openvino-int8"])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--data", type=Path, default=BUILD_DIR / "detect" / "images" / "test")
    args = ap.parse_args()
    files = sorted(args.data.glob("*.jpg"))
    if not files:
        sys.exit(f"error: no test fields in {args.data} (build them with `leukoscan data detect`, or pass --data)")
    files = files[:: max(1, len(files) // args.images)][: args.images]
    fields = [load_rgb(f) for f in files]
    ref = Models.load(DETECTOR_WEIGHTS, CLASSIFIER_WEIGHTS, SUBTYPE_WEIGHTS, "cpu", "pytorch")
    cell_px = 27.0  # the test split's fields are all at Taleqani scale (TXL mosaics are built at it)
    ref_dets = ref.detector.detect(fields, cell_px)
    ref_crops = [ref.classifier.crops(rgb, d, cell_px) for rgb, d in zip(fields, ref_dets)]
    ref_probs = ref.classifier.probs(np.concatenate(ref_crops))
    res = {"images": len(files), "boxes": int(sum(map(len, ref_dets))), "backends": {}}
    for backend in args.backends:
        other = Models.load(DETECTOR_WEIGHTS, CLASSIFIER_WEIGHTS, SUBTYPE_WEIGHTS, "cpu", backend)
        dets = other.detector.detect(fields, cell_px)
        matched = loose = same_count = 0
        for a, b in zip(ref_dets, dets):
            same_count += len(a) == len(b)
            if len(a) and len(b):
                best = sv.box_iou_batch(a.xyxy, b.xyxy).max(axis=1)
                matched, loose = matched + int((best >= 0.99).sum()), loose + int((best >= 0.5).sum())
        probs = other.classifier.probs(np.concatenate(ref_crops))
        res["backends"][backend] = {
            "fields_with_same_box_count": round(same_count / len(files), 4),
            "boxes_matched_iou_0.99": round(matched / max(res["boxes"], 1), 4),
            "boxes_matched_iou_0.5": round(loose / max(res["boxes"], 1), 4),
            "same_label": round(float((probs.argmax(1) == ref_probs.argmax(1)).mean()), 4),
            "max_prob_difference": float(f"{np.abs(probs - ref_probs).max():.2e}"),
            "mean_prob_difference": float(f"{np.abs(probs - ref_probs).mean():.2e}"),
        }
    lines = [
        f"{res['images']} held-out test fields, {res['boxes']} PyTorch boxes.",
        "",
        "| backend | fields with the same box count | boxes matched at IoU ≥ 0.99 | at IoU ≥ 0.5 | same label | "
        "max / mean probability difference |",
        "|---|---|---|---|---|---|",
    ]
    for b, r in res["backends"].items():
        lines.append(
            f"| {b} | {r['fields_with_same_box_count']:.3f} | {r['boxes_matched_iou_0.99']:.3f} | "
            f"{r['boxes_matched_iou_0.5']:.3f} | {r['same_label']:.3f} | "
            f"{r['max_prob_difference']:.1e} / {r['mean_prob_difference']:.1e} |"
        )
    save("backends_agree", res, "\n".join(lines))


if __name__ == "__main__":
    main()
