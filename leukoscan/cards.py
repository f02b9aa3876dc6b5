"""Model cards: the JSON written beside each shipped weight file (recipe, data, metrics, hashes)."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Literal, get_args

from leukoscan.config import SETTINGS, Geometry


def sha256(path: Path) -> str:
    """sha256 of a file, or of a model folder's files in name order (an OpenVINO export)."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0" + f.read_bytes())
        return h.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


class WeightsError(ValueError):
    """A weights file that cannot be used: missing, not a loadable model, or a model for another task (one line)."""


def card_geometry(card: dict) -> Geometry:
    """The ``Geometry`` a cell-type model cuts its crops with: the defaults, with the window and crop size
    its card records (``Geometry.crop_record``)."""
    return SETTINGS.geometry.with_crop_record(card.get("geometry", {}))


def read_card(weights: Path) -> dict:
    """The card beside ``weights`` ({} when there is none); a ``WeightsError`` naming it when it is not a card."""
    card = Path(weights).with_suffix(".json")
    if not card.is_file():
        return {}
    try:
        content = json.loads(card.read_text())
    except ValueError as e:
        raise WeightsError(f"{card} is not a readable model card ({e})") from None
    if not isinstance(content, dict):
        raise WeightsError(f"{card} is not a model card (a JSON object)")
    return content


def scoring_card(weights: Path) -> dict:
    """The card of a classifier a run scores cells with: its temperature, test-time views, class prior and crop
    geometry make its probabilities, so a ``WeightsError`` when there is none or it is another model's card
    (its sha256 not the weights'): the model would run with other scores without a word."""
    card = read_card(weights)
    name = Path(weights).with_suffix(".json").name
    if not card:
        raise WeightsError(
            f"{weights} has no card ({name} beside it: its calibration, test-time views and crop geometry): copy "
            "the card with the weights"
        )
    if card.get("sha256") and card["sha256"] != (digest := sha256(weights)):
        raise WeightsError(
            f"{name} is the card of other weights (sha256 {card['sha256'][:12]}…, {Path(weights).name} is "
            f"{digest[:12]}…): copy the weights' own card beside them"
        )
    return card


def write_card(weights: Path, card: dict) -> dict:
    """Write ``card`` beside ``weights`` (``weights.json``) with their sha256, whatever it was given (`run` refuses a
    card of other weights); returns what was written."""
    full = {**card, "sha256": sha256(weights)}
    Path(weights).with_suffix(".json").write_text(json.dumps(full, indent=2) + "\n")
    return full


def ship(best: Path, weights: Path, card: dict) -> Path:
    """Copy trained weights to ``weights`` and write ``weights.json`` with their sha256 and ``card``."""
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".tmp")
    shutil.copyfile(best, tmp)
    tmp.replace(weights)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    named = {"file": weights.name}  # the card names these weights, whatever it was given
    write_card(weights, {**named, "sha256": "", "created": created, **card, **named})
    return weights


Backend = Literal["pytorch", "onnx", "openvino", "openvino-int8"]  # what `--backend` runs
BACKENDS: tuple[str, ...] = get_args(Backend)
ModelFormat = StrEnum(
    "ModelFormat", {b: b for b in BACKENDS[1:]}
)  # model formats `leukoscan export` writes: the others (not the cell exports of run --export)


def load_model(weights: Path, task: str):
    """The Ultralytics model (``task``: detect or classify) in ``weights``: a .pt file, or an export that
    ``backend_file`` found (those load on first use); a ``WeightsError`` when it is missing, cannot be
    loaded or was made for another task."""
    from leukoscan.runtime import yolo

    weights = Path(weights)
    if not weights.exists():
        raise WeightsError(f"weights not found: {weights}")
    kind = "folder" if weights.is_dir() else weights.suffix.lower()
    if kind not in (".pt", ".onnx") and not (kind == "folder" and weights.name.endswith("_openvino_model")):
        # Ultralytics would take it and fail only on the first field
        raise WeightsError(f"{weights} is not a model (a .pt file, or an export of one: .onnx, *_openvino_model/)")
    try:
        if kind == ".onnx":  # an export loads on first use: read it now, so that a broken one fails here
            import onnx

            onnx.load(str(weights), load_external_data=False)
        model = yolo(weights, task)
    except Exception as e:  # a foreign file fails anywhere in torch or Ultralytics, with any exception type
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        reason = reason.removeprefix("ERROR ❌️ ").replace(
            str(weights), "it"
        )  # Ultralytics' words, without the path again
        raise WeightsError(f"cannot load {weights} as a {task} model: {reason}") from None
    if model.task != task:
        raise WeightsError(f"{weights} is a {model.task} model, not a {task} model")
    return model


def backend_file(weights: Path, backend: str) -> Path:
    """The model for ``backend``: the .pt itself (pytorch), or what `leukoscan export` wrote beside it
    (``name.onnx``; ``name_openvino_model/`` and ``name_int8_openvino_model/``, the folders Ultralytics writes)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (use {', '.join(BACKENDS)})")
    weights = Path(weights)
    path = {
        "pytorch": weights,
        "onnx": weights.with_suffix(".onnx"),
        "openvino": weights.with_name(f"{weights.stem}_openvino_model"),
        "openvino-int8": weights.with_name(f"{weights.stem}_int8_openvino_model"),
    }[backend]
    if not path.exists():
        hint = f" (run `leukoscan export --format {backend}` first)" if backend != "pytorch" else ""
        raise FileNotFoundError(f"{weights.stem} weights not found: {path}{hint}")
    if backend != "pytorch" and _exports(weights).get(backend) != sha256(weights):
        raise ValueError(
            f"{path.name} was not exported from this {weights.name} (exported from other weights, or before "
            f"exports were recorded): run `leukoscan export --format {backend}` again"
        )
    return path


def _exports_record(weights: Path) -> Path:
    """Beside ``weights``: which of its exports were made from it (``record_export``)."""
    return weights.with_name(f"{weights.stem}.exports.json")


def _exports(weights: Path) -> dict[str, str]:
    record = _exports_record(Path(weights))
    return json.loads(record.read_text()) if record.is_file() else {}


def forget_export(weights: Path, backend: str) -> None:
    """Before the ``backend`` export beside ``weights`` is written again: no longer recorded as made from them, so
    that one left half-written (an interrupted export, a full disk) is refused by ``backend_file``, never run."""
    weights = Path(weights)
    if backend in (exports := _exports(weights)):
        _exports_record(weights).write_text(
            json.dumps({k: v for k, v in exports.items() if k != backend}, indent=2) + "\n"
        )


def record_export(weights: Path, backend: str) -> None:
    """Note that the ``backend`` export beside ``weights`` was just made from it (its sha256), so that
    ``backend_file`` refuses an export left over from other weights (a model updated, its exports not)."""
    weights = Path(weights)
    _exports_record(weights).write_text(json.dumps(_exports(weights) | {backend: sha256(weights)}, indent=2) + "\n")
