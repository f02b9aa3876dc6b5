"""Model cards: the JSON written beside each shipped weight file (recipe, data, metrics, hashes)."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Literal, get_args


def sha256(path: Path) -> str:
    """sha256 of a file, or of a model folder's files in name order (an OpenVINO export)."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0" + f.read_bytes())
        return h.hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_card(weights: Path) -> dict:
    card = Path(weights).with_suffix(".json")
    return json.loads(card.read_text()) if card.is_file() else {}


def ship(best: Path, weights: Path, card: dict) -> Path:
    """Copy trained weights to ``weights`` and write ``weights.json`` with their sha256 and ``card``."""
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".tmp")
    shutil.copyfile(best, tmp)
    tmp.replace(weights)
    digest = sha256(weights)
    full = {
        "file": weights.name,
        "sha256": digest,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **card,
    }
    full.update(file=weights.name, sha256=digest)  # the card names these weights, whatever it was given
    weights.with_suffix(".json").write_text(json.dumps(full, indent=2) + "\n")
    return weights


Backend = Literal["pytorch", "onnx", "openvino", "openvino-int8"]  # what `--backend` runs
BACKENDS: tuple[str, ...] = get_args(Backend)
ExportFormat = StrEnum("ExportFormat", {b: b for b in BACKENDS[1:]})  # what `leukoscan export` writes: the others


class WeightsError(ValueError):
    """A weights file that cannot be used: missing, not a loadable model, or a model for another task (one line)."""


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


def record_export(weights: Path, backend: str) -> None:
    """Note that the ``backend`` export beside ``weights`` was just made from it (its sha256), so that
    ``backend_file`` refuses an export left over from other weights (a model updated, its exports not)."""
    weights = Path(weights)
    _exports_record(weights).write_text(json.dumps(_exports(weights) | {backend: sha256(weights)}, indent=2) + "\n")
