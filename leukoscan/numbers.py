"""How numbers read for people: a value below a threshold never reads as at it (an uncertain cell's 0.597 as
0.60, a negative slide's 9.95 % of blasts as 10.0 %)."""

from __future__ import annotations

import math


def floor2(p: float) -> str:
    """A probability in 2 decimals, rounded down: an uncertain cell (below ``uncertain_p``) never reads as at it."""
    return f"{math.floor(p * 100 + 1e-9) / 100:.2f}"


def percent(value, digits: int = 1, below: float | None = None) -> str:
    """A fraction as a percentage for people, rounded to nearest, or down where that would reach ``below`` (a
    threshold the value is under: 9.95 % under 10 % reads 9.9 %); '–' when there is none (an insufficient
    slide)."""
    if value is None:
        return "–"
    scale = 10 ** (digits + 2)
    if below is not None and value < below and round(float(value) * scale) >= round(below * scale):
        value = math.floor(float(value) * scale) / scale
    return f"{value:.{digits}%}"
