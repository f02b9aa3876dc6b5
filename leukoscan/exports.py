"""A slide's cells for other tools (``leukoscan run --export``): QuPath GeoJSON and COCO.

- ``geojson/<field>.geojson``, one per field (QuPath imports objects into one image at a time: File >
  Import objects, or drag the file onto the open field): a FeatureCollection with one Feature per cell,
  ``objectType: detection``, ``classification: {name, color}`` (the cell type and its overlay colour),
  ``measurements`` (detector confidence and every probability), a rectangle in the field's pixels.
- ``cells.coco.json``, one per slide: COCO with ``images`` (name, width, height), ``categories`` (the cell
  types) and ``annotations`` (box, predicted type, ``score`` = its probability), as pycocotools loads it
  and ``leukoscan detect import-labels`` reads it back as white-cell boxes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from leukoscan import outputs
from leukoscan.cells import CELL_TYPES, TYPE_LABELS
from leukoscan.config import Export
from leukoscan.overlay import PALETTE
from leukoscan.records import SUBTYPE_COLUMNS, TYPE_COLUMNS


def _number(v) -> float | None:
    return None if pd.isna(v) or v == "" else float(v)


def field_geojson(cells: pd.DataFrame) -> dict:
    """QuPath-style FeatureCollection of one field's cells (rows of cells.csv)."""
    features = []
    for c in cells.itertuples(index=False):
        k = CELL_TYPES.index(c.cell_type)
        ring = [[c.x1, c.y1], [c.x2, c.y1], [c.x2, c.y2], [c.x1, c.y2], [c.x1, c.y1]]
        measurements = {"det_conf": float(c.det_conf), **{col: float(getattr(c, col)) for col in TYPE_COLUMNS}}
        measurements.update({col: v for col in SUBTYPE_COLUMNS if (v := _number(getattr(c, col))) is not None})
        features.append(
            {
                "type": "Feature",
                "id": f"{c.image}#{c.cell}",
                "geometry": {"type": "Polygon", "coordinates": [[[float(x), float(y)] for x, y in ring]]},
                "properties": {
                    "objectType": "detection",
                    "name": f"{c.cell}: {c.label}",
                    "classification": {"name": TYPE_LABELS[k], "color": list(PALETTE.colors[k].as_rgb())},
                    "measurements": measurements,
                },
            }
        )
    return {"type": "FeatureCollection", "features": features}


def slide_coco(cells: pd.DataFrame, sizes: dict[str, tuple[int, int] | None]) -> dict:
    """COCO of a slide's cells; ``sizes``: (width, height) of each field by name. COCO needs an image's size:
    the cells of a field whose size is unknown (a file gone since an earlier version screened it) are left out."""
    images = [
        {"id": i + 1, "file_name": name, "width": wh[0], "height": wh[1]}
        for i, (name, wh) in enumerate((n, s) for n, s in sizes.items() if s)
    ]
    ids = {im["file_name"]: im["id"] for im in images}
    annotations = []
    for c in cells.itertuples(index=False):
        if c.image not in ids:
            continue
        w, h = float(c.x2 - c.x1), float(c.y2 - c.y1)
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": ids[c.image],
                "category_id": CELL_TYPES.index(c.cell_type) + 1,
                "bbox": [float(c.x1), float(c.y1), w, h],
                "area": w * h,
                "iscrowd": 0,
                "score": float(getattr(c, f"p_{c.cell_type}")),
                "cell": int(c.cell),
                "det_conf": float(c.det_conf),
            }
        )
    return {
        "info": {"description": "leukoscan cells (predictions)"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": k + 1, "name": t, "supercategory": "white_cell"} for k, t in enumerate(CELL_TYPES)],
    }


def formats_kept(out: Path, requested: tuple[Export, ...]) -> tuple[Export, ...]:
    """The exports a run writes for the slide in ``out``: those ``requested``, and those an earlier run wrote
    there (kept current, so a rerun without ``--export`` never leaves cells of fields screened since)."""
    present = {
        Export.geojson: any((out / "geojson").glob("*.geojson")),
        Export.coco: (out / "cells.coco.json").is_file(),
    }
    return tuple(f for f in Export if f in requested or present[f])


def write_exports(
    out: Path,
    cells: pd.DataFrame,
    stems: dict[str, str],
    sizes: dict[str, tuple[int, int] | None],
    formats: tuple[Export, ...],
) -> list[Path]:
    """Write the ``formats`` of a slide whose output folder is ``out``; ``stems``: each field's output stem."""
    written = []
    if Export.geojson in formats:
        for image, stem in stems.items():
            written.append(
                outputs.write_text(
                    out / "geojson" / f"{stem}.geojson", json.dumps(field_geojson(cells[cells.image == image]))
                )
            )
    if Export.coco in formats:
        written.append(outputs.write_text(out / "cells.coco.json", json.dumps(slide_coco(cells, sizes))))
    return written
