"""The model bundle (leukoscan/models.py): ``Unloaded`` answers what is known without loading, ``Models.load``
(lazily: nothing loaded until asked) reads the shipped weights and their cards by default, ``description`` hashes
the files the models run from, and ``ModelFiles`` carries a run's models to another process and back."""

import dataclasses
import json
import pickle
import shutil
from types import SimpleNamespace

import pytest

import leukoscan
from leukoscan.cards import read_card, sha256
from leukoscan.config import CLASSIFIER_WEIGHTS, DETECTOR_WEIGHTS, SETTINGS, SUBTYPE_WEIGHTS
from leukoscan.models import ModelFiles, Models, Unloaded


def test_unloaded_answers_known_facts_at_once_and_loads_the_model_once_for_anything_else():
    """The facts given are answered without loading (even where the model would say otherwise); the first
    question beyond them loads the model, once, and it answers that and every later one."""
    loads = []

    def load():
        loads.append(1)
        return SimpleNamespace(imgsz=64, weights="the model's own", predict=lambda x: x * 2)

    model = Unloaded(load, weights="w.pt", device="cpu")
    assert (model.weights, model.device) == ("w.pt", "cpu") and loads == []
    assert model.imgsz == 64 and loads == [1]
    assert model.predict(21) == 42 and model.weights == "w.pt" and loads == [1]
    with pytest.raises(AttributeError):
        model.not_there
    assert loads == [1]


def test_an_unloaded_model_copies_without_loading():
    """A lazy model copied (``copy``, ``deepcopy``) stays unloaded with the same facts (its ``__getattr__`` is
    not asked for the model before the copy has one)."""
    import copy

    loads = []
    model = Unloaded(lambda: loads.append(1) or SimpleNamespace(imgsz=64), weights="w.pt")
    twins = copy.copy(model), copy.deepcopy(model)
    assert [twin.weights for twin in twins] == ["w.pt", "w.pt"] and loads == []
    assert [twin.imgsz for twin in twins] == [64, 64] and loads == [1, 1]  # each loads its own when asked


def test_lazy_load_uses_the_shipped_weights_and_cards_and_loads_a_model_only_when_asked():
    """``Models.load(lazy=True)`` by default: the shipped weights, on the device asked; the temperature and stain
    reference from each card; ``description`` needs no model (it hashes the files: the cards' hashes); a model
    is loaded when something asks it for more, and only that one."""
    models = Models.load(device="cpu", lazy=True)
    assert models.files == ModelFiles(device="cpu")
    bundle = {"detector": models.detector, "classifier": models.classifier, "subtype": models.subtype}
    for model, weights in zip(bundle.values(), (DETECTOR_WEIGHTS, CLASSIFIER_WEIGHTS, SUBTYPE_WEIGHTS)):
        assert isinstance(model, Unloaded) and model.weights == weights
        assert (model.device, model.backend) == ("cpu", "pytorch")
        card = read_card(weights)
        assert model.temperature == float(card.get("temperature", 1.0))
        assert model.stain_reference == card.get("stain_reference")
    assert models.classifier.temperature != 1.0 and models.classifier.stain_reference  # the shipped cards have them

    described = models.description
    assert described["version"] == leukoscan.__version__
    assert (described["device"], described["backend"]) == ("cpu", "pytorch")
    for name, model in bundle.items():
        entry = described["models"][name]
        assert entry["file"] == str(model.weights)
        assert entry["sha256"] == sha256(model.weights) == read_card(model.weights)["sha256"]
    assert described["models"]["classifier"]["temperature"] == models.classifier.temperature
    card = read_card(CLASSIFIER_WEIGHTS)  # how the classifier's probabilities are made: as its card says
    scores = SETTINGS.scores  # the shipped card's are the defaults
    assert described["models"]["classifier"]["test_time_views"] == card["test_time_views"] == scores.test_time_views
    assert (
        described["models"]["classifier"]["prior_correction"]
        == card["prior_correction"]["strength"]
        == scores.prior_correction
    )
    assert all(m._model is None for m in bundle.values())  # (as tests/test_slide.py reads it) nothing loaded yet

    assert models.classifier.imgsz == read_card(CLASSIFIER_WEIGHTS)["input_px"]  # a question for the model itself
    assert models.classifier._model is not None
    assert models.detector._model is None and models.subtype._model is None


def test_description_hashes_the_given_files_once_and_classifiers_need_their_own_cards(tmp_path):
    """Weights elsewhere: the description names and hashes those files (once: it is cached for the run's
    verdicts); the card beside each classifier sets its temperature; a classifier without a card, or with another
    model's card, is refused (it would run with other scores without a word)."""
    from leukoscan.cards import WeightsError

    files = {}
    for src in (DETECTOR_WEIGHTS, CLASSIFIER_WEIGHTS, SUBTYPE_WEIGHTS):
        files[src.stem] = shutil.copyfile(src, tmp_path / f"my_{src.name}")
    load = lambda: Models.load(files["detector"], files["classifier"], files["subtype"], device="cpu", lazy=True)  # noqa: E731
    with pytest.raises(WeightsError, match="my_classifier.pt has no card"):
        load()
    (tmp_path / "my_classifier.json").write_text(json.dumps({"temperature": 2.5}))  # a card without a hash
    (tmp_path / "my_subtype.json").write_text(CLASSIFIER_WEIGHTS.with_suffix(".json").read_text())
    with pytest.raises(WeightsError, match="my_subtype.json is the card of other weights"):
        load()
    shutil.copyfile(SUBTYPE_WEIGHTS.with_suffix(".json"), tmp_path / "my_subtype.json")
    models = load()
    assert (models.classifier.temperature, models.classifier.stain_reference) == (2.5, None)
    assert models.subtype.temperature == read_card(SUBTYPE_WEIGHTS)["temperature"]
    described = models.description
    assert {k: v["file"] for k, v in described["models"].items()} == {k: str(v) for k, v in files.items()}
    assert described["models"]["subtype"]["sha256"] == sha256(SUBTYPE_WEIGHTS)  # same bytes, same hash
    temperatures = {k: v.get("temperature") for k, v in described["models"].items()}
    assert temperatures == {"detector": None, "classifier": 2.5, "subtype": models.subtype.temperature}
    files["detector"].write_bytes(b"changed after the run started")
    assert models.description is described and described["models"]["detector"]["sha256"] == sha256(DETECTOR_WEIGHTS)
    (tmp_path / "my_classifier.json").write_text("[1, 2]")
    with pytest.raises(WeightsError, match="my_classifier.json is not a model card"):
        load()


def test_model_files_default_to_the_shipped_weights_and_round_trip_to_a_worker():
    """``ModelFiles``: the shipped weights, auto device and pytorch by default; frozen; it pickles (what a spawned
    worker is given) and ``Models.load`` from its fields gives a bundle with the same files."""
    default = ModelFiles()
    assert (default.detector, default.classifier, default.subtype) == (
        DETECTOR_WEIGHTS,
        CLASSIFIER_WEIGHTS,
        SUBTYPE_WEIGHTS,
    )
    assert (default.device, default.backend) == ("auto", "pytorch")
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.device = "cpu"
    files = ModelFiles(device="cpu")
    sent = pickle.loads(pickle.dumps(files))
    assert sent == files and hash(sent) == hash(files)
    again = Models.load(sent.detector, sent.classifier, sent.subtype, sent.device, sent.backend, lazy=True)
    assert again.files == files and again.detector.weights == files.detector


def test_lazy_load_still_refuses_a_backend_whose_export_is_missing_at_once(tmp_path):
    """Lazy or not, a backend without its export beside the weights (or an unknown backend) fails when the
    bundle is made, not halfway through a run."""
    weights = shutil.copyfile(DETECTOR_WEIGHTS, tmp_path / "detector.pt")
    with pytest.raises(FileNotFoundError, match="leukoscan export --format onnx"):
        Models.load(weights, CLASSIFIER_WEIGHTS, SUBTYPE_WEIGHTS, "cpu", "onnx", lazy=True)
    with pytest.raises(ValueError, match="unknown backend"):
        Models.load(weights, CLASSIFIER_WEIGHTS, SUBTYPE_WEIGHTS, "cpu", "tensorrt", lazy=True)
