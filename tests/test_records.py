"""The cell record (leukoscan/cells.py) and the output tables made from it (leukoscan/records.py): columns in the
contract's order, type probabilities summing to 1, the subtype filled for blasts only, labels a user reads."""

import numpy as np

from leukoscan.cells import CELL_TYPES, SUBTYPES, cells, with_probs, with_subtypes
from leukoscan.records import CELL_COLUMNS, SUBTYPE_COLUMNS, TYPE_COLUMNS, cell_records


def classified() -> object:
    det = cells([[1, 2, 11, 12], [20, 20, 40, 44]], [0.9, 0.6])
    probs = np.full((2, len(CELL_TYPES)), 0.01)
    probs[0, CELL_TYPES.index("blast")] = probs[1, CELL_TYPES.index("neutrophil")] = 1
    with_probs(det, probs / probs.sum(axis=1, keepdims=True))
    return with_subtypes(det, [[0.1, 0.7, 0.2]])  # the one blast's subtype probabilities


def test_cell_records_follow_the_contract():
    rows = cell_records("f.png", classified())
    assert [list(r) for r in rows] == [CELL_COLUMNS, CELL_COLUMNS]
    blast, neutrophil = rows
    assert blast["cell_type"] == "blast" and blast["label"] == "Blast (Pre-B)" and blast["subtype"] == SUBTYPES[1]
    assert (
        neutrophil["cell_type"] == "neutrophil" and neutrophil["label"] == "Neutrophil" and neutrophil["subtype"] == ""
    )
    for row in rows:
        assert abs(sum(row[c] for c in TYPE_COLUMNS) - 1) < 1e-3
    assert [blast[c] for c in SUBTYPE_COLUMNS] == [0.1, 0.7, 0.2]
    assert all(neutrophil[c] is None for c in SUBTYPE_COLUMNS)  # given blast: empty for other cells
    assert (blast["x1"], blast["y2"], blast["det_conf"], blast["image"], blast["cell"]) == (1.0, 12.0, 0.9, "f.png", 0)


def test_a_field_without_cells_has_no_records():
    assert cell_records("empty.png", cells(np.zeros((0, 4)))) == []
