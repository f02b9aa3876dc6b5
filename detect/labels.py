"""Lab label sets: YOLO + COCO export for annotation tools, and validated import of corrected labels.

A label set folder holds ``images/`` (the lab's fields at their own resolution, as PNG: what a reviewer
corrects), ``labels/`` (YOLO txt; COCO and YOLO boxes are in those images' pixels), ``train.txt`` /
``val.txt`` (a deterministic held-out split), ``data.yaml``, ``annotations.coco.json`` and ``cell_px.json``
(each field's white-cell diameter in its pixels: ``tile_labset`` scales the fields from it to the
detector's training scale when it cuts the training tiles). Lists and data.yaml hold paths relative to
the folder, so a label set can be moved or copied to another machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Hashable
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from leukoscan.cells import CELL_TYPES, cells
from leukoscan.datasets.build import DETECT_NAMES, read_yolo, yolo_lines
from leukoscan.images import to_bgr

COCO_CATEGORY = {"id": 1, "name": "white_cell", "supercategory": "cell"}
CLASS_NAMES = {"white_cell", "wbc", "white blood cell", "leukocyte", "0"}  # and the cell types of `run --export coco`


class LabelError(ValueError):
    """Problems found in imported labels; ``problems`` lists every one (one line each)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the labels:\n" + "\n".join(f"  - {p}" for p in problems))


CELL_PX = "cell_px.json"  # {image name: white-cell diameter in its pixels}, written by ``detect prelabel``
# {label file name: sha256 of the pre-labels written there}, written by ``detect prelabel``; a label file whose
# text still hashes so has not been reviewed (``import-labels`` empties it: every image is then reviewed)
PRELABELS = "prelabels.json"


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def unreviewed(labset: Path, images: list[Path] | None = None) -> list[str]:
    """The label set's images (``images``: of these only) whose labels are still the pre-labels as written."""
    recorded = json.loads((labset / PRELABELS).read_text()) if (labset / PRELABELS).is_file() else {}
    names = {p.stem for p in images} if images is not None else {Path(n).stem for n in recorded}
    out = []
    for label, sha in recorded.items():
        f = labset / "labels" / label
        if Path(label).stem in names and f.is_file() and text_sha256(f.read_text()) == sha:
            out.append(f"{Path(label).stem}.png")
    return sorted(out)


def image_files(labset: Path) -> list[Path]:
    return sorted(p for p in (labset / "images").iterdir() if p.suffix.lower() in {".jpg", ".png"})


def write_list(txt: Path, files: list[Path]) -> None:
    """List ``files`` (inside ``txt``'s folder) as ``./images/...``: Ultralytics reads a line starting with
    ``./`` relative to the list's folder, so the folder can move."""
    txt.write_text("".join(f"./{f.relative_to(txt.parent).as_posix()}\n" for f in files))


def read_list(txt: Path) -> list[Path]:
    """The images of a list written by ``write_list`` (or of an earlier version's absolute paths)."""
    lines = [line.strip() for line in txt.read_text().splitlines() if line.strip()]
    return [txt.parent / line[2:] if line.startswith("./") else Path(line) for line in lines]


def write_data_yaml(folder: Path) -> Path:
    """``folder/data.yaml`` for ``train.txt`` / ``val.txt`` there. No ``path:`` key: Ultralytics then takes
    the yaml's own folder as the root (a relative ``path:`` would be read against its datasets folder)."""
    data = folder / "data.yaml"
    data.write_text(
        f"# paths relative to this file's folder\ntrain: train.txt\nval: val.txt\nnames:\n  0: {DETECT_NAMES[0]}\n"
    )
    return data


def training_scales(labset: Path) -> dict[str, float]:
    """Each image's factor to the detector's training scale (white cells ``TALEQANI_CELL_PX`` wide), by name,
    from ``cell_px.json``; an image without a recorded size is taken as already at that scale (the label
    sets of earlier versions held copies shrunk to it)."""
    from leukoscan.datasets.segment import TALEQANI_CELL_PX

    path = labset / CELL_PX
    cell_px = json.loads(path.read_text()) if path.is_file() else {}
    return {f.name: TALEQANI_CELL_PX / cell_px[f.name] if f.name in cell_px else 1.0 for f in image_files(labset)}


TILE = 224  # the field size the detector was trained on (Taleqani fields, TXL-PBC mosaics ~240 px)


def tile_labset(labset: Path, side: int = TILE, min_visible: float = 0.4) -> Path:
    """Cut the label set's photographs, scaled to the detector's training scale (``training_scales``), into
    ``side`` x ``side`` tiles for training and validation.

    Ultralytics resizes every image's long side to ``imgsz``; only fields of the training field size keep
    their cells at the scale the detector learnt (a whole 1400 px photograph would shrink its cells
    six-fold, a 100 px one would blow them up). Edge tiles are padded with the photograph's background
    colour; a cell cut by a tile border keeps its clipped box in the tile holding its centre and in any
    other tile holding at least ``min_visible`` of it.
    Tiles inherit their photograph's split (``train.txt`` / ``val.txt``), so one photograph is never on
    both sides. Rewritten from the current labels on every call; returns ``tiles/data.yaml``.
    """
    from leukoscan.crops import crop_cells
    from leukoscan.images import load_rgb, rescale

    out = labset / "tiles"
    shutil.rmtree(out, ignore_errors=True)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    scales = training_scales(labset)
    for split in ("train", "val"):
        listed = []
        for photo in read_list(labset / f"{split}.txt"):
            rgb = rescale(load_rgb(photo), scales.get(photo.name, 1.0))  # YOLO boxes are normalised: read at this size
            h, w = rgb.shape[:2]
            boxes = read_yolo(labset / "labels" / f"{photo.stem}.txt", w, h).xyxy
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            grid = [(r, c) for r in range(-(-h // side)) for c in range(-(-w // side))]
            tiles = np.array([(c * side, r * side, (c + 1) * side, (r + 1) * side) for r, c in grid])
            # a tile is a margin-free crop: crop_cells pads past the photograph with its background colour
            for (r, c), (x0, y0, _, _), canvas in zip(grid, tiles, crop_cells(rgb, tiles, size=side, margin=0)):
                clipped = sv.clip_boxes(boxes - [x0, y0, x0, y0], (min(side, w - x0), min(side, h - y0)))
                inside = (clipped[:, 2] - clipped[:, 0]).clip(0) * (clipped[:, 3] - clipped[:, 1]).clip(0)
                centre = (boxes[:, :2] + boxes[:, 2:]) / 2 - [x0, y0]
                home = (centre >= 0).all(axis=1) & (centre < side).all(axis=1)  # every cell kept at least once
                keep = home | (inside >= min_visible * np.maximum(area, 1e-6))
                tile = out / "images" / f"{photo.stem}__r{r}c{c}.png"
                cv2.imwrite(str(tile), to_bgr(canvas))
                (out / "labels" / f"{tile.stem}.txt").write_text(yolo_lines(cells(clipped[keep]), side, side))
                listed.append(tile)
        write_list(out / f"{split}.txt", listed)
    return write_data_yaml(out)


def write_split(labset: Path, val_every: int = 4) -> None:
    """One image in ``val_every`` is held out for the promotion gate: the images already split keep their side
    (photographs added later never move a held-out one into training, so the gate keeps scoring the same
    ones), and each new one, by name, is held out while fewer than one in ``val_every`` are."""
    files = image_files(labset)
    before = {
        f.name: side
        for side in ("train", "val")
        if (labset / f"{side}.txt").is_file()
        for f in read_list(labset / f"{side}.txt")
    }
    val = [f for f in files if before.get(f.name) == "val"]
    n = sum(f.name in before for f in files)
    for f in (f for f in files if f.name not in before):
        n += 1
        if len(val) < n // val_every or (len(val) == 0 and n == len(files)):
            val.append(f)
    val = sorted(val) or files[-1:]
    train = [f for f in files if f not in val] or files
    write_list(labset / "train.txt", train)
    write_list(labset / "val.txt", val)
    write_data_yaml(labset)


def to_coco(labset: Path) -> dict:
    images, annotations = [], []
    for i, f in enumerate(image_files(labset), start=1):
        h, w = _size(f)
        images.append({"id": i, "file_name": f.name, "width": w, "height": h})
        for box in read_yolo(labset / "labels" / f"{f.stem}.txt", w, h).xyxy:
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "iscrowd": 0,
                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    "area": round((x1 - x0) * (y1 - y0), 2),
                }
            )
    return {"images": images, "annotations": annotations, "categories": [COCO_CATEGORY]}


def _size(f: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(f) as im:
        return im.height, im.width


def import_labels(labset: Path, source: Path) -> dict:
    """Replace the label set's YOLO labels with corrected ones from COCO JSON or a folder of YOLO txt files.

    Validates everything first and raises ``LabelError`` listing every problem; nothing is written then.
    """
    files = {f.name: f for f in image_files(labset)}
    boxes: dict[str, sv.Detections] = {}
    problems: list[str] = []
    if source.is_file() and source.suffix.lower() == ".json":
        boxes, problems = read_coco(source, files)
    elif source.is_dir():
        boxes, problems = _read_yolo_dir(source, files)
    else:
        raise LabelError([f"{source}: expected a COCO .json file or a folder of YOLO .txt files"])
    # every image of the label set must be in the corrections (one with no boxes: listed, with none): an image left
    # out would lose its labels without a word
    missing = sorted(set(files) - set(boxes)) if not problems else []
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        problems.append(
            f"{len(missing)} image(s) of the label set are not in {source.name}: {shown} (an image with no white "
            "cells is listed with no boxes: an empty .txt, or a COCO image without annotations)"
        )
    if not problems and not any(len(d) for d in boxes.values()):
        problems.append(f"{source.name} has no white-cell box at all: nothing to train on")
    # a box may overhang an edge by a pixel at the training scale (clipped when written): a few of a large photograph's
    scales = training_scales(labset)
    for name, det in boxes.items():
        h, w = _size(files[name])
        slack = max(1.0, 1 / scales[name])
        for x0, y0, x1, y1 in det.xyxy:
            if x1 <= x0 or y1 <= y0:
                problems.append(f"{name}: empty box ({x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f})")
            elif x0 < -slack or y0 < -slack or x1 > w + slack or y1 > h + slack:
                problems.append(f"{name}: box ({x0:.1f}, {y0:.1f}, {x1:.1f}, {y1:.1f}) lies outside the {w}x{h} image")
    if problems:
        raise LabelError(problems)
    for name, f in files.items():
        det = boxes.get(name, cells(np.zeros((0, 4))))
        h, w = _size(f)
        (labset / "labels" / f"{f.stem}.txt").write_text(yolo_lines(det, w, h))
    write_split(labset)
    (labset / "annotations.coco.json").write_text(json.dumps(to_coco(labset), indent=1))
    (labset / PRELABELS).write_text("{}\n")  # every image's labels are the reviewed ones now
    return {
        "images": len(files),
        "labelled_images": len(boxes),
        "boxes": int(sum(len(d) for d in boxes.values())),
        "images_without_boxes": sorted(n for n in files if len(boxes.get(n, [])) == 0),
    }


def read_coco(path: Path, files: dict[str, Path]) -> tuple[dict[str, sv.Detections], list[str]]:
    """White-cell boxes per image name of ``files`` from a COCO file, scaled to those files' sizes when the
    COCO images are another size (drawn on a resized copy, or on the originals of an earlier version's
    shrunk label set), and every problem found."""
    problems = []
    try:
        coco = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {}, [f"{path.name}: not valid JSON ({e})"]
    if not isinstance(coco, dict) or "images" not in coco or "annotations" not in coco:
        return {}, [f"{path.name}: not a COCO file (needs 'images' and 'annotations')"]
    entries = [coco.get(k) for k in ("images", "annotations", "categories")]
    if not all(isinstance(e, list) and all(isinstance(x, dict) for x in e) for e in entries if e is not None):
        return {}, [f"{path.name}: 'images', 'annotations' and 'categories' must be lists of objects"]
    cats = {c.get("id"): str(c.get("name", "")).lower() for c in coco.get("categories", [])}
    by_id, scale = _coco_images(coco["images"], files, problems)
    found: dict[str, list] = {name: [] for name in by_id.values() if name}
    unknown: dict = {}  # image_id -> annotations that name no COCO image: one line each id
    for a in coco["annotations"]:
        try:
            box = [float(v) for v in a.get("bbox")]
            if len(box) != 4 or not all(map(math.isfinite, box)):
                raise ValueError(f"{len(box)} numbers" if len(box) != 4 else "not finite")
        except (TypeError, ValueError) as e:
            problems.append(f"annotation {a.get('id')}: bbox is not [x, y, width, height] ({e})")
            continue
        image_id = a.get("image_id")
        if not isinstance(image_id, Hashable) or image_id is None or image_id not in by_id:
            unknown[repr(image_id)] = unknown.get(repr(image_id), 0) + 1
            continue
        if by_id[image_id] is None:  # an image already said to be unusable
            continue
        if cats.get(a.get("category_id")) == "other":  # a leukoscan export's non-white-cell (debris, a red cell)
            continue
        if cats.get(a.get("category_id")) not in CLASS_NAMES | set(CELL_TYPES):
            problems.append(
                f"{by_id[a['image_id']]}: annotation {a.get('id')} has unknown class "
                f"{cats.get(a.get('category_id'), a.get('category_id'))!r} (expected white_cell)"
            )
            continue
        x, y, w, h = (v * scale[by_id[a["image_id"]]] for v in box)
        found[by_id[a["image_id"]]].append((x, y, x + w, y + h))
    problems += [f"{n} annotation(s) of image_id {i}, which no COCO image has" for i, n in unknown.items()]
    return {n: cells(np.array(b, dtype=np.float32).reshape(-1, 4)) for n, b in found.items()}, problems


def _unusable(by_id: dict, image_id) -> None:
    """Note a COCO image id whose image cannot be used (its annotations then say nothing more); an id that is
    missing or cannot be a key is left out (its annotations are counted as naming no image)."""
    if image_id is not None and isinstance(image_id, Hashable):
        by_id[image_id] = None


def _coco_images(images: list[dict], files: dict[str, Path], problems: list[str]) -> tuple[dict, dict[str, float]]:
    """COCO image id -> the label set's image name, and each image's scale (boxes drawn on an image of another
    size are scaled to the label set's); what is wrong is added to ``problems``."""
    stems = {Path(n).stem: n for n in files}
    by_id, scale = {}, {}
    for k, im in enumerate(images):
        name = Path(str(im.get("file_name", ""))).name
        name = name if name in files else stems.get(Path(name).stem, name)  # e.g. drawn on the original .jpg
        if name not in files:
            problems.append(f"COCO image {name!r} is not in the label set's images/")
            _unusable(by_id, im.get("id"))  # its annotations: not each a problem of their own
            continue
        try:
            h, w = _size(files[name])
            sx = w / float(im["width"]) if im.get("width") else 1.0
            sy = h / float(im["height"]) if im.get("height") else sx
            if not (math.isfinite(sx) and sx > 0 and abs(sy / sx - 1) <= 0.02):
                raise ValueError(f"{im.get('width')} x {im.get('height')} is not {w} x {h} at one scale")
            by_id[im["id"]], scale[name] = name, sx
        except (KeyError, TypeError, ValueError, ZeroDivisionError, OSError) as e:
            problems.append(f"COCO image {k} ({name}): no usable id, width, height or image ({type(e).__name__}: {e})")
            _unusable(by_id, im.get("id"))
    return by_id, scale


def _read_yolo_dir(folder: Path, files: dict[str, Path]):
    problems, found = [], {}
    stems = {f.stem: name for name, f in files.items()}
    for txt in sorted(folder.glob("*.txt")):
        if txt.name in {"classes.txt", "train.txt", "val.txt"}:
            continue
        if txt.stem not in stems:
            problems.append(f"{txt.name}: no image {txt.stem}.* in the label set")
            continue
        name = stems[txt.stem]
        try:
            h, w = _size(files[name])
            text = txt.read_text()
        except (OSError, ValueError) as e:  # an unreadable image in images/, a .txt that is not text
            problems.append(f"{txt.name}: cannot be read with its image ({type(e).__name__}: {e})")
            continue
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5:
                problems.append(f"{txt.name} line {n}: expected 'class cx cy w h', got {line.strip()!r}")
                continue
            try:
                c, cx, cy, bw, bh = int(float(parts[0])), *map(float, parts[1:])
                if not all(map(math.isfinite, (cx, cy, bw, bh))):
                    raise ValueError
            except (ValueError, OverflowError):
                problems.append(f"{txt.name} line {n}: not numbers: {line.strip()!r}")
                continue
            if c != 0:
                problems.append(f"{txt.name} line {n}: unknown class {c} (only 0 = white_cell)")
                continue
            rows.append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
        found[name] = cells(np.array(rows, dtype=np.float32).reshape(-1, 4))
    if not found and not problems:
        problems.append(f"{folder}: no YOLO .txt label files found")
    return found, problems
