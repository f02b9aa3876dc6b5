"""Model cards (leukoscan/cards.py): file and export-folder hashes, reading and shipping a card, where each
backend's model lies beside the weights, and one-line errors for weights that cannot be used."""

import hashlib
import json

import pytest

from leukoscan.cards import (
    BACKENDS,
    ModelFormat,
    WeightsError,
    backend_file,
    load_model,
    read_card,
    record_export,
    sha256,
    ship,
)
from leukoscan.config import CLASSIFIER_WEIGHTS, DETECTOR_WEIGHTS


def test_sha256_of_a_file_is_hashlibs_and_of_a_folder_covers_every_file_name_and_content(tmp_path):
    """A file: the sha256 of its bytes. A folder (an OpenVINO export): one hash of its files' relative names and
    contents, whatever order they were written in, that changes when any file's name or content does."""
    f = tmp_path / "model.pt"
    f.write_bytes(b"weights\x00\x01")
    assert sha256(f) == hashlib.sha256(b"weights\x00\x01").hexdigest()
    assert sha256(str(f)) == sha256(f)  # a str path too

    def export(folder, files):
        for name, data in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return folder

    files = {"model.xml": b"<net/>", "model.bin": b"\x00" * 8, "sub/metadata.yaml": b"task: detect"}
    a = export(tmp_path / "a", files)
    b = export(tmp_path / "b", dict(reversed(files.items())))
    assert sha256(a) == sha256(b) and len(sha256(a)) == 64
    assert sha256(export(tmp_path / "c", {**files, "model.bin": b"\x00" * 7 + b"\x01"})) != sha256(a)
    renamed = {("model2.bin" if k == "model.bin" else k): v for k, v in files.items()}
    assert sha256(export(tmp_path / "d", renamed)) != sha256(a)
    assert sha256(export(tmp_path / "e", {**files, "extra.txt": b""})) != sha256(a)  # even an empty file counts


def test_read_card_finds_the_json_beside_the_weights_or_gives_an_empty_card(tmp_path):
    """The card of ``name.pt`` is ``name.json`` beside it; weights without one have an empty card (defaults)."""
    weights = tmp_path / "detector.pt"
    weights.write_bytes(b"w")
    assert read_card(weights) == {}
    weights.with_suffix(".json").write_text(json.dumps({"temperature": 1.5, "classes": ["a"]}))
    assert read_card(weights) == {"temperature": 1.5, "classes": ["a"]}
    assert read_card(str(weights))["temperature"] == 1.5
    assert read_card(CLASSIFIER_WEIGHTS)["sha256"] == sha256(CLASSIFIER_WEIGHTS)  # the shipped card


def test_ship_copies_the_weights_and_writes_a_card_with_their_hash(tmp_path):
    """``ship`` copies trained weights into place (creating the folder, leaving no temporary file) and writes
    ``name.json`` with the file's name, its sha256, the time and the given card; shipping again replaces both."""
    best = tmp_path / "runs" / "best.pt"
    best.parent.mkdir()
    best.write_bytes(b"first")
    weights = tmp_path / "shipped" / "detector.pt"
    assert ship(best, weights, {"recipe": {"epochs": 3}, "val_metrics": {"map50": 0.9}}) == weights
    assert weights.read_bytes() == b"first" and best.read_bytes() == b"first"
    card = read_card(weights)
    assert card["file"] == "detector.pt" and card["sha256"] == sha256(weights) == hashlib.sha256(b"first").hexdigest()
    assert card["recipe"] == {"epochs": 3} and card["val_metrics"] == {"map50": 0.9}
    assert card["created"].endswith("+00:00")  # UTC
    assert sorted(p.name for p in weights.parent.iterdir()) == ["detector.json", "detector.pt"]
    best.write_bytes(b"second")
    ship(best, weights, {})
    assert weights.read_bytes() == b"second" and read_card(weights)["sha256"] == sha256(weights)
    assert "recipe" not in read_card(weights)
    ship(best, weights, {"file": "old.pt", "sha256": "stale"})  # e.g. a card copied from other weights
    assert read_card(weights)["file"] == "detector.pt" and read_card(weights)["sha256"] == sha256(weights)


def test_backend_file_is_the_pt_or_the_export_written_beside_it(tmp_path):
    """pytorch: the .pt itself; onnx: ``name.onnx``; openvino and openvino-int8: the folders Ultralytics writes
    (``name_openvino_model``, ``name_int8_openvino_model``). A missing one says how to make it; an unknown
    backend is a ValueError naming the known ones, which are pytorch and the export formats."""
    weights = tmp_path / "classifier.pt"
    expected = {
        "pytorch": weights,
        "onnx": tmp_path / "classifier.onnx",
        "openvino": tmp_path / "classifier_openvino_model",
        "openvino-int8": tmp_path / "classifier_int8_openvino_model",
    }
    assert set(expected) == set(BACKENDS) and [f.value for f in ModelFormat] == list(BACKENDS[1:])
    for backend in expected:
        with pytest.raises(FileNotFoundError, match="classifier weights not found") as missing:
            backend_file(weights, backend)
        assert ("leukoscan export --format" in str(missing.value)) == (backend != "pytorch")
    weights.write_bytes(b"w")
    expected["onnx"].write_bytes(b"onnx")
    expected["openvino"].mkdir()
    expected["openvino-int8"].mkdir()
    for backend in BACKENDS[1:]:  # as `leukoscan export` records what it made them from
        record_export(weights, backend)
    assert {b: backend_file(weights, b) for b in expected} == expected
    assert backend_file(str(weights), "onnx") == expected["onnx"]
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'.*pytorch, onnx, openvino, openvino-int8"):
        backend_file(weights, "tensorrt")


def test_load_model_refuses_missing_foreign_and_wrong_task_weights_in_one_line(tmp_path):
    """A missing file, a file that is not a model and a model for the other task are each a ``WeightsError``
    (a ValueError, as the CLI's user errors are) of one line; the shipped detector loads as a detect model."""
    assert issubclass(WeightsError, ValueError)
    with pytest.raises(WeightsError, match="weights not found"):
        load_model(tmp_path / "missing.pt", "detect")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="cannot load .*junk.pt as a detect model: ") as foreign:
        load_model(junk, "detect")
    assert "\n" not in str(foreign.value) and str(foreign.value).count(str(junk)) == 1  # the path said once
    (tmp_path / "notes.txt").write_text("not weights")
    (tmp_path / "folder").mkdir()
    (tmp_path / "junk.onnx").write_bytes(
        b"not a model"
    )  # each of these Ultralytics takes, and fails on the first field
    for path in (tmp_path / "notes.txt", tmp_path / "folder"):
        with pytest.raises(WeightsError, match="is not a model \\(a .pt file, or an export"):
            load_model(path, "classify")
    with pytest.raises(WeightsError, match="cannot load .*junk.onnx as a classify model: "):
        load_model(tmp_path / "junk.onnx", "classify")
    with pytest.raises(WeightsError, match="is a classify model, not a detect model"):
        load_model(CLASSIFIER_WEIGHTS, "detect")
    assert load_model(DETECTOR_WEIGHTS, "detect").task == "detect"
