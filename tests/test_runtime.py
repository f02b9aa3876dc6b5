"""Offline runtime: environment, threads, font, and no socket opened by a train + predict smoke run."""

import os
import socket

import pytest
import torch
from synth import smear, write_yolo_dataset


def test_runtime_environment():
    from ultralytics.utils import SETTINGS

    assert os.environ["YOLO_OFFLINE"] == "true" and os.environ["YOLO_AUTOINSTALL"] == "false"
    assert torch.get_num_threads() == os.cpu_count()
    assert SETTINGS["sync"] is False
    from pathlib import Path

    assert (Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics" / "Arial.ttf").is_file()


@pytest.fixture
def no_network(monkeypatch):
    calls = []

    def refuse(self, address, *a, **k):
        calls.append(address)
        raise AssertionError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: refuse(None, address))
    return calls


def test_train_and_predict_smoke_opens_no_socket(tmp_path, no_network):
    from ultralytics import YOLO

    from detect.train import DetectorRecipe, train

    data = write_yolo_dataset(tmp_path / "ds", n_train=4, n_val=2)
    recipe = DetectorRecipe(imgsz=64, epochs=1, batch=4, workers=0, mosaic=0.0)
    best, card = train(data, tmp_path / "runs", "smoke", recipe, device="cpu")
    assert best.is_file() and card["train_seconds"] > 0 and "mAP50(B)" in card["val_metrics"]
    img, _ = smear()
    result = YOLO(str(best)).predict(img[..., ::-1], imgsz=64, verbose=False, device="cpu")
    assert len(result) == 1
    assert torch.get_num_threads() == os.cpu_count()  # ultralytics did not drop to cpu_count-1
    assert no_network == []


def test_cli_starts_without_loading_torch(tmp_path):
    """`leukoscan --help` stays fast: importing the CLI sets the runtime up but loads no torch or
    Ultralytics (they are configured the moment something imports them)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import importlib.util, os, sys, pipeline; print('torch' in sys.modules, 'ultralytics' in sys.modules); "
            "importlib.util.find_spec('ultralytics'); "  # a look without an import must not spend the set-up
            "import torch, ultralytics.utils as uu; print(uu.SETTINGS['sync'], torch.get_num_threads() == os.cpu_count())")
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path)}  # fresh Ultralytics settings: sync on until set up
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent, env=env)
    assert out.stdout.split()[-4:] == ["False", "False", "False", "True"]
