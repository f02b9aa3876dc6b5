"""A lab's own reference for calling blasts: one number, the blast log-odds offset that leaves
``LabCalibration.normal_called_blast`` (2 %) of the lab's normal white cells called blasts.

Why: on a laboratory it never saw, the classifier still ranks that lab's blasts above the lab's normal cells
(held out, Munich AUC 0.95), but where a lab's cells fall on the P(blast) scale depends on the lab: held out,
no Munich myeloblast reaches P(blast) 0.05 while a third of PBC's normal cells do
(``bench/results/crosslab_threshold.md``). One threshold cannot serve every lab; a lab's own normal slides can
place its threshold. ``leukoscan lab-reference`` reads the cells of normal slides that ``leukoscan run``
screened (their ``cells.csv``) and writes the offset; ``leukoscan run --lab-reference`` adds it to every
cell's blast log-odds (P(blast) x e^offset, renormalised), so that the cell types, the blast fraction, the
confident-blast rule and the subtype all follow. Measured by ``python bench/eval_lab_reference.py``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from leukoscan import outputs
from leukoscan.cells import BLAST, NOT_WHITE
from leukoscan.config import SETTINGS, LabCalibration
from leukoscan.journal import journal_path, read_states
from leukoscan.records import VERDICT_FILE, Verdict, read_verdict, screened_folders

# what makes its P(blast): the weights (the .pt, whether PyTorch, ONNX or OpenVINO ran it: they give its answers;
# an INT8 export's own, quantised) and how its scores are made
CLASSIFIER_KEYS = ("weights_sha256", "temperature", "test_time_views", "prior_correction", "others_prior_correction")


def classifier_key(described: dict) -> dict:
    """``CLASSIFIER_KEYS`` of a run's classifier description (verdict.json's ``models.classifier``); runs before
    ``weights_sha256`` was recorded screened with the .pt itself, whose ``sha256`` it is."""
    return {
        k: described.get(k, described.get("sha256")) if k == "weights_sha256" else described.get(k)
        for k in CLASSIFIER_KEYS
    }


def fit_offset(margins: np.ndarray, share: float) -> float:
    """The blast log-odds offset that leaves ``share`` of normal cells called blasts, from their blast margins
    (``cells.blast_margin``)."""
    return float(-np.quantile(margins, 1 - share))


def shift_blast(probs: np.ndarray, offset: float) -> np.ndarray:
    """``probs`` with P(blast) multiplied by e^``offset`` and renormalised (the other types keep their ratios)."""
    probs = np.asarray(probs, dtype=np.float64).copy()
    probs[:, BLAST] *= np.exp(offset)
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class LabReference:
    """A lab's blast offset and what it was measured on (the JSON ``leukoscan lab-reference`` writes)."""

    offset: float  # added to every cell's blast log-odds
    normal_called_blast: float  # the share of the reference cells it leaves called blast
    n_cells: int  # reference cells
    slides: list[str]  # reference slides (their output folders)
    classifier: dict  # the classifier that scored them (CLASSIFIER_KEYS of its description): the only one it fits
    created: str = ""
    file: str = ""  # where it was read from (not saved)
    repeats: tuple[tuple[str, str], ...] = ()  # (slide folder, the one kept): the same files screened again (not saved)
    NOT_SAVED: ClassVar[tuple[str, ...]] = ("file", "repeats")  # what this run knows of it, not the reference

    def apply(self, probs: np.ndarray) -> np.ndarray:
        return shift_blast(probs, self.offset)

    def check(self, classifier: dict) -> None:
        """A ``ValueError`` unless ``classifier`` (a run's ``Models.description["models"]["classifier"]``) is
        the one the reference cells were scored by: an offset belongs to one model's P(blast)."""
        if classifier_key(classifier) != classifier_key(self.classifier):
            raise ValueError(
                "the lab reference was measured with another cell-type classifier (or its calibration): make it "
                "again with `leukoscan lab-reference` on normal slides screened by this one"
            )

    def problem(self, max_offset: float = SETTINGS.lab.max_offset) -> str:
        """What makes a reference read from a file unusable ("" when nothing): an offset that is not a finite
        number within +-``max_offset`` (NaN would call every cell a blast, -400 none), or fields of the wrong kind."""
        number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)  # noqa: E731
        if not number(self.offset) or abs(self.offset) > max_offset:
            return f"offset {self.offset!r} is not a number within +-{max_offset}"
        if not number(self.normal_called_blast) or not 0 < self.normal_called_blast < 1:
            return f"normal_called_blast {self.normal_called_blast!r} is not a share between 0 and 1"
        if not isinstance(self.n_cells, int) or self.n_cells < 1:
            return f"n_cells {self.n_cells!r} is not a cell count"
        if not isinstance(self.classifier, dict) or not isinstance(self.slides, list):
            return "its classifier (an object) or slides (a list) are missing"
        return ""

    def flagged_slides(self) -> list[tuple[str, str]]:
        """(slide folder, verdict and blast share) of each reference slide that its screening did not call negative:
        a reference made with a leukemic slide among the normal ones would hide that lab's blasts."""
        flagged = []
        for slide in self.slides:
            verdict = read_verdict(Path(slide)) or {}
            if verdict.get("verdict") in (Verdict.SUSPECTED, Verdict.INDETERMINATE):
                share = verdict.get("blast_fraction")
                flagged.append((slide, verdict["verdict"] + (f" ({share:.1%} blasts)" if share is not None else "")))
        return flagged

    def record(self) -> dict:
        """verdict.json's ``lab_reference``: the offset and what it rests on."""
        keys = ("file", "offset", "normal_called_blast", "n_cells", "created")
        return {**{k: getattr(self, k) for k in keys}, "n_slides": len(self.slides)}

    def save(self, path: Path) -> None:
        outputs.write_json(path, {k: v for k, v in asdict(self).items() if k not in self.NOT_SAVED})

    @classmethod
    def load(cls, path: Path, classifier: dict | None = None) -> LabReference:
        """The reference in ``path``, checked against ``classifier`` when given (``check``); a ``ValueError``
        (one line) for a file that is not one."""
        try:
            fields = json.loads(Path(path).read_text())
            # what a reference file must hold: the fields without a default
            if missing := [
                f.name for f in dataclasses.fields(cls) if f.name not in fields and f.default is dataclasses.MISSING
            ]:
                raise ValueError(f"no {', '.join(missing)}")
            reference = cls(**{**fields, "file": str(Path(path).resolve())})
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"{path} is not a lab reference (made by `leukoscan lab-reference`): {e}") from None
        if problem := reference.problem():
            raise ValueError(
                f"{path} is not a usable lab reference: {problem} (make it again with `leukoscan lab-reference`)"
            )
        if classifier is not None:
            reference.check(classifier)
        return reference

    @classmethod
    def from_runs(cls, folders: list[Path], calibration: LabCalibration = SETTINGS.lab) -> LabReference:
        """The reference of the normal slides screened into ``folders`` (a ``leukoscan run --out`` folder, or one
        slide's folder in it): every white cell of their usable fields (``NOT_WHITE`` aside, as the blast fraction
        counts them). A ``ValueError`` (one line) when a slide was
        screened with another classifier than the others, or with a lab reference already (its P(blast) is not
        the model's), or when there are fewer than ``min_cells`` cells or the offset is beyond ``max_offset``."""
        slides: set[Path] = set()
        for folder in map(Path, folders):
            if not folder.is_dir():
                what = "a file, not a folder" if folder.exists() else "no such folder"
                raise ValueError(f"{folder}: {what} (give `leukoscan run` output folders, or slide folders in one)")
            found = [f.resolve() for f in screened_folders(folder)]
            if not found:  # a typo, a slide never screened, or a run stopped before its verdict
                raise ValueError(
                    f"{folder}: no screened slide (verdict.json) in it: screen it with `leukoscan run` (a run that was "
                    "stopped: run it again to finish), or leave it out"
                )
            started = [folder, *(f for f in folder.iterdir() if f.is_dir())]
            if unfinished := [f for f in started if journal_path(f).is_file() and not (f / VERDICT_FILE).is_file()]:
                raise ValueError(
                    f"{unfinished[0]}: its screening was not finished (no verdict.json): run the same `leukoscan run` "
                    "again to finish it, or leave it out"
                )
            slides.update(found)  # a slide named twice (relative and absolute paths, a link) counts once
        screened, repeats = {}, []
        for slide in sorted(slides):  # one slide's files screened into two runs: its cells count once
            classifier, cells = _screened_cells(slide)
            if (first := screened.get(same := _fields_screened(slide) or slide)) is not None:
                repeats.append((str(slide), str(first[0])))
                continue
            screened[same] = (slide, classifier, cells)
        slides, classifiers, margins = zip(*screened.values())
        if any(c != classifiers[0] for c in classifiers):
            raise ValueError("the reference slides were screened with different classifiers: screen them again")
        margins = np.concatenate(margins)
        if len(margins) < calibration.min_cells:
            raise ValueError(f"{len(margins)} reference cells, fewer than {calibration.min_cells}: add normal slides")
        offset = fit_offset(margins, calibration.normal_called_blast)
        if abs(offset) > calibration.max_offset:
            raise ValueError(
                f"blast offset {offset:+.1f} is beyond +-{calibration.max_offset}: are these normal slides of one lab?"
            )
        return cls(
            offset=round(offset, 4),
            normal_called_blast=calibration.normal_called_blast,
            n_cells=len(margins),
            slides=[str(s) for s in slides],
            classifier=classifiers[0],
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            repeats=tuple(repeats),
        )


def _fields_screened(slide: Path) -> tuple:
    """The files a slide's output folder screened (each field's resolved path, size and modification time, from
    its journal): the same in two runs' folders only when the same files were screened (a folder reused for the
    next slide, or fields replaced, differ). Empty when there is no readable journal."""
    try:
        states = read_states(journal_path(slide).read_bytes())
    except OSError:
        return ()
    return tuple(sorted(tuple(s["fingerprint"].get(k) for k in ("path", "size", "mtime")) for s in states.values()))


def _screened_cells(slide: Path) -> tuple[dict, np.ndarray]:
    """What classifier screened a slide's output folder, and its cells' blast margins; a ``ValueError`` (one
    line) for a folder that cannot serve as a reference."""
    try:
        verdict = read_verdict(slide)
        if verdict is None:
            raise ValueError(f"no readable {VERDICT_FILE}")
        classifier = verdict["models"]["classifier"]
        cells = pd.read_csv(slide / "cells.csv")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{slide}: not a slide `leukoscan run` screened ({type(e).__name__}: {e})") from None
    if verdict.get("lab_reference"):
        raise ValueError(f"{slide} was screened with a lab reference: screen the normal slides without one")
    if "weights_sha256" not in classifier and verdict.get("backend", "pytorch") != "pytorch":
        raise ValueError(
            f"{slide} was screened by an earlier version with --backend {verdict['backend']}: screen it again"
        )
    if "blast_margin" not in cells or "cell_type" not in cells:
        raise ValueError(f"{slide}/cells.csv has no blast_margin (an earlier version screened it): screen it again")
    if not np.isfinite(pd.to_numeric(cells.blast_margin, errors="coerce")).all():
        raise ValueError(f"{slide}/cells.csv has cells without a blast_margin number (edited?): screen it again")
    white = ~cells.cell_type.isin(NOT_WHITE)  # the 2 % are of white cells, as the blast fraction counts them
    return classifier_key(classifier), cells.blast_margin[white].to_numpy(float)
