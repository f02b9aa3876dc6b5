"""Every tunable default in one place. The CLI shows these values in ``--help``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from leukoscan.runtime import REPO_ROOT, package_path

WEIGHTS_DIR = Path(os.environ.get("LEUKOSCAN_WEIGHTS", package_path("weights")))  # the repository's, or the wheel's
DATA_ROOT = Path(os.environ.get("LEUKOSCAN_DATA", REPO_ROOT.parent / "shared" / "datasets"))
BUILD_DIR = Path(os.environ.get("LEUKOSCAN_BUILD", REPO_ROOT / "data"))
RUNS = REPO_ROOT / "runs"  # training runs of every command that trains (ignored by git)
DETECTOR_WEIGHTS = WEIGHTS_DIR / "detector.pt"
CLASSIFIER_WEIGHTS = WEIGHTS_DIR / "classifier.pt"  # cell types (cross-lab)
SUBTYPE_WEIGHTS = WEIGHTS_DIR / "subtype.pt"  # B-ALL subtype of blasts (Taleqani only)
DEMO_SLIDE = package_path("datasets/samples")  # the bundled lab photographs (`leukoscan run` with no slide)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")


class Export(str, Enum):
    """Cell exports for other tools (``run --export``; written by ``leukoscan/exports.py``)."""

    geojson = "geojson"  # QuPath GeoJSON, one file per field
    coco = "coco"  # COCO predictions, one file per slide


class Engine(str, Enum):
    """Where ``run`` screens the fields (``--engine``)."""

    local = "local"  # this machine: leukoscan/engine.py (``--workers`` processes)
    ray = "ray"  # a Ray cluster, local or joined (``--ray-address``): leukoscan/ray_engine.py, the ``ray`` extra


class Colour(str, Enum):
    """What colour a cell-type model sees (``classify train-cells --colour``; its card's ``input_colour``)."""

    rgb = "rgb"
    gray = "gray"  # luminance only: blind to the stain's colour


Z95 = 1.959964  # the standard normal quantile of a two-sided 95 % interval
MAX_MEGAPIXELS = 80.0  # larger images are refused before decoding (~ a 10k x 8k photograph; `--max-megapixels`)


@dataclass(frozen=True)
class Geometry:
    """Cell scale: detector input scale and classifier crop geometry (shared by training and inference)."""

    train_cell_px: float = 38.0  # white-cell diameter at the detector input (27 px Taleqani cells, 224 -> 320)
    rbc_um: float = 7.5  # red-cell diameter, the scale reference present in every smear
    wbc_um: float = 12.0  # typical white-cell diameter
    crop_margin: float = 0.25  # context added on each side of a cell box, as a fraction of its size
    crop_px: int = 64  # subtype classifier input size (box-relative crops)
    window_cells: float = 1.6  # cell-type crops: a fixed physical window, this many slide cell diameters wide
    cell_crop_px: int = 48  # cell-type classifier input size (Taleqani's ~30 px cells reach it: 1.6 x 30 = 48)
    min_cell_px: float = 16.0  # smallest white cell the scale search considers (fewer pixels: too few to classify)
    max_cell_px: float = 2000.0  # largest white cell `--cell-size` accepts (a phone camera on a 100x objective: ~600)
    gallery_px: int = 96  # the review page's cell pictures (box-relative, crop_margin x 2 around the cell)
    gallery_columns: int = 16  # cell pictures per row of a field's gallery sheet (gallery/<field>.jpg)
    uncertain_px: int = 128  # uncertain/ cell pictures (box-relative, uncertain_margin around the cell)
    uncertain_margin: float = 0.5

    def crop_record(self) -> dict:
        """How cell-type crops are cut, as a built dataset's summary.json and a model's card record it."""
        return {"window_cells": self.window_cells, "crop_px": self.cell_crop_px}

    def with_crop_record(self, record: dict) -> Geometry:
        """This geometry cutting crops as ``record`` (``crop_record``) says; a key it lacks keeps this one's."""
        return replace(
            self,
            window_cells=float(record.get("window_cells", self.window_cells)),
            cell_crop_px=int(record.get("crop_px", self.cell_crop_px)),
        )


@dataclass(frozen=True)
class Detection:
    """The white-cell detector at run time (``detect/predict.py``, ``detect/scale.py``)."""

    conf: float = 0.25  # lowest box confidence kept
    iou: float = 0.5  # Ultralytics' NMS
    merge_ios: float = 0.6  # two boxes overlapping by this much of the smaller are one cell (kept: the more confident)
    # a cell cut by a tile's edge and the same cell whole in the next tile, merged by overlap of the smaller box
    # (the more confident kept): at merge_ios the dense demo photograph keeps 2 more false boxes, same recall
    tile_merge_ios: float = 0.5
    tile: int = 320  # detector input side; a scaled field over 1.5 x this is cut into tiles of it
    tile_overlap: int = 96  # pixels two neighbouring tiles share
    max_scaled_side: int = 4096  # a field scaled to the detector's cell size is capped at this side
    scale_search_side: int = 1280  # the scale search looks at fields shrunk to at most this side
    red_cell_side: int = 1024  # the red-cell size estimate looks at fields shrunk to at most this side
    tile_batch: int = 8  # tiles of one large field per model pass
    max_det: int = 1000  # most boxes one model pass may return (a dense field of a leukemic slide holds ~150)
    scale_fields: int = 2  # a slide's cell size is estimated on its first this-many readable fields of each size
    stain_cells: int = 200  # a stain-normalising classifier's slide colour: from this many cells' crops,
    stain_fields: int = 8  # or this many fields looked at, whichever comes first


@dataclass(frozen=True)
class Run:
    """How `leukoscan run` feeds the models (``--batch``, ``--batch-megapixels``, ``--workers``)."""

    batch: int = 16  # fields per batch through the models
    batch_megapixels: float = 100.0  # a batch also stops at this many megapixels (bounds memory on large photos)
    workers: int = 1  # slides screened in parallel
    classifier_batch: int = 256  # cell crops per classifier pass
    # an OpenVINO INT8 model compiles itself again for every input shape new to it, and keeps only the last
    # (about 160 ms a switch where a pass takes 6: bench/shape_switch.py): its crops go in batches of exactly this
    # many, the last one padded
    int8_classifier_batch: int = 64


TEST_TIME_VIEWS = (1, 2, 4, 8)  # the test-time views a cell-type model can ask for (classify.predict.dihedral_views)


@dataclass(frozen=True)
class CellScores:
    """How the cell-type model's probabilities are made from its outputs: the defaults a newly trained (or
    recalibrated, ``leukoscan classify calibrate``) model's card gets; a model is then run as its card says.
    Measured on the leave-one-lab-out models in bench/results/crosslab_scores.md (``bench/eval_scores.py``)."""

    # each crop's 1, 2, 4 or 8 rotations and mirror images, their probabilities averaged: 2 (the crop and its
    # mirror image); 4 and 8 do better still on unseen labs but cost the classifier 4 or 8 passes per cell, over
    # the speed budget on 224 px fields (README, "Scores"; `leukoscan classify calibrate` to choose them)
    test_time_views: int = 2
    # P(type) divided by (its share of the training crops) ** this, then renormalised (0: off). The training
    # crops are 30-40 % blasts; a cell unlike any the model was taught falls on the class it saw most, and a
    # laboratory's normal slide is nothing like that mix: 1 scores as if every type were equally likely; 2 (the
    # default since 2026-12-05) leans further away from the training mix: it is what meets the owner's <= 5 %
    # normal cells called blast on labs never seen, held out in both training runs (README, "Scores")
    prior_correction: float = 2.0
    # the types other than blast share what P(blast) leaves in the proportions of this weaker correction (0: the
    # model's own), so that the strength-2 correction, there for the blast call, does not also pull a normal
    # cell towards the rare types (eosinophil, basophil): measured by bench/eval_normal_prior.py (README, "Scores")
    others_prior_correction: float = 0.0


@dataclass(frozen=True)
class Segmentation:
    """Classical colour segmentation of stained white cells (dataset labels and pre-labelling)."""

    min_contrast: float = 8.0  # Lab a* above the field's median that counts as stained
    min_area_frac: float = 0.2  # smallest component, as a fraction of the expected cell area
    max_area_frac: float = 4.0  # largest single cell, as a fraction of the expected cell area
    min_solidity: float = 0.75
    max_b: float = -12.0  # white cells are violet (b* < -20); pink red cells and red scale-bar labels are not


@dataclass(frozen=True)
class FieldQuality:
    """When a field is not a usable smear (``leukoscan/quality.py``): its cells do not count. Calibrated on
    Taleqani and TXL-PBC fields and the demo photographs (every one usable) against noise, text, blank,
    over-exposed, dark, blurred and grayscale fields (each caught): see tests/test_quality.py."""

    lit_grey: int = 25  # pixels darker than this are outside the field of view (an eyepiece photo's black ring)
    min_lit_fraction: float = 0.05  # less of the image lit: too dark to screen
    min_contrast: float = 5.0  # grey-level SD of the lit area below this: a blank field (real fields >= 15)
    max_saturated: float = 0.6  # more of the lit area at >= 250 in every channel: over-exposed (real <= 0.4)
    max_noise_ratio: float = 5.0  # pixel-level Laplacian variance / grey variance above this: noise (real <= 1.3)
    min_focus: float = 8.0  # Laplacian variance at the detector's cell scale below this: out of focus (real >= 19)
    min_chroma: float = 4.0  # 90th percentile of Lab chroma below this: no stain colour (real >= 8.8)
    max_cell_cover: float = (
        0.9  # white cells (discs of cell_px) covering more of the lit area: implausible (packing bound)
    )
    sample_side: int = 512  # the exposure, colour and noise checks look at a copy this large at most
    # each field's look: its gray levels on a look_side square grid (`quality.field_look`, in the slide's journal)
    look_side: int = 64
    # the same picture given twice (a copy, a re-save in another format, JPEG included, a second capture of the field
    # unmoved or drifted a little, a smaller copy): on its look averaged to a same_side grid, `quality.repeats`
    # (`python bench/duplicate_fields.py`)
    same_side: int = 32  # (a multiple of 4: quality.repeats compares 4 x 4 block means first)
    same_max_grey_diff: float = 3.0  # mean absolute gray-level difference on the grid at most
    same_min_texture_corr: float = 0.98  # and the correlation of their detail (the grid less its blur) at least
    same_max_shape_diff: float = 0.02  # of fields whose width/height ratios differ by at most 2 % (any size)
    same_max_shift: float = 1.0  # grid points either way a field may have moved between two captures (1/32: ~3 %)
    same_smooth: float = 1.0  # grid points both grids are blurred by first (a sub-point shift's interpolation blurs)
    same_min_unmoved_corr: float = 0.5  # a sieve: the detail's correlation unmoved (a 1-point drift keeps it above)
    # fields of one size that show part of the same smear (the stage moved less than a field between two captures):
    # found on their looks by `quality.overlaps`, their shared cells counted once (`python bench/overlapping_fields.py`)
    overlap_min_share: float = 0.25  # of a field the two must share at least
    overlap_min_corr: float = 0.8  # the correlation of their detail over the shared part at least
    overlap_sieve_corr: float = 0.6  # a sieve: the same on a half-size grid at whole-point shifts
    overlap_window: int = 100  # each field is compared with up to this many before it in the slide's order
    overlap_same_cell: float = 0.5  # cells of two overlapping fields closer than this many cell sizes are one cell


@dataclass(frozen=True)
class Splits:
    blocks: int = 10  # contiguous file-number blocks per class
    val_blocks: tuple[int, ...] = (4,)
    test_blocks: tuple[int, ...] = (9,)
    guard: int = 3  # training images dropped next to a val/test block (same patient across a border)
    near_dup_bits: int = 6  # perceptual-hash Hamming distance that counts as a near duplicate


@dataclass(frozen=True)
class VerdictRules:
    """Slide verdict thresholds, tuned by ``python bench/eval_slides.py`` (bench/results/slides.json, run of
    2026-12-07 on the shipped models, two test-time views and the class-prior correction at strength 2): on
    validation bags, normal slides flagged <= 2 % at every slide size (100 to 2,000 cells), pooled and for each
    lab's normal slides alone (the hard limit: a new lab's normal slides hold its own cells), with the seen-lab
    scores and with the unseen-lab scores of two training runs' leave-one-lab-out models (weights/lolo, seed 0,
    and weights/lolo-seed2, seed 2: the limit must hold whichever run a new lab's model is like), then the most
    issue targets met at 200 cells, then the most slides with 5 % and 10 % blasts flagged.

    A blast count needs a per-cell error rate far below what the classifier has (it calls a few % of normal
    cells blasts on labs it saw, more on others), so the rules count shares, with Wilson 95 % intervals: a slide
    is ``suspected`` when the lower bound of the share of confident blasts (P(blast) >= 0.9) reaches 1 %, or the
    lower bound of the blast fraction reaches 10 %; ``negative`` when the blast fraction (its estimate:
    ``negative_z`` 0) is below 10 % and the confident-blast share below 1 %; ``indeterminate`` between. ``None``
    turns a rule off; a count rule (``suspect_confident_blasts``) is off: a fixed count flags more normal slides
    the more cells they hold. The rules tuned on seed 0's models alone (P(blast) >= 0.8, 2 %) flagged 35-99 % of
    one unseen lab's normal slides (Zheng's, by slide size) with seed 2's: bench/slides_history.md.
    """

    min_cells: int = 10  # fewer white cells (cells.NOT_WHITE aside) than this: "insufficient"
    min_fields: int = 1  # fewer usable fields (readable, passing quality control) than this: "insufficient"
    suspect_fraction: float | None = 0.10  # Wilson lower bound of the blast fraction that makes a slide "suspected"
    confident_blast_p: float = 0.9  # P(blast) that makes a cell a confident blast
    suspect_confident_fraction: float | None = 0.01  # Wilson lower bound of the confident-blast share: "suspected"
    suspect_confident_blasts: int | None = None  # this many confident blasts also make a slide "suspected" (off)
    negative_z: float = 0.0  # "negative" asks this z's upper bound of the blast fraction below suspect_fraction
    uncertain_p: float = 0.60  # a cell whose top-class probability is below this is "uncertain"
    review_uncertain_fraction: float = 0.30  # needs_review when more cells than this are uncertain
    review_stain_z: float = 3.0  # needs_review when the cells' colour is this many SDs from training crops
    review_unusable_fraction: float = 0.2  # needs_review when more of the slide's fields are unreadable or not smears
    subtype_min_blasts: int = 10  # the predominant subtype (a hint) is named only with at least this many blasts


@dataclass(frozen=True)
class LabCalibration:
    """A lab's own reference for calling blasts (``leukoscan lab-reference``, ``leukoscan/lab.py``), measured by
    ``python bench/eval_lab_reference.py``: the classifier ranks a lab's blasts above its normal cells far better
    than it places them against other labs' cells, so a lab that screens its own normal slides once can move the
    blast call to where its own normal cells sit."""

    normal_called_blast: float = 0.02  # share of the lab's normal reference cells left called blast
    min_cells: int = 500  # fewer reference cells than this: refused (the 98th percentile of a few is noise)
    max_offset: float = 15.0  # |blast log-odds offset| beyond this is refused (not normal smears of one lab)


@dataclass(frozen=True)
class Settings:
    geometry: Geometry = field(default_factory=Geometry)
    detection: Detection = field(default_factory=Detection)
    run: Run = field(default_factory=Run)
    scores: CellScores = field(default_factory=CellScores)
    segmentation: Segmentation = field(default_factory=Segmentation)
    splits: Splits = field(default_factory=Splits)
    quality: FieldQuality = field(default_factory=FieldQuality)
    verdict: VerdictRules = field(default_factory=VerdictRules)
    lab: LabCalibration = field(default_factory=LabCalibration)


SETTINGS = Settings()
