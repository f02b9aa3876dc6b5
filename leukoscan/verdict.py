"""From per-cell probabilities to image calls and a slide-level screening verdict."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from leukoscan.cells import BLAST, CELL_TYPES, NOT_WHITE, SUBTYPE_LABELS, SUBTYPES, TYPE_LABELS
from leukoscan.config import SETTINGS, Z95, VerdictRules
from leukoscan.numbers import percent
from leukoscan.records import SUBTYPE_COLUMNS, TYPE_COLUMNS, SlideCall, Verdict


def wilson(k, n, z: float = Z95):
    """Wilson score 95 % interval of a binomial proportion k/n ((0, 1) when n == 0); numbers or arrays."""
    k, n = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    safe = np.maximum(n, 1)
    p = k / safe
    denom = 1 + z * z / safe
    centre = (p + z * z / (2 * safe)) / denom
    half = z * np.sqrt(p * (1 - p) / safe + z * z / (4 * safe * safe)) / denom
    low, high = (
        np.where(n > 0, np.maximum(0.0, centre - half), 0.0),
        np.where(n > 0, np.minimum(1.0, centre + half), 1.0),
    )
    return (float(low), float(high)) if low.ndim == 0 else (low, high)


class RuleTest(NamedTuple):
    """One share rule on counts: what it measures, the words of the value ``negative`` compares, its 95 %
    lower bound (``suspected`` when it reaches the threshold), that value, and the threshold."""

    what: str
    words: str
    low: object
    value: object
    threshold: float


def rule_tests(n, k, c, rules: VerdictRules) -> list[RuleTest]:
    """The share rules that are on, on counts (numbers or arrays of slides): the blast fraction (``k`` of
    ``n``; its ``negative_z`` upper bound) and the confident-blast share (``c`` of ``n``; its estimate)."""
    tests = []
    if rules.suspect_fraction is not None:
        z = rules.negative_z
        words = "the " if z == 0 else "upper bound of the " if z == Z95 else f"{z:g}-z upper bound of the "
        tests.append(RuleTest("blast fraction", words, wilson(k, n)[0], wilson(k, n, z)[1], rules.suspect_fraction))
    if rules.suspect_confident_fraction is not None:
        tests.append(
            RuleTest(
                f"share of cells with P(blast) >= {rules.confident_blast_p}",
                "the ",
                wilson(c, n)[0],
                np.asarray(c) / np.maximum(n, 1),
                rules.suspect_confident_fraction,
            )
        )
    return tests


def verdict_of(n_cells, n_blasts, n_confident, rules: VerdictRules = SETTINGS.verdict):
    """The verdict rules on counts (numbers or arrays of slides; ``n_cells``: white cells, ``NOT_WHITE`` aside),
    as ``VerdictRules`` describes them:
    ``insufficient`` below ``min_cells``; ``suspected`` when a Wilson 95 % lower bound reaches its threshold
    (``rule_tests``: the blast fraction's ``suspect_fraction``, the confident-blast share's
    ``suspect_confident_fraction``) or ``suspect_confident_blasts`` cells are confident blasts; ``negative``
    when the blast fraction's ``negative_z`` upper bound and the confident-blast share are below their
    thresholds; ``indeterminate`` otherwise."""
    n, k, c = (np.asarray(v) for v in (n_cells, n_blasts, n_confident))
    tests = rule_tests(n, k, c, rules)
    count = np.inf if rules.suspect_confident_blasts is None else rules.suspect_confident_blasts
    suspected, negative = c >= count, c < count
    for test in tests:
        suspected, negative = suspected | (test.low >= test.threshold), negative & (test.value < test.threshold)
    out = np.where(
        n < rules.min_cells,
        Verdict.INSUFFICIENT.value,
        np.where(
            suspected,
            Verdict.SUSPECTED.value,
            np.where(negative, Verdict.NEGATIVE.value, Verdict.INDETERMINATE.value),
        ),
    )
    return Verdict(str(out)) if out.ndim == 0 else out


def image_calls(cells: pd.DataFrame) -> pd.DataFrame:
    """Per image in ``cells``: ``n_white_cells`` (``NOT_WHITE`` aside), ``n_blasts``, ``blast_fraction`` (of
    the white cells; empty without any), the cells' mean type probabilities (``p_<type>``; ``p_blast`` is the
    field's mean P(blast)) and ``label``, the type of highest mean probability. One row per image that has
    cells, indexed by image name."""
    groups = cells.groupby("image", sort=False)
    mean = groups[TYPE_COLUMNS].mean()
    labels = [TYPE_LABELS[i] for i in mean.to_numpy().argmax(axis=1)] if len(mean) else []
    mean.insert(0, "label", pd.Series(labels, index=mean.index, dtype=object))
    counts = (
        pd.DataFrame({"white": ~cells.cell_type.isin(NOT_WHITE), "blast": cells.cell_type.eq("blast")})
        .groupby(cells.image, sort=False)
        .sum()
        .reindex(mean.index)
        .astype(int)
    )
    mean.insert(0, "blast_fraction", (counts.blast / counts.white.where(counts.white > 0)).astype(float))
    mean.insert(0, "n_blasts", counts.blast)
    mean.insert(0, "n_white_cells", counts.white)
    return mean


def slide_verdict(
    cells: pd.DataFrame,
    rules: VerdictRules = SETTINGS.verdict,
    stain_z: float | None = None,
    usable_fields: int | None = None,
) -> SlideCall:
    """What the rules say of one slide's ``cells`` table (``cell_type``, ``p_<type>``, subtype columns);
    ``insufficient`` also with fewer than ``rules.min_fields`` usable fields (when ``usable_fields`` is given)."""
    probs = cells[TYPE_COLUMNS].to_numpy(dtype=float) if len(cells) else np.zeros((0, len(CELL_TYPES)))
    types = cells.cell_type.to_numpy() if len(cells) else np.array([], dtype=object)  # cells.csv's calls, counted
    white = ~np.isin(types, NOT_WHITE)  # the blast fraction's denominator: the white cells of the differential
    n = int(white.sum())
    is_blast = types == "blast"
    blasts = int(is_blast.sum())
    confident = int((white & (probs[:, BLAST] >= rules.confident_blast_p)).sum())
    low, high = wilson(blasts, n)
    uncertain = float((probs.max(axis=1) < rules.uncertain_p).mean()) if len(cells) else 0.0
    verdict = verdict_of(n, blasts, confident, rules)
    few_fields = usable_fields is not None and usable_fields < rules.min_fields
    if few_fields:
        verdict = Verdict.INSUFFICIENT
    suspected = verdict is Verdict.SUSPECTED and blasts >= rules.subtype_min_blasts
    predominant = predominant_subtype(cells.loc[is_blast, SUBTYPE_COLUMNS].to_numpy(dtype=float)) if suspected else ""
    reasons = review_reasons(len(cells), uncertain, stain_z, rules)
    fraction: float | None = blasts / n if n else 0.0
    if verdict is Verdict.INSUFFICIENT:  # too few cells to estimate a fraction: none is given, and a person looks
        fraction = low = high = None
        reasons.insert(
            0,
            f"only {usable_fields} usable fields (a verdict needs at least {rules.min_fields})"
            if few_fields
            else f"only {n} white cells (at least {rules.min_cells} are needed for a verdict)",
        )
    return SlideCall(
        verdict=verdict,
        reason=f"{usable_fields} usable fields < {rules.min_fields}"
        if few_fields
        else verdict_reason(verdict, n, blasts, confident, rules),
        n_cells=len(cells),
        n_white_cells=n,
        n_blasts=blasts,
        blast_fraction=fraction,
        ci_low=low,
        ci_high=high,
        n_confident_blasts=confident,
        predominant_subtype=predominant,
        review_reasons=reasons,
        uncertain_fraction=uncertain,
        differential={t: int((types == t).sum()) for t in CELL_TYPES},
    )


def predominant_subtype(subtypes: np.ndarray) -> str:
    """The blasts' commonest subtype (``subtypes``: their subtype probabilities; ties: the larger summed
    probability)."""
    counts = np.bincount(np.nanargmax(np.nan_to_num(subtypes, nan=-1), axis=1), minlength=len(SUBTYPES))
    return SUBTYPE_LABELS[max(range(len(SUBTYPES)), key=lambda i: (counts[i], np.nansum(subtypes[:, i])))]


def review_reasons(n: int, uncertain: float, stain_z: float | None, rules: VerdictRules) -> list[str]:
    """Why a person should look at the slide whatever its verdict: many uncertain cells, or a stain colour far
    from the training data's."""
    reasons = []
    if n and uncertain > rules.review_uncertain_fraction:
        reasons.append(f"{uncertain:.0%} of cells are uncertain (top probability < {rules.uncertain_p})")
    if stain_z is not None and stain_z > rules.review_stain_z:
        reasons.append(f"stain colour is {stain_z:.1f} SD from the training data")
    return reasons


def verdict_reason(verdict: Verdict, n: int, blasts: int, confident: int, rules: VerdictRules) -> str:
    """The rule that gave ``verdict``, in words (shown in verdict.json, the report and the terminal)."""
    if verdict == Verdict.INSUFFICIENT:
        return f"{n} white cells < {rules.min_cells}"
    tests = rule_tests(n, blasts, confident, rules)
    p, count = rules.confident_blast_p, rules.suspect_confident_blasts
    if verdict == Verdict.SUSPECTED:
        fired = [f"lower bound of the {t.what} {t.low:.1%} >= {t.threshold:.0%}" for t in tests if t.low >= t.threshold]
        fired += [f"{confident} cells with P(blast) >= {p}"] if count is not None and confident >= count else []
        return "; ".join(fired)
    parts = [
        # 9.95 % reads 9.9 % < 10 %, never 10.0 % < 10 %
        f"{t.words}{t.what} {percent(t.value, below=t.threshold)} {'<' if t.value < t.threshold else '>='} "
        f"{t.threshold:.0%}"
        for t in tests
    ]
    parts += [f"{confident} cells with P(blast) >= {p} (< {count})"] if count is not None else []
    return (
        " and ".join(parts)
        if verdict == Verdict.NEGATIVE
        else "not significantly above, nor below, the thresholds: " + "; ".join(parts)
    )
