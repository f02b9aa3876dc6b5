"""Stopwatch (leukoscan/timing.py): seconds per named stage, summed over its blocks, even when one raises."""

import time

import pytest

from leukoscan.timing import Stopwatch


def test_stages_sum_over_their_blocks_in_first_use_order():
    watch = Stopwatch()
    for _ in range(2):
        with watch("decode"):
            time.sleep(0.01)
    with pytest.raises(ValueError), watch("detect"):
        raise ValueError
    assert list(watch.seconds) == ["decode", "detect"] and watch.seconds["decode"] >= 0.02
    assert watch.per(2)["decode"] == pytest.approx(watch.seconds["decode"] / 2)
    assert watch.per(1, digits=3)["decode"] == round(watch.seconds["decode"], 3)
