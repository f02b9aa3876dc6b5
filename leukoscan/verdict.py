"""From per-cell probabilities to image calls and a slide-level screening verdict."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from leukoscan.cells import CLASSES, LABELS, MALIGNANT
from leukoscan.config import SETTINGS, VerdictRules
from leukoscan.records import PROB_COLUMNS

VERDICTS = ("suspected", "negative", "insufficient", "indeterminate")


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score 95 % interval of a binomial proportion k/n ((0, 1) when n == 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def image_calls(cells: pd.DataFrame) -> pd.DataFrame:
    """Image-level call of each image in ``cells``: its cells' mean class probability, labelled with the
    argmax. One row per image that has cells, indexed by image name (columns ``label``, ``p_<class>``)."""
    mean = cells.groupby("image", sort=False)[PROB_COLUMNS].mean()
    labels = [LABELS[i] for i in mean.to_numpy().argmax(axis=1)] if len(mean) else []
    mean.insert(0, "label", pd.Series(labels, index=mean.index, dtype=object))
    return mean


def slide_verdict(cells: pd.DataFrame, rules: VerdictRules = SETTINGS.verdict, stain_z: float | None = None) -> dict:
    """Verdict of one slide from its ``cells`` table (columns ``p_<class>``)."""
    n = len(cells)
    probs = cells[PROB_COLUMNS].to_numpy(dtype=float) if n else np.zeros((0, len(CLASSES)))
    top = probs.argmax(axis=1)
    p_malignant = probs[:, list(MALIGNANT)].sum(axis=1)
    blasts = int(np.isin(top, MALIGNANT).sum())
    confident = int((p_malignant >= rules.confident_blast_p).sum())
    low, high = wilson(blasts, n)
    uncertain = float((probs.max(axis=1) < rules.uncertain_p).mean()) if n else 0.0
    if n < rules.min_cells:
        verdict = "insufficient"
    elif low >= rules.suspect_fraction or confident >= rules.suspect_confident_blasts:
        verdict = "suspected"
    elif high < rules.suspect_fraction:
        verdict = "negative"
    else:
        verdict = "indeterminate"
    per_class = {LABELS[i]: int((top == i).sum()) for i in range(len(CLASSES))}
    predominant = ""
    if verdict == "suspected":
        predominant = LABELS[max(MALIGNANT, key=lambda i: (per_class[LABELS[i]], probs[:, i].sum()))]
    reasons = []
    if n and uncertain > rules.review_uncertain_fraction:
        reasons.append(f"{uncertain:.0%} of cells are uncertain (top probability < {rules.uncertain_p})")
    if stain_z is not None and stain_z > rules.review_stain_z:
        reasons.append(f"stain colour is {stain_z:.1f} SD from the training data")
    return {
        "n_cells": n, "n_blasts": blasts, "blast_fraction": blasts / n if n else 0.0, "ci_low": low, "ci_high": high,
        "n_confident_blasts": confident, "predominant_subtype": predominant, "verdict": verdict,
        "needs_review": bool(reasons), "review_reasons": reasons, "uncertain_fraction": uncertain,
        "cells_per_class": per_class,
    }
