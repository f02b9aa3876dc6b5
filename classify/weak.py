"""Cleaning Taleqani's weak labels with a model that never saw Taleqani.

A Taleqani field carries its patient's diagnosis, so an ALL field's neutrophil is labelled a blast, and a
Benign field's cells (hematogones and normal lymphocytes, reportedly) have no type of their own: they
start as ``lymphocyte`` (hematogones are benign lymphoid precursors, never blasts). A cell-type model
trained on the labelled sources alone (it never saw Taleqani) looks at every weak cell, and a cell it
calls a granulocyte (neutrophil, eosinophil, basophil: segmented or granular, unmistakable even at
Taleqani's low magnification) with probability >= ``confident`` is relabelled to that type.

Only granulocytes: measured on 6,000 Taleqani cells, that model's other confident calls there are the
domain gap talking, not the cells: 13 % of ALL-field cells are called ``other`` with p >= 0.9 (mostly
lymphoblasts at a field's edge, their crop padded) and lymphoblasts with more cytoplasm are called
monocytes; a model that has seen only myeloblasts cannot tell a lymphoblast from a lymphocyte either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leukoscan.cells import CELL_TYPES, NOT_WHITE

RELABEL_TO = ("neutrophil", "eosinophil", "basophil")


def clean_weak_labels(cells: pd.DataFrame, probs: np.ndarray, confident: float = 0.9) -> pd.DataFrame:
    """``cells`` with ``type`` cleaned where ``weak``; ``probs`` (N x CELL_TYPES, calibrated) are the
    Taleqani-blind model's for every row (rows not weak are left alone). Adds ``original_type`` and
    ``cleaning`` ('relabelled' or '')."""
    probs = np.asarray(probs, dtype=float).reshape(len(cells), len(CELL_TYPES))
    cols = [CELL_TYPES.index(t) for t in RELABEL_TO]
    best = np.asarray(cols)[probs[:, cols].argmax(axis=1)]
    relabel = cells["weak"].to_numpy(dtype=bool) & (probs[np.arange(len(probs)), best] >= confident)
    return _relabelled(cells, relabel, [CELL_TYPES[i] for i in best[relabel]])


def _relabelled(cells: pd.DataFrame, relabel: np.ndarray, types: list[str]) -> pd.DataFrame:
    """``cells`` with the rows of the boolean mask ``relabel`` given ``types`` (one per such row) and their
    subtype cleared; ``original_type`` and ``cleaning`` ('relabelled' or '') say what moved."""
    out = cells.copy()
    out["original_type"] = out["type"]
    out["cleaning"] = ""
    out.loc[relabel, "type"] = types
    out.loc[relabel, "subtype"] = ""
    out.loc[relabel, "cleaning"] = "relabelled"
    return out


def cleaning_summary(cleaned: pd.DataFrame) -> dict:
    """How many weak cells were touched, by diagnosis and new type (for the README and the card)."""
    weak = cleaned[cleaned["weak"]]
    moved = weak[weak.cleaning == "relabelled"].groupby(["original_type", "type"]).size()
    return {
        "weak_cells": int(len(weak)),
        "relabelled": int((weak.cleaning == "relabelled").sum()),
        "moves": {f"{a} -> {b}": int(n) for (a, b), n in moved.items()},
    }


PSEUDO_TYPES = tuple(t for t in CELL_TYPES if t not in ("blast", "other"))
NORMAL_WHITE = tuple(t for t in PSEUDO_TYPES if t not in NOT_WHITE)  # what a normal donor's white cell can be


def pseudo_labels(
    cells: pd.DataFrame, probs: np.ndarray, confident: float = 0.9, known_normal: bool = False
) -> pd.DataFrame:
    """Self-training: the rows of unlabelled white cells (``cells``, e.g. TXL-PBC's) that a teacher model
    (``probs``, N x CELL_TYPES, calibrated) calls one normal white-cell type with probability >=
    ``confident``, with that ``type`` and ``cleaning`` 'pseudo'. Never ``blast`` (a teacher's blast call on
    another lab's cells is what the student must unlearn, not repeat) nor ``other``. ``known_normal``:
    the cells are known to be normal white cells (a lab of normal donors), so the teacher's probabilities
    of ``blast``, ``other`` and ``erythroblast`` (not a white cell) are dropped and the rest renormalised
    before the most likely type is taken."""
    probs = np.asarray(probs, dtype=float).reshape(len(cells), len(CELL_TYPES))
    if known_normal:
        probs = probs * np.isin(CELL_TYPES, NORMAL_WHITE)
        probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    best = probs.argmax(axis=1)
    types = np.asarray(CELL_TYPES)[best]
    keep = np.isin(types, PSEUDO_TYPES) & (probs[np.arange(len(probs)), best] >= confident)
    out = cells[keep].copy()
    out["type"] = types[keep]
    out["cleaning"] = "pseudo"
    return out


def relabel_table(cleaned: pd.DataFrame) -> pd.DataFrame:
    """What a cleaning changed, small enough to commit (no image, only crop names of ``leukoscan data cells``):
    the relabelled rows' ``crop``, ``original_type`` and new ``type``."""
    moved = cleaned[cleaned.cleaning == "relabelled"]
    return moved[["crop", "original_type", "type"]].sort_values("crop").reset_index(drop=True)


def apply_relabels(cells: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``cells`` cleaned as ``clean_weak_labels`` cleaned them when it wrote ``table`` (``relabel_table``),
    without the model that did it; a crop of ``table`` missing from ``cells`` (another build) is a ValueError."""
    missing = set(table.crop) - set(cells.crop)
    if missing:
        raise ValueError(f"{len(missing)} relabelled crops are not in this cell dataset (e.g. {sorted(missing)[0]})")
    new = cells.crop.map(table.set_index("crop")["type"])
    relabel = new.notna().to_numpy()
    return _relabelled(cells, relabel, new[relabel].tolist())


def redo_cleaning(cells: Path, table: Path) -> Path:
    """The cleaned ``cells.csv`` a committed cleaning ``table`` (``weights/cleaning/<name>.csv``) stands for,
    written to ``cells/cleaned/<name>.csv`` (with its summary, ``.json``) unless it is there already: byte for
    byte the one its cleaning model wrote, without that model."""
    import json

    from leukoscan.datasets.cells import read_cells

    out = cells / "cleaned" / table.name
    if not out.exists():
        cleaned = apply_relabels(read_cells(cells), pd.read_csv(table))
        out.parent.mkdir(parents=True, exist_ok=True)
        cleaned.to_csv(out, index=False)
        out.with_suffix(".json").write_text(json.dumps(cleaning_summary(cleaned), indent=2))
    return out


def cleaned_types(cells: pd.DataFrame, cleaned: Path) -> np.ndarray:
    """Each of ``cells``' type as the table ``classify clean`` wrote (``cleaned``: crop, type) gives it; a
    ``ValueError`` for a table without those columns or one that leaves a cell without a type (made from
    another build of the cell dataset: those cells would vanish from training or scoring without a word)."""
    table = pd.read_csv(cleaned, keep_default_na=False)
    if missing := {"crop", "type"} - set(table.columns):
        raise ValueError(f"{cleaned} has no {sorted(missing)} column: not a table `classify clean` wrote")
    types = table.set_index("crop").type.reindex(cells.crop)
    if uncovered := int(types.isna().sum()):
        raise ValueError(
            f"{cleaned} leaves {uncovered} of the {len(cells)} cells of the cell dataset without a type: make it "
            "from this cell dataset (`leukoscan classify clean`)"
        )
    return types.to_numpy()
