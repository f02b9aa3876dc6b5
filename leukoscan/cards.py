"""Model cards: the JSON written beside each shipped weight file (recipe, data, metrics, hashes)."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_card(weights: Path) -> dict:
    card = Path(weights).with_suffix(".json")
    return json.loads(card.read_text()) if card.is_file() else {}


def ship(best: Path, weights: Path, card: dict) -> Path:
    """Copy trained weights to ``weights`` and write ``weights.json`` with their sha256 and ``card``."""
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp = weights.with_suffix(".tmp")
    shutil.copyfile(best, tmp)
    tmp.replace(weights)
    full = {"file": weights.name, "sha256": sha256(weights), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **card}
    weights.with_suffix(".json").write_text(json.dumps(full, indent=2) + "\n")
    return weights


def backend_file(weights: Path, backend: str) -> Path:
    """The weight file for ``backend``: the .pt itself (pytorch) or its exported .onnx twin (onnx)."""
    if backend not in ("pytorch", "onnx"):
        raise ValueError(f"unknown backend {backend!r} (use pytorch or onnx)")
    path = Path(weights).with_suffix(".onnx") if backend == "onnx" else Path(weights)
    if not path.is_file():
        hint = " (run `leukoscan export` first)" if backend == "onnx" else ""
        raise FileNotFoundError(f"{path.stem.split('.')[0]} weights not found: {path}{hint}")
    return path
