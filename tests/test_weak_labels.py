"""Cleaning Taleqani's weak labels: only confident granulocyte calls move a weak cell."""

import numpy as np
import pandas as pd
import pytest

from leukoscan.cells import CELL_TYPES
from leukoscan.classify.weak import apply_relabels, clean_weak_labels, cleaning_summary, relabel_table


def probs(kind, p):
    row = np.full(len(CELL_TYPES), (1 - p) / (len(CELL_TYPES) - 1))
    row[CELL_TYPES.index(kind)] = p
    return row


def test_weak_cells_called_granulocytes_are_relabelled():
    cells = pd.DataFrame(
        {
            "crop": [f"c{i}.png" for i in range(7)],
            "type": ["blast", "blast", "blast", "lymphocyte", "lymphocyte", "neutrophil", "blast"],
            "subtype": ["pre_b", "pro_b", "pre_b", "", "", "", "early_pre_b"],
            "weak": [True, True, True, True, True, False, True],
        }
    )
    p = np.stack(
        [
            probs("neutrophil", 0.95),  # an ALL field's neutrophil: relabelled, its subtype cleared
            probs("neutrophil", 0.6),  # not confident: stays a blast
            probs("other", 0.99),  # the domain gap talking (never taken)
            probs("eosinophil", 0.93),  # a Benign field's eosinophil: relabelled
            probs("monocyte", 0.99),  # monocyte calls are not taken: stays lymphocyte
            probs("blast", 0.99),  # not weak: never touched
            probs("basophil", 0.91),
        ]
    )
    out = clean_weak_labels(cells, p, confident=0.9)
    assert out.type.tolist() == ["neutrophil", "blast", "blast", "eosinophil", "lymphocyte", "neutrophil", "basophil"]
    assert out.subtype.tolist() == ["", "pro_b", "pre_b", "", "", "", ""]
    assert out.original_type.tolist() == cells.type.tolist()
    assert cells.type.tolist()[0] == "blast"  # the input is not changed
    summary = cleaning_summary(out)
    assert summary == {
        "weak_cells": 6,
        "relabelled": 3,
        "moves": {"blast -> basophil": 1, "blast -> neutrophil": 1, "lymphocyte -> eosinophil": 1},
    }


def test_a_cleaning_is_kept_as_a_small_table_that_redoes_it_without_its_model():
    """``relabel_table``: the relabelled crops and their new type (what is committed beside the weights);
    ``apply_relabels`` makes the same cleaned table from the cell dataset alone, and refuses another build's."""
    cells = pd.DataFrame(
        {
            "crop": ["a.png", "b.png", "c.png"],
            "type": ["blast", "lymphocyte", "blast"],
            "subtype": ["pre_b", "", "pro_b"],
            "weak": [True, True, True],
        }
    )
    cleaned = clean_weak_labels(
        cells, np.stack([probs("neutrophil", 0.95), probs("blast", 0.9), probs("basophil", 0.97)]), confident=0.9
    )
    table = relabel_table(cleaned)
    assert table.to_dict("records") == [
        {"crop": "a.png", "original_type": "blast", "type": "neutrophil"},
        {"crop": "c.png", "original_type": "blast", "type": "basophil"},
    ]
    pd.testing.assert_frame_equal(apply_relabels(cells, table), cleaned)
    with pytest.raises(ValueError, match="not in this cell dataset"):
        apply_relabels(cells[cells.crop != "c.png"], table)


def test_self_training_keeps_a_teachers_confident_normal_calls_only():
    """``pseudo_labels``: unlabelled cells the teacher calls one normal white-cell type with confidence join
    training with that type; its blast and ``other`` calls, and unsure cells, are left out."""
    from leukoscan.classify.weak import pseudo_labels

    cells = pd.DataFrame({"crop": [f"w{i}.png" for i in range(5)], "type": [""] * 5})
    p = np.stack(
        [
            probs("neutrophil", 0.97),
            probs("blast", 0.99),  # what the student must unlearn on another lab, never taught
            probs("lymphocyte", 0.7),  # unsure
            probs("other", 0.99),
            probs("monocyte", 0.92),
        ]
    )
    out = pseudo_labels(cells, p, confident=0.9)
    assert out.crop.tolist() == ["w0.png", "w4.png"] and out.type.tolist() == ["neutrophil", "monocyte"]
    assert (out.cleaning == "pseudo").all() and cells.type.eq("").all()


def test_cells_known_to_be_normal_get_the_teachers_best_normal_type():
    """``known_normal``: a normal donors' lab; a cell the teacher calls a blast is kept with its most likely
    normal type (the teacher's blast probability set aside), never left out for being called a blast."""
    from leukoscan.classify.weak import pseudo_labels

    cells = pd.DataFrame({"crop": ["a.png", "b.png", "c.png"], "type": [""] * 3})
    blastish = np.full(len(CELL_TYPES), 0.01)
    blastish[CELL_TYPES.index("blast")], blastish[CELL_TYPES.index("lymphocyte")] = 0.8, 0.13
    even = np.full(len(CELL_TYPES), 1 / len(CELL_TYPES))  # no normal type stands out: left out
    # an erythroblast is not a white cell: a normal donor's white cell called one takes its next type
    nucleated_red = np.full(len(CELL_TYPES), 0.01)
    nucleated_red[CELL_TYPES.index("erythroblast")], nucleated_red[CELL_TYPES.index("lymphocyte")] = 0.7, 0.22
    p = np.stack([blastish / blastish.sum(), probs("neutrophil", 0.95), even, nucleated_red / nucleated_red.sum()])
    cells = pd.DataFrame({"crop": ["a.png", "b.png", "c.png", "d.png"], "type": [""] * 4})
    out = pseudo_labels(cells, p, confident=0.6, known_normal=True)
    assert out.crop.tolist() == ["a.png", "b.png", "d.png"]
    assert out.type.tolist() == ["lymphocyte", "neutrophil", "lymphocyte"]
    unknown = pseudo_labels(cells, p, confident=0.6)  # unknown cells: blast calls out, an erythroblast kept
    assert unknown.crop.tolist() == ["b.png", "d.png"] and unknown.type.tolist() == ["neutrophil", "erythroblast"]


def test_a_cleaned_table_must_cover_the_cell_dataset_it_is_trained_with(tmp_path):
    """`train-cells --cleaned` from another build would leave cells without a type (they would vanish from
    training without a word): refused, as a table without the columns is."""
    from leukoscan.classify.train import training_cells
    from leukoscan.datasets.cells import CELL_COLUMNS

    cells = pd.DataFrame({c: ["x"] * 3 for c in CELL_COLUMNS}).assign(crop=["a.png", "b.png", "c.png"], weak=False)
    cells.to_csv(tmp_path / "cells.csv", index=False)
    pd.DataFrame({"crop": ["a.png", "b.png", "c.png"], "type": ["blast"] * 3}).to_csv(tmp_path / "all.csv", index=False)
    assert training_cells(tmp_path, tmp_path / "all.csv", None)[0].type.tolist() == ["blast"] * 3
    pd.DataFrame({"crop": ["a.png"], "type": ["blast"]}).to_csv(tmp_path / "part.csv", index=False)
    with pytest.raises(ValueError, match="leaves 2 of the 3 cells"):
        training_cells(tmp_path, tmp_path / "part.csv", None)
    pd.DataFrame({"file": ["a.png"]}).to_csv(tmp_path / "other.csv", index=False)
    with pytest.raises(ValueError, match="not a table `classify clean` wrote"):
        training_cells(tmp_path, tmp_path / "other.csv", None)
    with pytest.raises(ValueError, match="not a table `classify pseudo-label` wrote"):
        training_cells(tmp_path, None, tmp_path / "other.csv")
