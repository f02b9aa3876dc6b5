"""Batched, calibrated classification of cell crops."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from leukoscan.cards import backend_file, card_geometry, load_model, read_card
from leukoscan.cells import CELL_TYPES, CLASSES, SUBTYPES, blasts, type_of, with_probs, with_subtypes
from leukoscan.classify.augment import as_input
from leukoscan.classify.calibrate import apply_temperature, correct_prior, share_others
from leukoscan.classify.stain import SlideColour, reinhard
from leukoscan.config import CLASSIFIER_WEIGHTS, SETTINGS, SUBTYPE_WEIGHTS, TEST_TIME_VIEWS
from leukoscan.crops import crop_cells
from leukoscan.images import to_bgr
from leukoscan.runtime import resolve_device


def dihedral_views(crops: np.ndarray, views: int) -> np.ndarray:
    """The first ``views`` (1, 2, 4 or 8) of each crop's rotations and mirror images, view by view
    (``views`` x N crops): as it is, mirrored, turned 180 degrees, that mirrored, then the quarter turns. A
    cell has no up or left, so a model should call each view alike; averaged over all 8, it does exactly."""
    if views not in TEST_TIME_VIEWS:
        raise ValueError(f"test-time views must be 1, 2, 4 or 8 (got {views})")
    turns = [np.rot90(crops, k, axes=(1, 2)) for k in (0, 2, 1, 3)[: max(1, views // 2)]]
    out = [view for turned in turns for view in (turned, turned[:, :, ::-1])][:views]
    return np.ascontiguousarray(np.concatenate(out))


@dataclass(frozen=True)
class CardScores:
    """How a classifier's probabilities are made, as its card says; a key the card lacks (one of an earlier
    version) keeps the default: temperature 1, one view, no class-prior correction, the types other than blast
    corrected as the rest (``others_strength`` None, as before 2026-12-06)."""

    temperature: float = 1.0
    views: int = 1  # test-time views (dihedral_views)
    prior_strength: float = 0.0  # of the class-prior correction (calibrate.correct_prior)
    class_prior: dict[str, float] = field(default_factory=dict)  # each class's share of the training crops
    others_strength: float | None = None  # the correction the types other than blast are shared out with
    stain_reference: dict | None = None  # the training crops' colour (stain_z)

    @classmethod
    def of(cls, card: dict) -> CardScores:
        correction = card.get("prior_correction") or {}
        others = correction.get("others_strength")
        return cls(
            temperature=float(card.get("temperature", cls.temperature)),
            views=int(card.get("test_time_views", cls.views)),
            prior_strength=float(correction.get("strength", cls.prior_strength)),
            class_prior=correction.get("class_prior", {}),
            others_strength=None if others is None else float(others),
            stain_reference=card.get("stain_reference"),
        )


class Classifier:
    """A calibrated Ultralytics classification model over ``classes`` (its probabilities in that order)."""

    classes: tuple[str, ...] = CLASSES
    default_weights: Path = SUBTYPE_WEIGHTS

    def __init__(
        self,
        weights: Path | None = None,
        device: str = "auto",
        batch: int = SETTINGS.run.classifier_batch,
        backend: str = "pytorch",
        strict: bool = True,
    ):
        """The model in ``weights`` (default: the class's ``default_weights``), set up from its card."""
        weights = weights or self.default_weights
        card = read_card(weights)
        weights = backend_file(weights, backend)
        self.model = load_model(weights, "classify")
        self.weights = Path(weights)
        self.device = resolve_device(device)
        # one input shape for a backend that compiles again for each new one (bench/shape_switch.py)
        self.fixed_batch = SETTINGS.run.int8_classifier_batch if backend == "openvino-int8" else None
        self.batch = self.fixed_batch or batch
        scores = CardScores.of(card)
        self.stain_reference = scores.stain_reference
        self.temperature = scores.temperature
        self.margin = float(card.get("geometry", {}).get("crop_margin", SETTINGS.geometry.crop_margin))
        # the model's input size: an exported model's is on its card (Ultralytics rounds a requested size up
        # to a multiple of 32, so the recipe's size may be smaller)
        self.imgsz = int(
            self.model.overrides.get("imgsz")
            or card.get("input_px")
            or card.get("recipe", {}).get("imgsz")
            or SETTINGS.geometry.crop_px
        )
        names = self.model.names
        # model class -> class: its parts (blast~munich, blast~taleqani) add up; a model trained without a class
        # (not strict: a cleaning model that saw no blasts) gives it probability 0
        self.members = np.array([[type_of(names[i]) == key for key in self.classes] for i in sorted(names)], np.float32)
        missing = [key for key, taught in zip(self.classes, self.members.any(axis=0)) if not taught]
        if missing and strict:
            raise ValueError(f"classifier {weights} lacks classes {sorted(missing)}")
        self.configure_scores(scores)
        self.configure(card)

    def configure_scores(self, scores: CardScores) -> None:
        """How its probabilities are made, as its card says (``CardScores.of``; ``train.scores_card`` writes
        it): the number of test-time views, and the class prior its outputs are divided by."""
        self.views = scores.views
        self.prior_strength = scores.prior_strength
        self.others_strength = scores.others_strength
        # a class it was not taught: 0 anyway
        self.prior = np.array([scores.class_prior.get(key, 1.0) for key in self.classes])
        if "blast" not in self.classes:  # (the subtype model: one correction for all)
            self.others_strength = None

    def configure(self, card: dict) -> None:
        """What a subclass reads of its model's card beyond what every classifier reads (nothing here)."""

    def view_probs(self, crops: np.ndarray) -> np.ndarray:
        """The softmax (N x classes) for RGB crops, averaged over their ``views`` test-time views."""
        if not len(crops):
            return np.zeros((0, len(self.classes)), np.float32)
        views = self.softmax(dihedral_views(np.asarray(crops), self.views))
        return views.reshape(self.views, len(crops), -1).mean(axis=0)

    def raw_probs(self, crops: np.ndarray) -> np.ndarray:
        """Uncalibrated probabilities (N x classes) for RGB crops: ``view_probs`` divided by the class prior
        (``prior_strength``, every type alike; then renormalised): the scores P(blast) comes out of, and the
        temperature is fitted on. The temperature (``probs``) comes last, so that calibration never changes
        which class is on top."""
        return correct_prior(self.view_probs(crops), self.prior, self.prior_strength)

    def softmax(self, crops: np.ndarray) -> np.ndarray:
        """The model's softmax (N x classes, ``classes`` order) for RGB crops, in batches of ``batch``."""
        out = np.zeros((len(crops), len(self.classes)), dtype=np.float32)
        for start, chunk in self.batches(crops):
            n, chunk = len(chunk), self.padded(chunk)
            results = self.model.predict(chunk, imgsz=self.imgsz, device=self.device, verbose=False, batch=len(chunk))
            probs = np.stack([r.probs.data.cpu().numpy() for r in results[:n]])
            out[start : start + n] = probs @ self.members
        return out

    def padded(self, chunk):
        """``chunk`` (a tensor or a list of arrays) filled up to ``fixed_batch`` with copies of its first crop, for
        a model that takes one batch shape; as it is for any other."""
        missing = (self.fixed_batch or 0) - len(chunk)
        if missing <= 0:
            return chunk
        if isinstance(chunk, list):
            return chunk + [chunk[0]] * missing
        import torch

        return torch.cat([chunk, chunk[:1].expand(missing, *chunk.shape[1:])])

    def batches(self, crops: np.ndarray):
        """(start, model input) per batch of ``batch`` RGB crops. Square crops (the cell-type model's 48 px:
        upsampled bilinearly, as Ultralytics' PIL resize, within 0.02 measured on 300 crops) go in as one RGB
        0-1 tensor of the input size, which is exactly what Ultralytics' resize / centre-crop / to-tensor
        makes of them, without its per-crop PIL round trip; others as BGR arrays, resized by Ultralytics."""
        import torch

        for start in range(0, len(crops), self.batch):
            chunk = np.asarray(crops[start : start + self.batch])
            if chunk.shape[1] == chunk.shape[2] < self.imgsz:
                chunk = np.stack(
                    [cv2.resize(c, (self.imgsz, self.imgsz), interpolation=cv2.INTER_LINEAR) for c in chunk]
                )
            if chunk.shape[1:3] == (self.imgsz, self.imgsz):
                yield start, torch.from_numpy(chunk).permute(0, 3, 1, 2).float().div_(255)
            else:
                yield start, [to_bgr(c) for c in chunk]

    def probs(self, crops: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (N x classes) of RGB crops: ``calibrated`` of their ``view_probs``."""
        if not len(crops):
            return np.zeros((0, len(self.classes)), np.float32)
        return self.calibrated(self.view_probs(crops))

    def calibrated(self, plain: np.ndarray) -> np.ndarray:
        """Calibrated probabilities from ``view_probs``' (``plain``): ``raw_probs``' correction at the card's
        temperature; with ``others_strength``, P(blast) as that, the other types sharing the rest as they come out
        of the weaker correction (at the same temperature)."""
        probs = apply_temperature(correct_prior(plain, self.prior, self.prior_strength), self.temperature)
        if self.others_strength is None:
            return probs
        others = apply_temperature(correct_prior(plain, self.prior, self.others_strength), self.temperature)
        return share_others(probs, others, self.classes.index("blast"))

    def crops(self, rgb: np.ndarray, det: sv.Detections) -> np.ndarray:
        """The crops this model sees for ``det`` (the shared crop geometry, with the margin it was trained on)."""
        return crop_cells(rgb, det.xyxy, size=self.imgsz, margin=self.margin)


class SubtypeClassifier(Classifier):
    """The B-ALL subtype of blasts: the Taleqani-only 4-class model (Benign, Early Pre-B, Pre-B, Pro-B) on
    box-relative crops, its three malignant probabilities renormalised (P(subtype | blast))."""

    def subtypes(self, crops: np.ndarray) -> np.ndarray:
        probs = self.probs(crops)[:, 1:].astype(np.float64)
        return (probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)).astype(np.float32)

    def subtype_fields(self, fields: list[np.ndarray], dets: list[sv.Detections]) -> list[sv.Detections]:
        """Subtype the blasts of classified fields (``with_probs`` first) in one batch, in place."""
        which = [blasts(det) for det in dets]
        crops = [self.crops(rgb, det[w]) for rgb, det, w in zip(fields, dets, which)]
        probs = self.subtypes(np.concatenate(crops)) if sum(map(len, crops)) else np.zeros((0, len(SUBTYPES)))
        return [with_subtypes(det, p) for det, p in zip(dets, np.split(probs, np.cumsum([len(w) for w in which])[:-1]))]

    def __call__(self, rgb: np.ndarray, det: sv.Detections) -> sv.Detections:
        """Subtype the blasts of one classified field, in place."""
        return self.subtype_fields([rgb], [det])[0]


class CellClassifier(Classifier):
    """The cross-lab cell-type classifier: ``CELL_TYPES`` from crops of one physical window
    (``window_cells`` slide cell diameters, from its card) around each cell."""

    classes = CELL_TYPES
    default_weights = CLASSIFIER_WEIGHTS

    def configure(self, card: dict) -> None:
        """The crop window and input colour it was trained with, from its card."""
        geometry = card_geometry(card)
        self.window_cells, self.crop_px = geometry.window_cells, geometry.cell_crop_px
        # trained on crops whose colour was normalised slide by slide: its input is normalised the same way
        self.stain_normalisation: dict | None = card.get("stain_normalisation")
        self.colour: str = card.get("input_colour", "rgb")  # trained on gray crops: sees gray crops

    def view_probs(self, crops: np.ndarray) -> np.ndarray:
        return super().view_probs(as_input(crops, self.colour))

    def normalise(self, crops: np.ndarray, colour: SlideColour | None) -> np.ndarray:
        """Crops of one slide mapped onto the colour this model was trained on (Reinhard in CIE Lab, from the
        slide's ``colour``); unchanged for a model trained without, or a slide of no colour found (None)."""
        if not self.stain_normalisation or colour is None or not len(crops):
            return crops
        reference = (self.stain_normalisation["mean"], self.stain_normalisation["sd"])
        return reinhard(crops, (colour.mean, colour.sd), reference, self.stain_normalisation.get("channels", "Lab"))

    def crops(self, rgb: np.ndarray, det: sv.Detections, cell_px: float) -> np.ndarray:
        """The crops this model sees for ``det`` in a field whose white cells are ``cell_px`` wide: cut at
        the crop size it was trained on (``crop_px``), then resized to its input by Ultralytics, as in training."""
        return crop_cells(rgb, det.xyxy, size=self.crop_px, side=self.window_cells * cell_px)

    def __call__(
        self, rgb: np.ndarray, det: sv.Detections, cell_px: float, colour: SlideColour | None = None
    ) -> sv.Detections:
        """Classify the cells of one field, in place: ``class_id`` and ``data[PROBS]`` (``colour``: its slide's,
        for a model trained on normalised crops)."""
        return with_probs(det, self.probs(self.normalise(self.crops(rgb, det, cell_px), colour)))
