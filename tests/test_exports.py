"""Cell exports for other tools (leukoscan/exports.py): QuPath GeoJSON per field and COCO per slide, built from
a small cells table made with the same record functions a run uses, so boxes, types and scores are known."""

import json

import numpy as np
import pandas as pd
import pytest

from leukoscan.cells import CELL_TYPES, TYPE_LABELS, cells, with_probs, with_subtypes
from leukoscan.config import Export
from leukoscan.exports import field_geojson, formats_kept, slide_coco, write_exports
from leukoscan.overlay import PALETTE
from leukoscan.records import CELL_COLUMNS, SUBTYPE_COLUMNS, TYPE_COLUMNS, cell_records

BLAST, LYMPHOCYTE = CELL_TYPES.index("blast"), CELL_TYPES.index("lymphocyte")


def probs_for(kinds: list[int], p: float) -> np.ndarray:
    rest = (1 - p) / (len(CELL_TYPES) - 1)
    out = np.full((len(kinds), len(CELL_TYPES)), rest)
    out[np.arange(len(kinds)), kinds] = p
    return out


def table() -> pd.DataFrame:
    """Field a.png: a blast (box 10,20-50,70; p 0.8; subtyped pre_b) and a lymphocyte (box 100,110-130,150; p
    0.8; no subtype); field b.png: no cells. Rows as a slide's cells.csv (``cell_records``)."""
    det = cells([[10, 20, 50, 70], [100, 110, 130, 150]], [0.9, 0.6])
    with_probs(det, probs_for([BLAST, LYMPHOCYTE], 0.8))
    with_subtypes(det, [[0.1, 0.7, 0.2]])
    return pd.DataFrame(cell_records("a.png", det) + cell_records("b.png", cells([])), columns=CELL_COLUMNS)


def from_csv(tmp_path, **read) -> pd.DataFrame:
    table().to_csv(tmp_path / "cells.csv", index=False)
    return pd.read_csv(tmp_path / "cells.csv", **read)


LOADERS = {
    "in memory": lambda tmp_path: table(),
    "cells.csv": from_csv,
    "cells.csv as text": lambda tmp_path: from_csv(tmp_path, keep_default_na=False),
}


@pytest.mark.parametrize("loader", LOADERS)
def test_each_cell_is_a_qupath_detection_rectangle_with_its_type_colour_and_probabilities(tmp_path, loader):
    """However the table was read (in memory, or cells.csv with or without NaN parsing): one closed rectangle
    per cell in field pixels, classified by its type's label and overlay colour, measured by its detector
    confidence and every probability; the subtype probabilities only where the cell has them."""
    collection = field_geojson(LOADERS[loader](tmp_path))
    blast, lymphocyte = collection["features"]
    assert collection["type"] == "FeatureCollection" and blast["type"] == "Feature"
    assert blast["geometry"] == {
        "type": "Polygon",
        "coordinates": [[[10.0, 20.0], [50.0, 20.0], [50.0, 70.0], [10.0, 70.0], [10.0, 20.0]]],
    }
    assert lymphocyte["geometry"]["coordinates"][0][2] == [130.0, 150.0]
    props = blast["properties"]
    assert blast["id"] == "a.png#0" and props["objectType"] == "detection" and props["name"] == "0: Blast (Pre-B)"
    assert props["classification"] == {"name": "Blast", "color": [208, 0, 0]}  # the overlay's blast red
    assert lymphocyte["properties"]["classification"] == {
        "name": TYPE_LABELS[LYMPHOCYTE],
        "color": list(PALETTE.colors[LYMPHOCYTE].as_rgb()),
    }
    m = props["measurements"]
    assert list(m) == ["det_conf", *TYPE_COLUMNS, *SUBTYPE_COLUMNS]
    assert m["det_conf"] == pytest.approx(0.9) and m["p_blast"] == pytest.approx(0.8)
    assert m["p_pre_b"] == pytest.approx(0.7)
    assert list(lymphocyte["properties"]["measurements"]) == ["det_conf", *TYPE_COLUMNS]  # no subtype: none given
    assert json.loads(json.dumps(collection, allow_nan=False)) == collection  # strict JSON: no NaN anywhere


def test_coco_has_one_image_per_sized_field_the_cell_types_as_categories_and_xywh_boxes():
    """Images: every field with a size (one with no cells too; an unreadable one, size None, left out), ids from
    1; categories: the cell types in order, ids from 1; each cell an annotation on its field's image, with its
    box as [x, y, width, height], its area, its predicted type and that type's probability as the score."""
    coco = slide_coco(table(), {"a.png": (640, 480), "b.png": (320, 240), "broken.png": None})
    assert coco["images"] == [
        {"id": 1, "file_name": "a.png", "width": 640, "height": 480},
        {"id": 2, "file_name": "b.png", "width": 320, "height": 240},
    ]
    assert [c["name"] for c in coco["categories"]] == list(CELL_TYPES)
    assert [c["id"] for c in coco["categories"]] == list(range(1, len(CELL_TYPES) + 1))
    names = {c["id"]: c["name"] for c in coco["categories"]}
    blast, lymphocyte = coco["annotations"]
    assert [blast["id"], lymphocyte["id"]] == [1, 2] and blast["image_id"] == lymphocyte["image_id"] == 1
    assert blast["bbox"] == [10.0, 20.0, 40.0, 50.0] and blast["area"] == 2000.0
    assert lymphocyte["bbox"] == [100.0, 110.0, 30.0, 40.0] and lymphocyte["area"] == 1200.0
    assert names[blast["category_id"]] == "blast" and names[lymphocyte["category_id"]] == "lymphocyte"
    assert blast["score"] == pytest.approx(0.8) and blast["det_conf"] == pytest.approx(0.9)
    assert (blast["cell"], lymphocyte["cell"], blast["iscrowd"]) == (0, 1, 0)


def test_coco_leaves_out_the_cells_of_a_field_of_unknown_size():
    """COCO needs every image's size: a field with cells but no known size is left out with its cells (the
    others keep their annotations, numbered from 1) instead of failing the slide's export."""
    coco = slide_coco(table(), {"a.png": None, "b.png": (320, 240)})
    assert [im["file_name"] for im in coco["images"]] == ["b.png"] and coco["annotations"] == []
    other = table().assign(image="b.png")
    coco = slide_coco(pd.concat([table(), other]), {"a.png": None, "b.png": (320, 240)})
    assert [a["id"] for a in coco["annotations"]] == [1, 2] and {a["image_id"] for a in coco["annotations"]} == {1}


def test_write_exports_writes_the_formats_asked_one_geojson_per_field_named_by_its_stem(tmp_path):
    """GeoJSON: one file per field, named by the field's output stem, an empty collection for a field without
    cells; COCO: one cells.coco.json per slide; only the formats asked, and the paths written are returned."""
    out, stems, sizes = tmp_path / "slide", {"a.png": "a_png", "b.png": "b"}, {"a.png": (640, 480), "b.png": (8, 8)}
    written = write_exports(out, table(), stems, sizes, (Export.geojson, Export.coco))
    assert written == [out / "geojson" / "a_png.geojson", out / "geojson" / "b.geojson", out / "cells.coco.json"]
    a, b = (json.loads(p.read_text()) for p in written[:2])
    assert [f["id"] for f in a["features"]] == ["a.png#0", "a.png#1"]
    assert b == {"type": "FeatureCollection", "features": []}
    coco = json.loads(written[2].read_text())
    assert len(coco["annotations"]) == 2 and [im["file_name"] for im in coco["images"]] == ["a.png", "b.png"]

    only_coco = write_exports(tmp_path / "coco_only", table(), stems, sizes, (Export.coco,))
    assert only_coco == [tmp_path / "coco_only" / "cells.coco.json"]
    assert not (tmp_path / "coco_only" / "geojson").exists()
    assert write_exports(tmp_path / "none", table(), stems, sizes, ()) == [] and not (tmp_path / "none").exists()


def test_a_run_keeps_current_the_exports_an_earlier_run_wrote(tmp_path):
    """The formats asked, and those an earlier run left in the slide's folder (rewritten, never stale)."""
    assert formats_kept(tmp_path, ()) == ()
    assert formats_kept(tmp_path, (Export.coco,)) == (Export.coco,)
    (tmp_path / "geojson").mkdir()
    assert formats_kept(tmp_path, ()) == ()  # an empty folder is not an export
    (tmp_path / "geojson" / "a.geojson").write_text("{}")
    assert formats_kept(tmp_path, ()) == (Export.geojson,)
    (tmp_path / "cells.coco.json").write_text("{}")
    assert formats_kept(tmp_path, (Export.geojson,)) == (Export.geojson, Export.coco)
