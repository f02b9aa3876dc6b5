"""The model bundle of a run: the detector, the cell-type classifier and the blast subtype model, loaded
together (or lazily: a resume with nothing left to screen loads none) and described once for the verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import leukoscan
from leukoscan.config import CLASSIFIER_WEIGHTS, DETECTOR_WEIGHTS, SUBTYPE_WEIGHTS

if TYPE_CHECKING:
    from leukoscan.classify.predict import CellClassifier, SubtypeClassifier
    from leukoscan.detect.predict import Detector


class Unloaded:
    """A model not loaded yet: the facts given (``weights``, ``device``, ...) are known at once, and asking
    for anything else loads it (``load()``) and answers from the loaded model."""

    def __init__(self, load: Callable[[], object], **known):
        self.__dict__.update(known, _load=load, _model=None)

    def __getattr__(self, name: str):  # called only for what is not known
        if name.startswith("__") or "_load" not in self.__dict__:  # (copy and pickle ask before __init__ ran)
            raise AttributeError(name)
        if self._model is None:
            self._model = self._load()
        return getattr(self._model, name)


@dataclass(frozen=True)
class ModelFiles:
    """Where a run's models come from and where they run: what a worker process is given to load its own."""

    detector: Path = DETECTOR_WEIGHTS
    classifier: Path = CLASSIFIER_WEIGHTS
    subtype: Path = SUBTYPE_WEIGHTS
    device: str = "auto"
    backend: str = "pytorch"


@dataclass
class Models:
    """The three models a run needs, which every stage of a slide's screening is handed."""

    detector: Detector  # white cells, one box each
    classifier: CellClassifier  # cell types
    subtype: SubtypeClassifier  # blast subtype
    files: ModelFiles = field(default_factory=ModelFiles)  # what they were loaded from

    @classmethod
    def load(
        cls,
        detector_weights: Path = DETECTOR_WEIGHTS,
        classifier_weights: Path = CLASSIFIER_WEIGHTS,
        subtype_weights: Path = SUBTYPE_WEIGHTS,
        device: str = "auto",
        backend: str = "pytorch",
        lazy: bool = False,
    ) -> Models:
        """The three models on ``device``. ``lazy``: each is loaded only when something asks it for more than
        its weight file, device, backend, temperature, stain reference and scores (read from the files and cards):
        a resume with nothing left to screen loads no model."""
        from leukoscan.cards import backend_file, read_card, scoring_card
        from leukoscan.classify.predict import CardScores, CellClassifier, SubtypeClassifier
        from leukoscan.detect.predict import Detector
        from leukoscan.runtime import resolve_device

        for weights in (classifier_weights, subtype_weights):  # their cards make their scores: refused without
            scoring_card(weights)

        def unloaded(kind: type, weights: Path) -> Unloaded:
            scores = CardScores.of(read_card(weights))
            return Unloaded(
                partial(kind, weights, device, backend=backend),
                weights=Path(backend_file(weights, backend)),
                device=resolve_device(device),
                backend=backend,
                temperature=scores.temperature,
                stain_reference=scores.stain_reference,
                views=scores.views,
                prior_strength=scores.prior_strength,
                others_strength=scores.others_strength,
            )

        models = (
            (Detector, detector_weights),
            (CellClassifier, classifier_weights),
            (SubtypeClassifier, subtype_weights),
        )
        files = ModelFiles(detector_weights, classifier_weights, subtype_weights, device, backend)
        loaded = (
            unloaded(kind, weights) if lazy else kind(weights, device, backend=backend) for kind, weights in models
        )
        return cls(*loaded, files=files)

    @classmethod
    def from_files(cls, files: ModelFiles, lazy: bool = False) -> Models:
        """``load`` of what ``files`` names (a run's models, or a worker's own copy of them)."""
        return cls.load(files.detector, files.classifier, files.subtype, files.device, files.backend, lazy=lazy)

    @cached_property
    def description(self) -> dict:
        """What screened a slide (version, device, backend, weight files and their hashes), hashed once."""
        from leukoscan.cards import sha256

        classifier = sha256(self.classifier.weights)
        # whose answers these are, what a lab reference fits: the .pt's (onnx and openvino exports give them), or
        # the file run itself (the .pt, or the INT8 export: quantised, other answers)
        answers = self.files.classifier if self.detector.backend in ("onnx", "openvino") else None
        return {
            "version": leukoscan.__version__,
            "device": self.detector.device,
            "backend": self.detector.backend,
            "models": {
                "detector": {"file": str(self.detector.weights), "sha256": sha256(self.detector.weights)},
                "classifier": {
                    "file": str(self.classifier.weights),
                    "sha256": classifier,
                    "weights_sha256": sha256(answers) if answers else classifier,
                    "temperature": self.classifier.temperature,
                    "test_time_views": self.classifier.views,  # how its probabilities were made (its card)
                    "prior_correction": self.classifier.prior_strength,
                    # (only when the card says: a card of before keeps its runs' screening key)
                    **(
                        {"others_prior_correction": self.classifier.others_strength}
                        if self.classifier.others_strength is not None
                        else {}
                    ),
                },
                "subtype": {
                    "file": str(self.subtype.weights),
                    "sha256": sha256(self.subtype.weights),
                    "temperature": self.subtype.temperature,
                },
            },
        }
