"""Offline runtime: environment, threads, font, the patches on Ultralytics (each tested for its effect, so an
upgrade that makes one wrong fails here), and no socket opened by a train + predict smoke run."""

import os
import socket

import pytest
import torch
from synth import smear, write_yolo_dataset

from leukoscan.runtime import cores


def test_runtime_environment():
    from leukoscan.runtime import ultralytics

    SETTINGS = ultralytics("ultralytics.utils").SETTINGS

    assert os.environ["YOLO_OFFLINE"] == "true" and os.environ["YOLO_AUTOINSTALL"] == "false"
    assert torch.get_num_threads() == cores()
    assert SETTINGS["sync"] is False
    assert not any(SETTINGS[key] for key in ("clearml", "comet", "dvc", "mlflow", "raytune"))  # installed or not
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
    from leukoscan.detect.train import DetectorRecipe, train
    from leukoscan.runtime import yolo

    data = write_yolo_dataset(tmp_path / "ds", n_train=4, n_val=2)
    recipe = DetectorRecipe(imgsz=64, epochs=1, batch=4, workers=0, mosaic=0.0)
    best, card = train(data, tmp_path / "runs", "smoke", recipe, device="cpu")
    assert best.is_file() and card["train_seconds"] > 0 and "mAP50(B)" in card["val_metrics"]
    img, _ = smear()
    result = yolo(best, "detect").predict(img[..., ::-1], imgsz=64, verbose=False, device="cpu")
    assert len(result) == 1
    assert torch.get_num_threads() == cores()  # ultralytics did not drop to cpu_count-1
    assert no_network == []


def test_pillow_open_is_pillows_own_after_ultralytics():
    """Ultralytics replaces ``PIL.Image.open`` with one that tries to pip-install a HEIF plugin for a file
    Pillow cannot identify; the runtime puts Pillow's back, so a non-image is a plain UnidentifiedImageError."""
    import io

    import ultralytics.utils.patches as patches
    from PIL import Image, UnidentifiedImageError

    from leukoscan.runtime import ultralytics

    ultralytics()
    assert Image.open is patches._image_open and Image.open.__module__ == "PIL.Image"
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"not an image at all"))


def test_cli_starts_without_loading_torch(tmp_path):
    """`leukoscan --help` stays fast: importing the CLI changes nothing in the process and loads no torch or
    Ultralytics; the runtime's importer sets up and patches Ultralytics, even when it was imported first."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import os, sys, leukoscan.pipeline; print('torch' in sys.modules, 'ultralytics' in sys.modules, "
        "'YOLO_OFFLINE' in os.environ); "
        "import ultralytics.utils as uu; from PIL import Image; patched = Image.open; "  # imported before set-up
        "from leukoscan.runtime import ultralytics; ultralytics(); import torch; "
        "print(uu.SETTINGS['sync'], torch.get_num_threads() == len(os.sched_getaffinity(0)), "
        "Image.open is not patched, "
        "os.environ['YOLO_OFFLINE'])"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env["YOLO_CONFIG_DIR"] = str(tmp_path)  # fresh Ultralytics settings: sync on until set up
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
    )
    lines = out.stdout.splitlines()  # (Ultralytics, imported unconfigured, may print its settings notice between)
    assert lines[0].split() == ["False", "False", "False"] and lines[-1].split() == ["False", "True", "True", "true"]
