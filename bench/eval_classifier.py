"""Honest evaluation of the cell classifier (and the whole-field baseline) on the held-out test split.

    python bench/eval_classifier.py [--weights weights/subtype.pt] [--baseline runs/classify/fields/weights/best.pt]
        [--compare "unbalanced=runs/classify/classifier_unbalanced/weights/best.pt"]
        [--compare "margin 0.75=runs/classify/m75/weights/best.pt@data/classify_m75"]

Cell level: every crop of the test split. Image level: the mean calibrated probability of an image's
cells. Baseline: one classifier on the whole 224x224 field (the original notebook's approach), same split.
Writes bench/results/classifier.{json,md} (classifier_val.* with --split val, for choosing what to ship;
classifier_<backend>.* with --backend, e.g. openvino-int8 after `leukoscan export --format openvino-int8`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.results_io import save  # noqa: E402
from leukoscan import runtime  # noqa: E402
from leukoscan.cells import CLASSES, LABELS  # noqa: E402
from leukoscan.classify.calibrate import apply_temperature, ece  # noqa: E402
from leukoscan.classify.predict import Classifier  # noqa: E402
from leukoscan.classify.train import folder_predictions  # noqa: E402
from leukoscan.config import BUILD_DIR, SUBTYPE_WEIGHTS  # noqa: E402
from leukoscan.datasets.splits import manifest_hash  # noqa: E402


def metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    pred = probs.argmax(axis=1)
    cm = pd.crosstab(pd.Categorical(labels, range(4)), pd.Categorical(pred, range(4)), dropna=False).to_numpy()
    recall = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
    precision = cm.diagonal() / np.maximum(cm.sum(axis=0), 1)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-9)
    return {
        "n": int(len(labels)),
        "accuracy": round(float((pred == labels).mean()), 4),
        "macro_f1": round(float(f1.mean()), 4),
        "ece": round(ece(probs, labels), 4),
        "recall": {LABELS[i]: round(float(r), 4) for i, r in enumerate(recall)},
        "confusion": cm.tolist(),
    }


def image_level(probs: np.ndarray, labels: np.ndarray, files: list[Path]) -> dict:
    images = [f.stem.rsplit("_", 1)[0] for f in files]
    df = pd.DataFrame(probs, columns=CLASSES).assign(image=images, label=labels)
    agg = df.groupby("image").agg({**{c: "mean" for c in CLASSES}, "label": "first"})
    return metrics(agg[list(CLASSES)].to_numpy(), agg["label"].to_numpy())


def evaluate(weights: Path, folder: Path, per_image: bool, backend: str = "pytorch") -> dict:
    clf = Classifier(weights, device="auto", backend=backend)
    raw, labels, files = folder_predictions(clf, folder)
    probs = apply_temperature(raw, clf.temperature)
    out = {
        "weights": str(weights),
        "temperature": clf.temperature,
        "cell" if per_image else "image": metrics(probs, labels),
    }
    if per_image:
        out["cell"]["ece_uncalibrated"] = round(ece(raw, labels), 4)
        out["image"] = image_level(probs, labels, files)
    return out


def markdown(results: dict) -> str:
    rows = [
        "| model | level | n | accuracy | macro-F1 | " + " | ".join(f"recall {n}" for n in LABELS) + " | ECE |",
        "|---|---|---|---|---|" + "---|" * len(LABELS) + "---|",
    ]
    for name, res in results["models"].items():
        for level in ("cell", "image"):
            if level in res:
                m = res[level]
                rows.append(
                    f"| {name} | {level} | {m['n']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | "
                    + " | ".join(f"{m['recall'][n]:.3f}" for n in LABELS)
                    + f" | {m['ece']:.3f} |"
                )
    return "\n".join(rows) + "\n"


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, default=SUBTYPE_WEIGHTS)
    ap.add_argument("--crops", type=Path, default=BUILD_DIR / "classify")
    ap.add_argument("--baseline", type=Path, default=None, help="whole-field classifier weights")
    ap.add_argument("--fields", type=Path, default=BUILD_DIR / "fields")
    ap.add_argument("--split", default="test")
    ap.add_argument(
        "--backend", default="pytorch", help="the shipped classifier's backend (an exported one: results get its name)"
    )
    ap.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=WEIGHTS[@CROPS]",
        help="another cell classifier in the same table (its crop folder if built with other geometry)",
    )
    args = ap.parse_args()
    results = {"split": args.split, "manifest_sha256": manifest_hash(args.crops / "manifest.csv"), "models": {}}
    shipped = "cell classifier (shipped)" + ("" if args.backend == "pytorch" else f" [{args.backend}]")
    results["models"][shipped] = evaluate(args.weights, args.crops / args.split, per_image=True, backend=args.backend)
    for spec in args.compare:
        name, _, rest = spec.partition("=")
        weights, _, crops = rest.partition("@")
        crops = Path(crops) if crops else args.crops
        if manifest_hash(crops / "manifest.csv") != results["manifest_sha256"]:
            raise SystemExit(f"{crops} was built from another split manifest than {args.crops}")
        results["models"][name] = evaluate(Path(weights), crops / args.split, per_image=True)
    if args.baseline:
        results["models"]["whole-field baseline"] = evaluate(args.baseline, args.fields / args.split, per_image=False)
    name = (
        "classifier"
        + ("" if args.split == "test" else f"_{args.split}")
        + ("" if args.backend == "pytorch" else f"_{args.backend}")
    )
    save(name, results, markdown(results))
    for name, res in results["models"].items():
        for level in ("cell", "image"):
            if level in res:
                print(name, level, "confusion (rows true, cols predicted, order", LABELS, "):", res[level]["confusion"])


if __name__ == "__main__":
    main()
