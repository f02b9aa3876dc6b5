"""Fine-tuning the detector on a lab's label set, and its promotion gate; every decision is recorded in its
registry (``weights/registry.json``, ``leukoscan.registry``), whose archive ``WeightsRegistry.rollback`` restores from.
"""

from __future__ import annotations

import json
import random
import tempfile
from dataclasses import asdict
from pathlib import Path

from leukoscan.cards import sha256
from leukoscan.detect.labels import read_list, tile_labset
from leukoscan.detect.train import FINETUNE, DetectorRecipe
from leukoscan.registry import WeightsRegistry, install
from leukoscan.training import fit


def finetune(
    labset: Path,
    start: Path,
    replay_images: Path | None,
    out: Path,
    recipe: DetectorRecipe = FINETUNE,
    replay_n: int = 200,
    device: str = "auto",
    seed: int = 0,
) -> Path:
    """Train from ``start`` on the lab's training photographs (as training-size tiles, ``tile_labset``) plus
    ``replay_n`` original training images (so the detector does not forget); validate on the lab's
    held-out photographs. Writes ``candidate.pt`` and ``candidate.json`` (the recipe) in ``out``; returns
    the candidate path."""
    out.mkdir(parents=True, exist_ok=True)
    tiles = tile_labset(labset).parent
    train = [str(p.resolve()) for p in read_list(tiles / "train.txt")]
    replay = []
    if replay_images and replay_images.is_dir():
        pool = sorted(str(p.resolve()) for p in replay_images.glob("*.jpg"))
        replay = random.Random(seed).sample(pool, min(replay_n, len(pool)))
    (out / "train.txt").write_text("".join(f"{p}\n" for p in train + replay))
    data = out / "data.yaml"
    data.write_text(
        f"path: {out.resolve()}\ntrain: train.txt\nval: {(tiles / 'val.txt').resolve()}\nnames:\n  0: white_cell\n"
    )
    model, seconds = fit(start, "detect", data, out / "runs", "finetune", recipe, device)
    candidate = out / "candidate.pt"
    install(model.trainer.best, candidate)  # whole or not at all (a Ctrl-C during the copy)
    card = {
        "parent": str(start),
        "parent_sha256": sha256(start),
        "labset": str(labset),
        "lab_train_photos": len(read_list(labset / "train.txt")),
        "lab_train_tiles": len(train),
        "replay_images": len(replay),
        "recipe": {**asdict(recipe), "model": str(start)},
        "train_seconds": round(seconds, 1),
        "sha256": sha256(candidate),
    }
    (out / "candidate.json").write_text(json.dumps(card, indent=2) + "\n")
    return candidate


def score(weights: Path, data: Path, split: str, imgsz: int, device: str = "auto") -> dict:
    """Ultralytics val (mAP50 over all confidences) plus recall and precision at the pipeline's operating
    confidence, where a screening run actually counts cells."""
    from leukoscan.detect.score import model_metrics
    from leukoscan.runtime import yolo

    with tempfile.TemporaryDirectory() as tmp:  # Ultralytics makes a run folder: never in the weights folder
        m = model_metrics(yolo(weights, "detect"), data, split, imgsz, device, Path(tmp), "gate")
    return {
        "mAP50": round(float(m.box.map50), 4),
        "recall": round(float(m.box.mr), 4),
        "precision": round(float(m.box.mp), 4),
        **operating_point(weights, data, split, device),
    }


def operating_point(weights: Path, data: Path, split: str, device: str = "auto") -> dict:
    """Recall and precision (IoU 0.5) of the ``Detector`` at its operating confidence on a YOLO split whose
    fields are at the training scale (the regression set, label-set tiles)."""
    from leukoscan.runtime import ultralytics

    utils = ultralytics("ultralytics.data.utils")
    check_det_dataset, img2label_paths = utils.check_det_dataset, utils.img2label_paths
    from leukoscan.datasets.segment import TALEQANI_CELL_PX
    from leukoscan.detect.predict import Detector
    from leukoscan.detect.score import score_fields
    from leukoscan.images import list_images

    source = Path(check_det_dataset(str(data))[split])
    images = read_list(source) if source.is_file() else list_images(source)
    detector = Detector(weights, device)
    score = score_fields(
        detector, images, [Path(p) for p in img2label_paths([str(i) for i in images])], TALEQANI_CELL_PX
    )
    return {
        "operating_conf": detector.settings.conf,
        "recall_at_conf": round(score.recall, 4),
        "precision_at_conf": round(score.precision, 4),
        **({"unreadable_fields": score.unreadable} if score.unreadable else {}),
    }


def read_registry(current: Path) -> list[dict]:
    """The detector registry beside ``current`` ([] when there is none; ``WeightsRegistry.entries``)."""
    return WeightsRegistry(current).entries()


def promote(
    candidate: Path,
    current: Path,
    regression_data: Path,
    lab_data: Path,
    tolerance: float = 0.02,
    imgsz: int = DetectorRecipe.imgsz,
    device: str = "auto",
) -> dict:
    """Replace ``current`` by ``candidate`` only if the lab's held-out mAP50 improves, the lab's recall at the
    operating confidence does not drop (a screening tool must not start missing cells), and the regression
    set's mAP50 drops by at most ``tolerance``. Both outcomes are recorded in the registry."""
    scores = {
        name: {
            "regression": score(weights, regression_data, "test", imgsz, device),
            "lab": score(weights, lab_data, "val", imgsz, device),
        }
        for name, weights in (("current", current), ("candidate", candidate))
    }
    promoted, reason = _gate(scores, tolerance)
    WeightsRegistry(current).decide(candidate, promoted, reason, scores)
    return {"promoted": promoted, "reason": reason, "scores": scores}


def _gate(scores: dict, tolerance: float) -> tuple[bool, str]:
    """Whether the candidate passes the promotion gate, and why in one line."""
    lab_gain = scores["candidate"]["lab"]["mAP50"] - scores["current"]["lab"]["mAP50"]
    regression_drop = scores["current"]["regression"]["mAP50"] - scores["candidate"]["regression"]["mAP50"]
    recall_change = scores["candidate"]["lab"]["recall_at_conf"] - scores["current"]["lab"]["recall_at_conf"]
    reason = (
        f"lab mAP50 {lab_gain:+.4f}, lab recall at conf {scores['current']['lab']['operating_conf']} "
        f"{recall_change:+.4f} (must not drop), regression mAP50 {-regression_drop:+.4f} "
        f"(may drop by {tolerance:g} at most)"
    )
    return lab_gain > 0 and recall_change >= 0 and regression_drop <= tolerance, reason
