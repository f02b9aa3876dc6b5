"""The promotion gate of a cell-type classifier fine-tuned on a lab's reviewed cells (``leukoscan classify promote``).

One reviewed field in ``HOLD_OUT_EVERY`` (``held_out``: by a hash of its slide and image names, so a field stays
on its side as more cells are reviewed) is never fine-tuned on: the gate scores the lab on it. The regression set
is the per-cell labelled test cells of ``leukoscan data cells`` (Munich, PBC, Zheng, TXL-PBC; Taleqani's per-image
labels left out). A candidate replaces the classifier in use only if (``GATE``) it types more of the lab's held-out
cells right, finds no fewer of their blasts, ranks them no worse above their normal cells (the AUC of P(blast),
on which a lab reference places its call) and calls no more of their normal cells blasts (each within
``tolerance``), and on the regression set still ranks blasts above normal cells and calls no more normal cells
blasts; for a lab whose held-out cells hold no
blasts, the regression set's blast recall must hold too (fine-tuned on normal cells alone, a model calls fewer
blasts anywhere). How well it types other labs' normal cells is reported, not gated: a fine-tuned model is the
lab's. Every decision goes into the classifier's registry (``weights/classifier-registry.json``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from leukoscan.cells import BLAST, CELL_TYPES

if TYPE_CHECKING:
    import pandas as pd

HOLD_OUT_EVERY = 4  # one reviewed field in 4 is held out for the gate
NORMAL_TYPES = tuple(t for t in CELL_TYPES if t not in ("blast", "other"))  # normal white cells


def held_out(lab: pd.DataFrame) -> np.ndarray:
    """Which rows of a lab's reviewed cells (``LAB_COLUMNS``) the gate holds out: every cell of one field in
    ``HOLD_OUT_EVERY``, chosen by a hash of "slide/image" (the same field on every run, whatever else is added)."""
    if missing := sorted({"slide", "image"} - set(lab.columns)):
        raise ValueError(f"the lab's cells have no {missing} column (`leukoscan classify lab-cells` writes them)")
    keys = lab.slide.astype(str) + "/" + lab.image.astype(str)
    digest = [int(hashlib.sha256(k.encode()).hexdigest()[:8], 16) for k in keys]
    return np.array([d % HOLD_OUT_EVERY == 0 for d in digest], dtype=bool)


def auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney, ties counted half); None when a side is empty."""
    import pandas as pd

    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return None
    ranks = pd.Series(np.concatenate([pos, neg])).rank().to_numpy()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def cell_figures(truth: np.ndarray, probs: np.ndarray) -> dict:
    """Of ``CELL_TYPES`` probabilities ``probs`` against types ``truth``, each cell called its most likely type:
    accuracy, blast recall, the share of normal white cells called blast, and the AUC of P(blast), blasts against
    normal white cells (the ranking a lab reference places its blast call on); None where there are no such cells."""
    truth, probs = np.asarray(truth, dtype=object), np.asarray(probs, dtype=float).reshape(len(truth), len(CELL_TYPES))
    called = np.asarray(CELL_TYPES, dtype=object)[probs.argmax(1)] if len(truth) else truth
    blast, normal = truth == "blast", np.isin(truth, NORMAL_TYPES)

    def share(which: np.ndarray, value) -> float | None:
        return round(float((called[which] == value).mean()), 4) if which.any() else None

    area = auc(probs[blast, BLAST], probs[normal, BLAST])
    return {
        "n": int(len(truth)),
        "accuracy": round(float((called == truth).mean()), 4) if len(truth) else None,
        "n_blasts": int(blast.sum()),
        "blast_recall": share(blast, "blast"),
        "n_normal": int(normal.sum()),
        "normal_called_blast": share(normal, "blast"),
        "blast_auc": None if area is None else round(area, 4),
    }


def read_json(path: Path, what: str) -> dict:
    """A JSON file that a command made (``what`` it should be); a ``ValueError`` naming it when it is missing or
    not JSON."""
    if not path.is_file():
        raise ValueError(f"{path} not found: {what}")
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{path} is not readable JSON ({e}): {what}") from None


def read_lab_cells(lab: Path) -> pd.DataFrame:
    """A lab's reviewed cells (``lab/cells.csv``, ``LAB_COLUMNS``, slide and image names as written); a
    ``ValueError`` (one line) for a file that is not one."""
    import pandas as pd

    from leukoscan.classify.finetune import LAB_COLUMNS

    try:
        table = pd.read_csv(lab / "cells.csv", keep_default_na=False, dtype={"slide": str, "image": str})
    except (OSError, ValueError) as e:
        raise ValueError(f"{lab / 'cells.csv'}: {e} (`leukoscan classify lab-cells` writes it)") from None
    if missing := sorted(set(LAB_COLUMNS) - set(table.columns)):
        raise ValueError(
            f"{lab / 'cells.csv'} has no {missing} columns: cut the cells with `leukoscan classify lab-cells`"
        )
    return table


def check_cut(lab: Path, weights: Path) -> dict:
    """How the model in ``weights`` cuts its crops (``crop_record``); a ``ValueError`` when the lab's reviewed
    cells (``lab/geometry.json``) were cut otherwise."""
    from leukoscan.cards import card_geometry, read_card

    geometry = card_geometry(read_card(weights)).crop_record()
    cut = read_json(lab / "geometry.json", "not a folder of `leukoscan classify lab-cells`")
    if cut != geometry:
        raise ValueError(
            f"{lab}'s cells were cut at {cut}, not as {weights.name} cuts them ({geometry}): cut them again"
        )
    return geometry


def lab_held_out(lab: Path) -> pd.DataFrame:
    """The held-out rows of a lab's reviewed cells (``read_lab_cells``); a ``ValueError`` when none of its fields
    is held out."""
    table = read_lab_cells(lab)
    kept = table[held_out(table)].reset_index(drop=True)
    if kept.empty:
        fields = table[["slide", "image"]].drop_duplicates()
        raise ValueError(
            f"none of the {len(fields)} reviewed field(s) in {lab} is held out for the gate (one in {HOLD_OUT_EVERY},"
            " by name): review cells of more fields"
        )
    kept.attrs["root"] = lab
    return kept


def regression_cells(cells: Path, geometry: dict) -> pd.DataFrame:
    """The regression set: the test cells with per-cell labels of a built cell dataset (``leukoscan data cells``),
    cut as ``geometry`` (a model's ``crop_record``) cuts; a ``ValueError`` for a dataset cut otherwise, or one
    without such cells."""
    from leukoscan.datasets.cells import read_cells

    summary = read_json(cells / "summary.json", "not a cell dataset of `leukoscan data cells`")
    if (cut := summary.get("geometry")) != geometry:
        raise ValueError(f"{cells}'s crops were cut at {cut}, not as the classifier cuts them ({geometry})")
    df = read_cells(cells)
    test = df[(df.split == "test") & ~df.weak].reset_index(drop=True)
    if test.empty:
        raise ValueError(f"{cells} has no test cells with per-cell labels: no regression set")
    test.attrs["root"] = df.attrs["root"]
    return test


@dataclass(frozen=True)
class GateCells:
    """What the gate scores a model on: the lab's held-out cells and the regression set (tables of ``crop`` and
    ``type``), with their crops, read once for every model scored."""

    lab: pd.DataFrame
    regression: pd.DataFrame
    lab_crops: np.ndarray
    regression_crops: np.ndarray

    @classmethod
    def read(cls, lab: pd.DataFrame, regression: pd.DataFrame) -> GateCells:
        """Each table's crops (``read_crops``: files under its ``attrs["root"]``)."""
        from leukoscan.datasets.cells import read_crops

        return cls(lab, regression, read_crops(lab), read_crops(regression))


def score(weights: Path, cells: GateCells, device: str = "cpu") -> dict:
    """``cell_figures`` of the model in ``weights`` on the lab's held-out cells (and how many of them confirm the
    call the review page showed) and on the regression set, by source."""
    from leukoscan.classify.predict import CellClassifier

    clf = CellClassifier(weights, device, strict=False)
    lab, regression = cells.lab, cells.regression
    lab_probs, reg_probs = clf.probs(cells.lab_crops), clf.probs(cells.regression_crops)
    by_source = {
        str(source): cell_figures(regression.type.to_numpy()[rows], reg_probs[rows])
        for source, rows in regression.groupby("source").indices.items()
    }
    confirmed = int((lab.type == lab.predicted).sum())
    return {
        "lab": {**cell_figures(lab.type.to_numpy(), lab_probs), "confirmed": confirmed},
        "regression": {**cell_figures(regression.type.to_numpy(), reg_probs), "by_source": by_source},
    }


def gate(scores: dict, tolerance: float) -> tuple[bool, str]:
    """Whether the candidate passes, and why in one line (each figure's change and its rule, ``GATE``)."""
    now, new = scores["current"], scores["candidate"]
    checks = []
    for where, figure, rule in GATE:
        if rule == "if the lab has no blasts" and now["lab"]["blast_recall"] is not None:
            continue  # the lab's own blasts say whether it misses blasts
        if now[where][figure] is None or new[where][figure] is None:  # no such cells
            continue
        change = new[where][figure] - now[where][figure]
        higher_is_better = figure != "normal_called_blast"
        if rule == "rise":
            ok, said = change > 0, "rise"
        else:
            ok = (-change if higher_is_better else change) <= tolerance + 1e-9
            said = f"{'drop' if higher_is_better else 'rise'} <= {tolerance:g}" + (
                f", {rule}" if rule != "tolerance" else ""
            )
        checks.append((ok, f"{where} {figure.replace('_', ' ')} {change:+.4f} ({said}{'' if ok else ': failed'})"))
    if not any(" blast recall " in text or " blast auc " in text for _, text in checks):
        checks.append((False, "no blasts, neither among the lab's held-out cells nor in the regression set: failed"))
    return all(ok for ok, _ in checks), "; ".join(text for _, text in checks)


GATE = (  # (cells, figure, rule): "rise", or worse by at most the tolerance ("if ...": only then)
    ("lab", "accuracy", "rise"),
    ("lab", "blast_recall", "tolerance"),
    ("lab", "blast_auc", "tolerance"),
    ("lab", "normal_called_blast", "tolerance"),
    ("regression", "blast_auc", "tolerance"),
    ("regression", "normal_called_blast", "tolerance"),
    ("regression", "blast_recall", "if the lab has no blasts"),
)


def promote(
    candidate: Path, current: Path, lab: Path, cells: Path, tolerance: float = 0.02, device: str = "cpu"
) -> dict:
    """Replace ``current`` by ``candidate`` only if it passes the ``gate`` on the lab's held-out reviewed cells
    (``lab``, from ``classify lab-cells``) and the regression set of ``cells``; the decision, with both models'
    figures, is recorded in the classifier's registry. A ``ValueError`` for cells cut otherwise than the models
    cut them."""
    from leukoscan.cards import card_geometry, read_card
    from leukoscan.registry import WeightsRegistry

    registry = WeightsRegistry(current, "classifier")
    registry.entries()  # a registry that cannot be read: before the scoring, not after it
    geometry = check_cut(lab, current)
    if (other := card_geometry(read_card(candidate)).crop_record()) != geometry:
        raise ValueError(f"{candidate} cuts its crops at {other}, {current} at {geometry}: not comparable")
    cells = GateCells.read(lab_held_out(lab), regression_cells(cells, geometry))
    scores = {name: score(w, cells, device) for name, w in (("current", current), ("candidate", candidate))}
    promoted, reason = gate(scores, tolerance)
    registry.decide(candidate, promoted, reason, scores)
    result = {"promoted": promoted, "reason": reason, "scores": scores}
    if not scores["current"]["lab"]["confirmed"]:
        result["note"] = UNCONFIRMED
    return result


UNCONFIRMED = (
    "the lab's held-out cells are all corrections (the model in use got each wrong on the review page), so the lab's "
    "figures favour any change: tick the calls that are right there too"
)
