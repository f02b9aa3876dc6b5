"""Verdict rules on synthetic cell tables, and the Wilson interval."""

import numpy as np
import pandas as pd
import pytest

from leukoscan.config import VerdictRules
from leukoscan.verdict import PROB_COLUMNS, image_calls, slide_verdict, wilson


def table(n_benign, n_blast, p=0.95, blast_class=2):
    rows = []
    for i in range(n_benign + n_blast):
        probs = np.full(4, (1 - p) / 3)
        probs[0 if i < n_benign else blast_class] = p
        rows.append(dict(zip(PROB_COLUMNS, probs)))
    return pd.DataFrame(rows, columns=PROB_COLUMNS)


def test_wilson_known_values():
    lo, hi = wilson(10, 100)
    assert lo == pytest.approx(0.0552, abs=1e-3) and hi == pytest.approx(0.1744, abs=1e-3)
    assert wilson(0, 20)[0] == 0 and wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-3)
    assert wilson(20, 20)[1] == 1.0 and wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("benign,blast,expected", [
    (3, 2, "insufficient"),     # fewer than min_cells
    (100, 0, "negative"),       # no blasts, upper bound < 10 %
    (10, 40, "suspected"),      # lower bound well above 10 %
    (95, 5, "suspected"),       # 5 confident blasts are enough even at 5 %
])
def test_verdicts(benign, blast, expected):
    assert slide_verdict(table(benign, blast))["verdict"] == expected


def test_indeterminate_between_thresholds():
    # 3 blasts of 40 cells, none confident: CI straddles 10 %
    v = slide_verdict(table(37, 3, p=0.7))
    assert v["n_confident_blasts"] == 0 and v["ci_low"] < 0.10 <= v["ci_high"]
    assert v["verdict"] == "indeterminate"


def test_predominant_subtype_only_when_suspected():
    v = slide_verdict(table(10, 40, blast_class=3))
    assert v["verdict"] == "suspected" and v["predominant_subtype"] == "Pro-B"
    assert v["cells_per_class"] == {"Benign": 10, "Early Pre-B": 0, "Pre-B": 0, "Pro-B": 40}
    assert slide_verdict(table(100, 0))["predominant_subtype"] == ""


def test_needs_review_for_uncertain_cells_and_stain():
    assert slide_verdict(table(50, 0, p=0.4))["needs_review"]
    assert not slide_verdict(table(50, 0))["needs_review"]
    v = slide_verdict(table(50, 0), stain_z=5.0)
    assert v["needs_review"] and "stain" in v["review_reasons"][0]


def test_rules_are_configurable():
    strict = VerdictRules(min_cells=200)
    assert slide_verdict(table(100, 0), strict)["verdict"] == "insufficient"


def test_image_calls_are_mean_probabilities():
    cells = pd.concat([table(1, 3, blast_class=1).assign(image="a.jpg"), table(2, 0).assign(image="b.jpg")])
    calls = image_calls(cells)
    assert list(calls.index) == ["a.jpg", "b.jpg"] and list(calls.label) == ["Early Pre-B", "Benign"]
    assert calls.loc["a.jpg", "p_early_pre_b"] == pytest.approx((3 * 0.95 + 0.05 / 3) / 4)
    assert image_calls(table(0, 0).assign(image=[])).empty
