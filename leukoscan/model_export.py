"""Model export (`leukoscan export`): each model written beside its .pt in the formats asked (ONNX, OpenVINO,
OpenVINO INT8 calibrated on its held-in val split) by Ultralytics, and recorded (``cards.record_export``) only once
whole, so that `run --backend` never runs a half-written one."""

from __future__ import annotations

import warnings
from pathlib import Path

from leukoscan.cards import forget_export, load_model, record_export
from leukoscan.cli import NOTHING_PROCESSED, console, fail, interrupted, user_errors


def export_models(models: tuple[tuple[Path, str, Path], ...], formats: list) -> None:
    """Export each (weights, task, calibration data) of ``models`` in each of ``formats``: every model is loaded
    first (a file that is not one: one line, nothing exported); a write failure is one line, Ctrl-C says what is
    left incomplete."""
    if "openvino-int8" in formats and (missing := [data for _, _, data in models if not data.exists()]):
        fail(
            f"calibration data not found: {missing[0]} (build it with `leukoscan data detect` / `data cells` + "
            "`classify train-cells` / `data classify`, or pass --detect-data / --classify-data / --subtype-data)"
        )
    with user_errors():  # every model loads before anything is exported
        for weights, task, _ in models:
            load_model(weights, task)
    if "openvino-int8" in formats:
        import logging

        import nncf  # Ultralytics' INT8 OpenVINO export quantises with it; quiet its per-layer INFO lines

        nncf.set_log_level(logging.WARNING)
    try:
        for fmt in formats:
            for weights, task, data in models:
                model = load_model(weights, task)
                extra = {"simplify": False} if fmt == "onnx" else {}
                if fmt == "openvino-int8":  # calibrated at the size the model was trained at
                    extra = {"quantize": 8, "data": str(data), "imgsz": model.overrides.get("imgsz", 640)}
                forget_export(weights, fmt)  # until it is whole again
                with user_errors(NOTHING_PROCESSED), warnings.catch_warnings():  # a folder in the way, a full disk
                    warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notes, not the user's
                    path = model.export(format=fmt.removesuffix("-int8"), dynamic=True, device="cpu", **extra)
                record_export(weights, fmt)
                console.print(f"exported {path}", markup=False, soft_wrap=True)
    except KeyboardInterrupt:
        interrupted("the export being written is incomplete (`--backend` refuses it): run `leukoscan export` again")
