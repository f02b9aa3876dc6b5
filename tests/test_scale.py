"""A slide's scale (leukoscan/scale.py): one shape given or estimated; verdict.json's record round trip."""

import numpy as np

from leukoscan.scale import Scale, shape_key


class CountingDetector:
    def __init__(self):
        self.calls = 0

    def estimate_cell_px(self, images):
        self.calls += 1
        return 31.234


def test_a_given_size_is_every_fields():
    scale = Scale("--cell-size", given_px=40.0)
    assert scale.cell_px(np.zeros((50, 80, 3), np.uint8), detector=None) == 40.0
    assert scale.record() == {"cell_px": 40.0, "source": "--cell-size"}
    assert Scale.from_record(scale.record()) == scale


def test_an_estimated_size_per_field_size_and_a_new_size_estimated_once():
    scale, detector = Scale("estimated", by_field_size={"80x50": 28.0}), CountingDetector()
    assert scale.cell_px(np.zeros((50, 80, 3), np.uint8), detector) == 28.0 and detector.calls == 0
    other = np.zeros((60, 90, 3), np.uint8)
    assert scale.cell_px(other, detector) == scale.cell_px(other, detector) == 31.23 and detector.calls == 1
    assert scale.record() == {"cell_px_by_field_size": {"80x50": 28.0, shape_key(other): 31.23}, "source": "estimated"}
    assert Scale.from_record(scale.record()) == scale


def test_nothing_known_records_as_empty():
    assert Scale().record() == {} and Scale.from_record(None) == Scale() and Scale.from_record({}) == Scale()
