"""Verdict rules on synthetic cell tables, and the Wilson interval."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from leukoscan.cells import CELL_TYPES
from leukoscan.config import Z95, VerdictRules
from leukoscan.records import SUBTYPE_COLUMNS, TYPE_COLUMNS
from leukoscan.verdict import image_calls, wilson
from leukoscan.verdict import slide_verdict as verdict_of_rules

# the rules' mechanics, at fixed thresholds (config.py's defaults are tuned by bench/eval_slides.py and move)
RULES = VerdictRules(
    suspect_fraction=0.20,
    confident_blast_p=0.95,
    suspect_confident_fraction=0.02,
    suspect_confident_blasts=None,
    negative_z=Z95,
)
COUNTING = replace(RULES, suspect_fraction=None, suspect_confident_fraction=None, suspect_confident_blasts=5)


def slide_verdict(cells, rules=RULES, **kw):
    return verdict_of_rules(cells, rules, **kw)


def table(n_normal, n_blast, p=0.95, subtype=1, normal_type=2):
    """Cells: ``n_normal`` of type ``normal_type`` (neutrophil) then ``n_blast`` blasts of ``subtype``."""
    rows = []
    for i in range(n_normal + n_blast):
        probs = np.full(len(CELL_TYPES), (1 - p) / (len(CELL_TYPES) - 1))
        kind = normal_type if i < n_normal else 0
        probs[kind] = p
        sub = np.full(3, np.nan)
        if kind == 0:
            sub = np.full(3, 0.1)
            sub[subtype] = 0.8
        rows.append(
            {"cell_type": CELL_TYPES[kind], **dict(zip(TYPE_COLUMNS, probs)), **dict(zip(SUBTYPE_COLUMNS, sub))}
        )
    return pd.DataFrame(rows, columns=["cell_type", *TYPE_COLUMNS, *SUBTYPE_COLUMNS])


def test_wilson_known_values():
    lo, hi = wilson(10, 100)
    assert lo == pytest.approx(0.0552, abs=1e-3) and hi == pytest.approx(0.1744, abs=1e-3)
    assert wilson(0, 20)[0] == 0 and wilson(0, 20)[1] == pytest.approx(0.1611, abs=1e-3)
    assert wilson(20, 20)[1] == 1.0 and wilson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    "benign,blast,expected",
    [
        (3, 2, "insufficient"),  # fewer than min_cells
        (100, 0, "negative"),  # no blasts
        (10, 40, "suspected"),  # lower bounds well above both thresholds
        (95, 5, "suspected"),  # 5 % confident blasts: lower bound 2.2 % >= 2 %
        (38, 2, "indeterminate"),  # 5 % confident blasts of 40 cells: lower bound 1.4 % < 2 % <= 5 %
    ],
)
def test_verdicts(benign, blast, expected):
    assert slide_verdict(table(benign, blast)).verdict == expected


def test_blasts_below_the_confident_threshold_count_only_in_the_blast_fraction():
    # 30 % blasts, none confident (P(blast) 0.7 < 0.95): the blast fraction's lower bound (17 %) is below 20 %
    v = slide_verdict(table(28, 12, p=0.7))
    assert v.n_confident_blasts == 0 and v.ci_low < 0.20 <= v.blast_fraction
    assert v.verdict == "indeterminate"
    assert slide_verdict(table(10, 40, p=0.7)).verdict == "suspected"  # lower bound 67 % >= 20 %


def test_rules_can_be_turned_off_and_a_count_rule_on():
    assert slide_verdict(table(195, 5), COUNTING).verdict == "suspected"
    assert slide_verdict(table(196, 4), COUNTING).verdict == "negative"
    # 17 % blasts, none confident: the blast fraction's 95 % upper bound (26 %) is not below 20 %, its estimate is
    assert slide_verdict(table(83, 17, p=0.7)).verdict == "indeterminate"
    assert slide_verdict(table(83, 17, p=0.7), replace(RULES, negative_z=0)).verdict == "negative"


def test_predominant_subtype_only_when_suspected():
    v = slide_verdict(table(10, 40, subtype=2))
    assert v.verdict == "suspected" and v.predominant_subtype == "Pro-B"
    assert slide_verdict(table(100, 0)).predominant_subtype == ""


def test_differential_counts_every_type():
    v = slide_verdict(pd.concat([table(10, 3), table(5, 0, normal_type=1)], ignore_index=True))
    assert v.differential == {
        **dict.fromkeys(CELL_TYPES, 0),
        "neutrophil": 10,
        "blast": 3,
        "lymphocyte": 5,
    }
    assert v.n_blasts == 3 and v.n_cells == v.n_white_cells == 18
    assert [v.record()[f"n_{t}"] for t in CELL_TYPES] == list(v.differential.values())  # n_<type> in the tables


def test_blast_fraction_counts_white_cells_only():
    """Erythroblasts and ``other`` (platelets, debris) are not white cells of the differential: counted in
    ``n_<type>`` and ``n_cells``, not in the blast fraction's denominator nor toward ``min_cells``."""
    other, erythroblast = CELL_TYPES.index("other"), CELL_TYPES.index("erythroblast")
    cells = pd.concat(
        [table(16, 4), table(30, 0, normal_type=other), table(10, 0, normal_type=erythroblast)], ignore_index=True
    )
    v = slide_verdict(cells)
    assert (v.n_cells, v.n_white_cells, v.n_blasts, v.blast_fraction) == (60, 20, 4, 0.2)
    assert (v.differential["other"], v.differential["erythroblast"]) == (30, 10)
    assert v.ci_low == pytest.approx(wilson(4, 20)[0])
    assert v.record()["n_white_cells"] == 20
    few = slide_verdict(pd.concat([table(5, 0), table(30, 0, normal_type=other)], ignore_index=True))
    assert few.verdict == "insufficient" and "only 5 white cells" in few.review_reasons[0]
    calls = image_calls(cells.assign(image="a.jpg"))
    assert (calls.n_white_cells.item(), calls.n_blasts.item(), calls.blast_fraction.item()) == (20, 4, 0.2)
    platelets = image_calls(table(3, 0, normal_type=other).assign(image="b.jpg"))
    assert platelets.n_white_cells.item() == 0 and np.isnan(platelets.blast_fraction.item())


def test_needs_review_for_uncertain_cells_and_stain():
    assert slide_verdict(table(50, 0, p=0.4)).needs_review
    assert not slide_verdict(table(50, 0)).needs_review
    v = slide_verdict(table(50, 0), stain_z=5.0)
    assert v.needs_review and "stain" in v.review_reasons[0]


def test_rules_are_configurable():
    strict = VerdictRules(min_cells=200)
    assert slide_verdict(table(100, 0), strict).verdict == "insufficient"


def test_image_calls_are_mean_probabilities():
    cells = pd.concat([table(1, 3).assign(image="a.jpg"), table(2, 0).assign(image="b.jpg")])
    calls = image_calls(cells)
    assert list(calls.index) == ["a.jpg", "b.jpg"] and list(calls.label) == ["Blast", "Neutrophil"]
    assert calls.loc["a.jpg", "p_blast"] == pytest.approx((3 * 0.95 + 0.05 / 8) / 4)
    assert calls.n_blasts.tolist() == [3, 0] and calls.blast_fraction.tolist() == [0.75, 0.0]
    assert image_calls(table(0, 0).assign(image=[])).empty


def test_verdict_says_which_rule_fired():
    assert slide_verdict(table(10, 40)).reason == (
        "lower bound of the blast fraction 67.0% >= 20%; lower bound of "
        "the share of cells with P(blast) >= 0.95 67.0% >= 2%"
    )
    assert slide_verdict(table(95, 5)).reason == "lower bound of the share of cells with P(blast) >= 0.95 2.2% >= 2%"
    assert slide_verdict(table(100, 0)).reason == (
        "upper bound of the blast fraction 3.7% < 20% and the share of cells with P(blast) >= 0.95 0.0% < 2%"
    )
    assert slide_verdict(table(38, 2)).reason.startswith("not significantly above, nor below, the thresholds")
    assert slide_verdict(table(95, 5), COUNTING).reason == "5 cells with P(blast) >= 0.95"


def test_insufficient_slide_gives_no_fraction_and_needs_review():
    for cells in (table(3, 2), table(0, 0)):
        v = slide_verdict(cells)
        assert v.verdict == "insufficient" and v.needs_review
        assert v.blast_fraction is None and v.ci_low is None and v.ci_high is None
        assert "cells" in v.review_reasons[0] and v.reason.endswith("< 10")


def test_subtype_hint_needs_enough_blasts():
    assert slide_verdict(table(0, 12)).predominant_subtype == "Pre-B"
    assert slide_verdict(table(0, 12), VerdictRules(subtype_min_blasts=20)).predominant_subtype == ""


def test_too_few_usable_fields_is_insufficient():
    v = slide_verdict(table(100, 0), VerdictRules(min_fields=3), usable_fields=2)
    assert v.verdict == "insufficient" and v.reason == "2 usable fields < 3" and v.blast_fraction is None
    assert v.needs_review and "usable fields" in v.review_reasons[0]
    assert slide_verdict(table(100, 0), VerdictRules(min_fields=3), usable_fields=3).verdict == "negative"


def test_cells_are_counted_by_their_call_as_cells_csv_has_it():
    """The call of each cell (``cell_type``, from the unrounded probabilities) is what the verdict counts, even
    where the 4-decimal probabilities of cells.csv tie or round the other way."""
    cells = table(99, 0)
    cells.loc[0, TYPE_COLUMNS] = 0.0
    cells.loc[0, ["p_blast", "p_lymphocyte"]] = 0.5  # rounded to a tie that argmax would give to blast
    cells.loc[0, "cell_type"] = "lymphocyte"
    v = slide_verdict(cells)
    assert v.n_blasts == 0 and v.differential["lymphocyte"] == 1 and v.differential["blast"] == 0


@pytest.mark.parametrize("n, blasts, confident", [(201, 20, 4), (401, 40, 8), (1001, 100, 20)])
def test_a_value_below_its_threshold_never_reads_as_at_it(n, blasts, confident):
    """9.95 % of blasts on a negative slide reads 9.9 % < 10 %, not 10.0 % < 10 % (rounded down where rounding
    would reach the threshold), in the reason and wherever the blast fraction is shown."""
    from leukoscan.config import VerdictRules
    from leukoscan.numbers import percent
    from leukoscan.verdict import verdict_reason

    rules = VerdictRules(suspect_fraction=0.10, suspect_confident_fraction=0.02)  # whatever config's are
    reason = verdict_reason("negative", n, blasts, confident, rules)
    assert "9.9% < 10%" in reason and "1.9% < 2%" in reason, reason
    assert percent(blasts / n, below=0.1) == "9.9%" and percent(blasts / n) == "10.0%"
    assert percent(0.1, below=0.1) == "10.0%" and percent(0.0996, below=0.2) == "10.0%" and percent(None) == "–"
