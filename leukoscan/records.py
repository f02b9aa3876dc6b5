"""The records that pass between stages above the cell level, and the tables of the output contract.

Cells travel as ``sv.Detections`` (leukoscan/cells.py) until a field is done; then:
- ``FieldResult``: one field screened (its cells as table rows), one line of the slide's journal;
- ``SlideCall``: what the verdict rules say of a slide's cells (``verdict.slide_verdict``);
- ``SlideVerdict``: that call with the slide's facts and what screened it: verdict.json, a summary.csv row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import supervision as sv

from leukoscan.cells import CELL_TYPES, PROBS, SUBTYPE_PROBS, SUBTYPES, blast_margin, cell_labels, subtype_indices
from leukoscan.config import VerdictRules
from leukoscan.scale import Scale

if TYPE_CHECKING:
    from leukoscan.classify.stain import SlideColour

VERDICT_FILE = "verdict.json"  # in each slide's output folder: SlideVerdict.record()


class Verdict(StrEnum):
    """A slide's screening verdict (``config.VerdictRules``; written as its value)."""

    SUSPECTED = "suspected"  # blasts above the rules' thresholds: a hematologist should review the slide
    NEGATIVE = "negative"  # blasts below them
    INDETERMINATE = "indeterminate"  # neither, significantly
    INSUFFICIENT = "insufficient"  # too few white cells or usable fields for a verdict


# why a negative verdict made with the model's own blast calls says little on a laboratory's own slides: measured
# by leaving each training lab out (bench/eval_slides.py "unseen lab", bench/eval_lab_reference.py)
WITHOUT_REFERENCE = (
    "made without a lab reference: on laboratories the models were not trained on, blasts were ranked above normal "
    'cells but seldom called blasts (README, "How well the verdict works"), so such a negative is weak evidence; '
    "leukoscan lab-reference places the blast call for your lab from its own normal slides"
)


class FieldStatus(StrEnum):
    """What became of a field (images.csv's ``status``)."""

    OK = "ok"
    UNUSABLE = "unusable"  # read, but not a usable smear (quality control): its cells do not count
    DUPLICATE = "duplicate"  # the same picture as an earlier field of the slide: its cells are counted there, once
    ERROR = "error"  # it could not be read


TYPE_COLUMNS = [f"p_{t}" for t in CELL_TYPES]  # sum to 1 (calibrated)
SUBTYPE_COLUMNS = [f"p_{s}" for s in SUBTYPES]  # given blast: filled for blasts only, sum to 1
DIFFERENTIAL = [f"n_{t}" for t in CELL_TYPES]  # cells of each type on a slide
CELL_COLUMNS = [
    "image",
    "cell",
    "x1",
    "y1",
    "x2",
    "y2",
    "det_conf",
    "cell_type",
    "label",
    *TYPE_COLUMNS,
    "subtype",
    *SUBTYPE_COLUMNS,
    "blast_margin",
]
IMAGE_COLUMNS = [
    "image",
    "status",
    "error",
    "n_cells",
    "n_white_cells",
    "n_blasts",
    "blast_fraction",
    "label",
    *TYPE_COLUMNS,
    "overlay",
    "n_shared",
    "overlaps",
]
SUMMARY_COLUMNS = [
    "slide",
    "n_images",
    "n_failed",
    "n_cells",
    "n_white_cells",
    "n_blasts",
    "blast_fraction",
    "ci_low",
    "ci_high",
    "predominant_subtype",
    "verdict",
    "needs_review",
    *DIFFERENTIAL,
]


def cell_records(image: str, det: sv.Detections) -> list[dict]:
    """One record per classified cell of ``image`` (boxes in original-image pixels), in ``CELL_COLUMNS``.

    Plain dicts (built with numpy, no DataFrame per field: this runs once per field); the slide's
    ``cells.csv`` is one DataFrame of all of them."""
    n = len(det)
    probs = np.asarray(
        det.data.get(PROBS, np.zeros((n, len(CELL_TYPES)))) if n else np.zeros((0, len(CELL_TYPES))), float
    )
    sub = np.asarray(
        det.data.get(SUBTYPE_PROBS, np.full((n, len(SUBTYPES)), np.nan)) if n else np.zeros((0, len(SUBTYPES))), float
    )
    conf = np.asarray(det.confidence if det.confidence is not None else np.ones(n), float)
    subtype = ["" if s is None else SUBTYPES[s] for s in subtype_indices(det)]
    sub_values = [[None if not np.isfinite(v) else v for v in col] for col in sub.round(4).T.tolist()]
    columns = [
        [image] * n,
        list(range(n)),
        *np.asarray(det.xyxy, float).round(1).T.tolist(),
        conf.round(4).tolist(),
        [CELL_TYPES[c] for c in (det.class_id if n else [])],
        cell_labels(det),
        *probs.round(4).T.tolist(),
        subtype,
        *sub_values,
        blast_margin(probs).round(3).tolist(),
    ]
    return [dict(zip(CELL_COLUMNS, row)) for row in zip(*columns)]


@dataclass
class FieldResult:
    """One field screened, as its slide's journal records it (one JSON line) and its tables are made from."""

    status: FieldStatus  # (the journal holds its value)
    error: str = ""  # why, for unusable and error
    cells: list[dict] = field(default_factory=list)  # its cells' table rows (CELL_COLUMNS; boxes in image px)
    overlay: str | None = None  # its overlay, relative to the slide's output folder (None: none written)
    stain_lab: list[float] | None = None  # median CIE Lab colour (L 0-100) of its cells' stained pixels
    seconds: dict[str, float] = field(default_factory=dict)  # per stage, this field's share of its batch's
    fingerprint: dict | None = None  # its file when screened (journal.fingerprint), set by the journal
    size: list[int] | None = None  # [width, height] in px as screened (None: unread, or an earlier journal)
    look: str | None = None  # its gray levels on a small grid (quality.field_look; None: unread, an earlier journal)

    def record(self) -> dict:
        """The journal's JSON line."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_record(cls, record: dict) -> FieldResult:
        """A journal line (also one of an earlier version, which may lack keys); a ``ValueError`` for one that is
        not a field's result (edited, or damaged into other valid JSON)."""
        names = {f.name for f in fields(cls)}
        result = cls(**{k: v for k, v in record.items() if k in names})
        cells_ok = isinstance(result.cells, list) and all(isinstance(c, dict) for c in result.cells)
        look_ok = result.look is None or isinstance(result.look, str)
        if (
            result.status not in set(FieldStatus) - {FieldStatus.DUPLICATE}  # (decided by a slide's tables, not here)
            or not cells_ok
            or not isinstance(result.seconds, dict)
            or not look_ok
        ):
            raise ValueError("not a field's result")
        result.status = FieldStatus(result.status)
        return result


@dataclass
class SlideCall:
    """What the verdict rules (``config.VerdictRules``) say of one slide's cells."""

    verdict: Verdict
    reason: str  # the rule that gave it, in words
    n_cells: int  # cells classified (those of usable fields)
    n_white_cells: int  # of them, white cells of the differential (cells.NOT_WHITE aside): what the rules count
    n_blasts: int  # cells whose most probable type is blast
    blast_fraction: float | None  # n_blasts / n_white_cells; None when insufficient
    ci_low: float | None  # Wilson 95 % interval of the blast fraction; None when insufficient
    ci_high: float | None
    n_confident_blasts: int  # cells with P(blast) >= confident_blast_p
    predominant_subtype: str  # the blasts' commonest subtype (a hint), "" unless suspected with enough blasts
    review_reasons: list[str]  # why a person should look whatever the verdict ([] when nothing)
    uncertain_fraction: float  # share of cells whose top probability is below uncertain_p
    differential: dict[str, int]  # cells per type (CELL_TYPES order; n_<type> in the tables)

    @property
    def needs_review(self) -> bool:
        return bool(self.review_reasons)

    def record(self) -> dict:
        return {
            "n_cells": self.n_cells,
            "n_white_cells": self.n_white_cells,
            "n_blasts": self.n_blasts,
            "blast_fraction": self.blast_fraction,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_confident_blasts": self.n_confident_blasts,
            "predominant_subtype": self.predominant_subtype,
            "verdict": self.verdict,
            "reason": self.reason,
            "needs_review": self.needs_review,
            "review_reasons": self.review_reasons,
            "uncertain_fraction": self.uncertain_fraction,
            **{f"n_{t}": self.differential.get(t, 0) for t in CELL_TYPES},
        }


@dataclass
class SlideVerdict:
    """A slide's screening verdict with its facts and what screened it; ``record()`` is verdict.json."""

    slide: str  # its name (the folder's, or the image's stem)
    n_images: int  # fields in the slide
    n_failed: int  # fields that could not be read
    n_unusable: int  # fields read that are not usable smears
    call: SlideCall  # what the rules say of its cells
    scale: Scale  # its white cells' size in pixels
    stain_normalisation: SlideColour | None  # the slide's colour a normalising classifier mapped (None: none)
    stain_z: float | None  # how far its cells' colour is from the training crops' (SDs, worst Lab channel)
    thresholds: VerdictRules  # the rules it was judged by
    screened_with: dict  # version, device, backend and models (file, sha256, temperature): Models.description
    lab_reference: dict | None = None  # the lab reference its blast calls used (LabReference.record), None: none
    screened_at: str = ""  # ISO time, UTC
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage of this run
    source: str = ""  # the folder (or image) the slide was read from
    key: str = ""  # how its fields were screened (slide.screening_key): a resume reuses its scale only under it
    n_duplicates: int = 0  # fields that are the same picture as an earlier one (its cells counted once)
    n_shared_cells: int = 0  # cells seen again in a later field that overlaps theirs: left out of it (counted once)

    # what the tables and the terminal read most, without reaching into the call
    @property
    def verdict(self) -> str:
        return self.call.verdict

    @property
    def needs_review(self) -> bool:
        return self.call.needs_review

    @property
    def weak_negative(self) -> bool:
        """Called negative with the models' own blast calls, no lab reference: weak evidence on a lab's own slides."""
        return self.call.verdict == Verdict.NEGATIVE and not self.lab_reference

    @property
    def notes(self) -> list[str]:
        """What a reader of the verdict should know beside it that is not a reason to review the slide."""
        return [f"negative {WITHOUT_REFERENCE}"] if self.weak_negative else []

    def record(self) -> dict:
        """verdict.json: the call's keys at the top level (also the row summary.csv takes its columns from)."""
        return {
            "slide": self.slide,
            "source": self.source,
            "n_images": self.n_images,
            "n_failed": self.n_failed,
            "n_unusable": self.n_unusable,
            "n_duplicates": self.n_duplicates,
            "n_shared_cells": self.n_shared_cells,
            **self.call.record(),
            "notes": self.notes,
            "scale": self.scale.record(),
            "stain_normalisation": None if self.stain_normalisation is None else self.stain_normalisation.record(),
            "screened_at": self.screened_at,
            "stain_z": self.stain_z,
            "lab_reference": self.lab_reference,
            "thresholds": self.thresholds.__dict__,
            **self.screened_with,
            "screening_key": self.key,
            "seconds": self.seconds,
        }


def unreferenced_negatives(verdicts: list[SlideVerdict]) -> list[str]:
    """The slides of ``verdicts`` called negative with the model's own blast calls (no lab reference): those
    ``WITHOUT_REFERENCE`` is said of (``SlideVerdict.weak_negative``)."""
    return [v.slide for v in verdicts if v.weak_negative]


def read_verdict(folder: Path) -> dict | None:
    """What an earlier run wrote in the slide output folder ``folder`` (its ``VERDICT_FILE``, ``SlideVerdict.record``
    of that run's version: readers ``.get`` what they need); None when there is none, or it cannot be read as one
    (a run stopped before its verdict, a damaged file)."""
    try:
        record = json.loads((Path(folder) / VERDICT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def screened_folders(folder: Path) -> list[Path]:
    """The slide output folders with a verdict in ``folder`` (a run's --out), or ``folder`` itself when it is one."""
    folder = Path(folder)
    return [v.parent for v in [folder / VERDICT_FILE, *sorted(folder.glob(f"*/{VERDICT_FILE}"))] if v.is_file()]
