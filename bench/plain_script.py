"""The baseline `leukoscan run` is timed against: a plain script of Ultralytics calls on the same weights and
fields, as someone would write it without leukoscan (the owner's rule for speed: end to end, start-up
included, each in a fresh process, in the same run; ``bench/speed.py`` runs both).

Each model's own ``predict`` with the settings its checkpoint carries (the detector at imgsz 320, the
classifiers at 64, confidence 0.25), the fields read with OpenCV and given in batches, each box cropped
as it is (no scale, window, quality control, calibration or test-time views), the blasts' crops to the
subtype model; one CSV row per cell. Nothing else: no overlays, tables, verdict or report.

    python bench/plain_script.py FOLDER [--weights weights] [--batch 16] [--device auto] [--out cells.csv]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from leukoscan import runtime  # noqa: E402  (offline Ultralytics: its set-up is kept in one place)
from leukoscan.config import WEIGHTS_DIR  # noqa: E402
from leukoscan.images import list_images  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--device", default="auto", help="auto (Ultralytics' choice: CUDA when present), cpu or cuda:N")
    ap.add_argument("--out", type=Path, default=Path("cells.csv"))
    args = ap.parse_args()
    runtime.setup()
    yolo = runtime.ultralytics().YOLO
    device = None if args.device == "auto" else args.device
    detector, classifier, subtype = (yolo(args.weights / f) for f in ("detector.pt", "classifier.pt", "subtype.pt"))
    fields = list_images(args.folder)
    with args.out.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["image", "x1", "y1", "x2", "y2", "det_conf", "cell_type", "subtype"])
        for i in range(0, len(fields), args.batch):
            paths = fields[i : i + args.batch]
            images = [cv2.imread(str(p)) for p in paths]
            for path, image, found in zip(paths, images, detector.predict(images, device=device, verbose=False)):
                boxes = found.boxes.xyxy.int().tolist()
                crops = [image[y1:y2, x1:x2] for x1, y1, x2, y2 in boxes]
                types = (
                    [classifier.names[r.probs.top1] for r in classifier.predict(crops, device=device, verbose=False)]
                    if crops
                    else []
                )
                blasts = [c for c, t in zip(crops, types) if t == "blast"]
                subtypes = (
                    iter(subtype.names[r.probs.top1] for r in subtype.predict(blasts, device=device, verbose=False))
                    if blasts
                    else iter(())
                )
                for box, conf, t in zip(boxes, found.boxes.conf.tolist(), types):
                    out.writerow([path.name, *box, round(conf, 4), t, next(subtypes) if t == "blast" else ""])


if __name__ == "__main__":
    main()
