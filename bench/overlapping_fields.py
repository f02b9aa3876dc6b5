"""Does the rule that finds fields showing part of the same smear (``quality.overlaps``) find them, and only them?

A slide's fields can overlap: the stage moved by less than a field between two captures. `leukoscan run` counts the
cells seen in both once, in the earlier field (README, quality control). Measured:
- found: two windows of half the side of one image (Taleqani and TXL-PBC fields, the bundled lab photographs; up
  to 100 images a source), the second at a random offset and captured again (5 gray levels brighter, sensor noise
  of SD 2, saved as JPEG at quality 85): whether the pair is found, and its shift to within 2 % of the field, by
  how much of a field the two share;
- the cells: the same on TXL-PBC's test fields with their labelled white cells (a cell is in a window when half its
  box is; its box cut to the window): of the cells in both windows, how many the rule counts once, and how many
  cells in one window alone it takes for another's (``quality.shared_cells``);
- taken for overlaps: every image of the five sources against the up to ``overlap_window`` earlier ones of its
  size, as a slide's fields are, repeats (``quality.repeats``) left out first as `leukoscan run` does: the pairs
  called overlapping are listed by name (look at them: a source may hold two views of one place), each with how
  alike the two are over their shared part at full size (``full_size_correlation``: near 1 for two views of one
  place) and what the shipped detector's cells of the two say (``quality.shared_cells``: counted once, or not
  borne out);
- the cost: seconds per 1,000 pairs of fields compared.

    python bench/overlapping_fields.py [--per-source N]   # writes bench/results/overlapping_fields.{json,md} (~3 min)
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from duplicate_fields import SOURCES  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.config import DATA_ROOT, DETECTOR_WEIGHTS, IMAGE_SUFFIXES, REPO_ROOT, SETTINGS  # noqa: E402
from leukoscan.detect.predict import Detector  # noqa: E402
from leukoscan.images import load_rgb  # noqa: E402
from leukoscan.quality import field_look, look_array, overlaps, repeats, shared_cells  # noqa: E402

FIELDS = {  # sources of whole fields (the others are single cells): where to cut overlapping windows from
    "taleqani": DATA_ROOT / "all-taleqani/Original",
    "txl-pbc": DATA_ROOT / "txl-pbc/images",
    "lab photographs": REPO_ROOT / "datasets/samples",
}
BANDS = ((0.0, 0.15), (0.15, 0.25), (0.25, 0.4), (0.4, 0.6), (0.6, 0.9))  # share of a field the windows share


def recaptured(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``rgb`` captured again: a little brighter, with sensor noise, saved as JPEG."""
    again = np.clip(rgb.astype(np.float32) + 5 + rng.normal(0, 2, rgb.shape), 0, 255).astype(np.uint8)
    return cv2.imdecode(cv2.imencode(".jpg", again, [cv2.IMWRITE_JPEG_QUALITY, 85])[1], cv2.IMREAD_COLOR)


def window_pair(shape: tuple[int, int], rng: np.random.Generator) -> tuple[tuple[int, int], tuple[int, int], float]:
    """Two windows of half the side of an image of ``shape`` (h, w): their corners and the share of a window
    they share (drawn evenly between nothing and 0.9)."""
    h, w = shape
    fh, fw = h // 2, w // 2
    share = rng.uniform(0, 0.9)
    # split the shared share between the axes at random, as a stage moved in any direction
    sx = share ** rng.uniform(0.2, 0.8)
    sy = share / sx
    dx, dy = round((1 - sx) * fw) * rng.choice([-1, 1]), round((1 - sy) * fh) * rng.choice([-1, 1])
    ax, ay = rng.integers(0, w - fw - abs(dx) + 1), rng.integers(0, h - fh - abs(dy) + 1)
    a = (ax + max(0, -dx), ay + max(0, -dy))
    b = (a[0] + dx, a[1] + dy)
    return a, b, (1 - abs(dx) / fw) * (1 - abs(dy) / fh)


def found_pairs(files: list[Path], rng: np.random.Generator) -> list[dict]:
    """Each image's two windows (``window_pair``, the second ``recaptured``): the share, whether found, the shift."""
    rows = []
    for f in files:
        rgb = load_rgb(f)
        (ax, ay), (bx, by), share = window_pair(rgb.shape[:2], rng)
        fh, fw = rgb.shape[0] // 2, rgb.shape[1] // 2
        a, b = rgb[ay : ay + fh, ax : ax + fw], recaptured(rgb[by : by + fh, bx : bx + fw], rng)
        found = overlaps([look_array(field_look(a)), look_array(field_look(b))])
        right = bool(found) and abs(found[0][2] - (bx - ax) / fw) <= 0.02 and abs(found[0][3] - (by - ay) / fh) <= 0.02
        rows.append({"share": round(float(share), 4), "found": bool(found), "right": bool(right)})
    return rows


def labelled_cells(image: Path) -> np.ndarray:
    """TXL-PBC's white-cell boxes (class 0) of ``image`` in its pixels (N x 4 xyxy)."""
    label = image.parent.parent.parent / "labels" / image.parent.name / f"{image.stem}.txt"
    rows = np.loadtxt(label, ndmin=2) if label.is_file() and label.stat().st_size else np.zeros((0, 5))
    h, w = load_rgb(image).shape[:2]
    wbc = rows[rows[:, 0] == 0, 1:] * [w, h, w, h]
    return np.column_stack([wbc[:, :2] - wbc[:, 2:] / 2, wbc[:, :2] + wbc[:, 2:] / 2])


def in_window(boxes: np.ndarray, corner: tuple[int, int], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Which cells a window holds (half a box or more inside it) and their boxes cut to it, in its pixels."""
    (x, y), (w, h) = corner, size
    cut = np.clip(boxes - [x, y, x, y], 0, [w, h, w, h])
    area = lambda b: np.prod(np.maximum(b[:, 2:] - b[:, :2], 0), axis=1)  # noqa: E731
    held = area(cut) >= 0.5 * np.maximum(area(boxes), 1e-9)
    return held, cut[held]


def cells_counted(files: list[Path], rng: np.random.Generator) -> dict:
    """On labelled fields, two overlapping windows each: the cells in both, and how the rule counts them."""
    both = once = merged = pairs = found = disagree = 0
    for f in files:
        boxes = labelled_cells(f)
        rgb = load_rgb(f)
        a, b, share = window_pair(rgb.shape[:2], rng)
        if share < SETTINGS.quality.overlap_min_share:
            continue
        fh, fw = rgb.shape[0] // 2, rgb.shape[1] // 2
        held_a, cells_a = in_window(boxes, a, (fw, fh))
        held_b, cells_b = in_window(boxes, b, (fw, fh))
        pairs += 1
        shared = (held_a & held_b)[held_b]  # of window b's cells, those window a holds too
        both += int(shared.sum())
        look_a = look_array(field_look(rgb[a[1] : a[1] + fh, a[0] : a[0] + fw]))
        look_b = look_array(field_look(recaptured(rgb[b[1] : b[1] + fh, b[0] : b[0] + fw], rng)))
        if not (hit := overlaps([look_a, look_b])):
            continue
        found += 1
        same = shared_cells(cells_b, cells_a, (hit[0][2] * fw, hit[0][3] * fh), (fw, fh))
        if same is None:
            disagree += 1
            continue
        once += int((same & shared).sum())
        merged += int((same & ~shared).sum())
    return {
        "pairs": pairs,
        "pairs_found": found,
        "cells_disagree": disagree,
        "cells_in_both": both,
        "counted_once": once,
        "merged_wrongly": merged,
    }


def taken(files: list[Path]) -> tuple[list[tuple[Path, Path, float, float]], int, float]:
    """Every image against the earlier ones of its size (repeats left out first): the pairs called overlapping
    (later, earlier, shift); the pairs compared; the seconds that took."""
    by_size: dict[tuple[int, ...], list[tuple[Path, np.ndarray]]] = {}
    for f in files:
        rgb = load_rgb(f)
        by_size.setdefault(rgb.shape[:2], []).append((f, look_array(field_look(rgb))))
    called, compared, seconds = [], 0, 0.0
    window = SETTINGS.quality.overlap_window
    for fields in by_size.values():
        kept = [f for f, first in zip(fields, repeats([look for _, look in fields])) if first is None]
        compared += sum(min(i, window) for i in range(len(kept)))
        start = time.perf_counter()
        pairs = overlaps([look for _, look in kept])
        seconds += time.perf_counter() - start
        called += [(kept[i][0], kept[j][0], dx, dy) for i, j, dx, dy in pairs]
    return called, compared, seconds


def full_size_correlation(pair: tuple[Path, Path, float, float], search: int = 6) -> float:
    """How alike two fields called overlapping are over their shared part at full size: the best correlation of
    their gray levels less a blur of 8 px (the look's detail, at every pixel), the shift moved by up to ``search``
    px either way (the look places it to a quarter of a grid point)."""
    later, earlier, dx, dy = pair
    a, b = (cv2.cvtColor(load_rgb(p), cv2.COLOR_RGB2GRAY).astype(np.float32) for p in (later, earlier))
    a, b = (g - cv2.GaussianBlur(g, (0, 0), 8) for g in (a, b))
    h, w = a.shape
    sx, sy = round(dx * w), round(dy * h)
    best = -1.0
    for ey in range(-search, search + 1):
        for ex in range(-search, search + 1):
            x, y = sx + ex, sy + ey  # a point (u, v) of the later field at (u + x, v + y) of the earlier one
            u = a[max(0, -y) + search : h - max(0, y) - search, max(0, -x) + search : w - max(0, x) - search]
            v = b[max(0, y) + search : h + min(0, y) - search, max(0, x) + search : w + min(0, x) - search]
            if u.size < 100 or u.shape != v.shape:
                continue
            u, v = u - u.mean(), v - v.mean()
            best = max(best, float((u * v).sum() / max(np.sqrt((u * u).sum() * (v * v).sum()), 1e-9)))
    return best


def cells_say(detector, pair: tuple[Path, Path, float, float]) -> str:
    """What the detector's cells of a pair called overlapping say (``shared_cells``): how many of the later
    field's cells are counted once, or that they do not bear the overlap out."""
    later, earlier, dx, dy = pair
    images = [load_rgb(later), load_rgb(earlier)]
    cell_px = detector.estimate_cell_px(images)
    mine, theirs = (d.xyxy for d in detector.detect(images, cell_px))
    h, w = images[0].shape[:2]
    same = shared_cells(mine, theirs, (dx * w, dy * h), (w, h))
    if same is None:
        return "cells disagree"
    return f"{int(same.sum())} of {len(mine)} cells counted once"


def images_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-source", type=int, help="images of each source compared as a slide (default: all)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    found = {}
    for name, folder in FIELDS.items():
        files = images_of(folder)
        if not files:
            sys.exit(f"no images in {folder}: this benchmark needs ../shared/datasets")
        found[name] = found_pairs(random.Random(0).sample(files, min(100, len(files))), rng)
    test = images_of(DATA_ROOT / "txl-pbc/images/test")
    cells = cells_counted(test, rng)
    runtime.setup()
    detector = Detector(DETECTOR_WEIGHTS, "cpu")
    overlapping, compared, seconds = {}, 0, 0.0
    for name, folder in SOURCES.items():
        files = images_of(DATA_ROOT / folder)
        n = len(files) if args.per_source is None else min(args.per_source, len(files))
        called, pairs, took = taken(sorted(random.Random(0).sample(files, n)))
        said = [cells_say(detector, pair) for pair in called]
        alike = [full_size_correlation(pair) for pair in called]
        overlapping[name] = {
            "images": n,
            "pairs_compared": pairs,
            "called": [
                f"{a.parent.name}/{a.name} ~ {b.parent.name}/{b.name} (shift {dx:+.2f}, {dy:+.2f}; full-size "
                f"correlation {r:.2f}): {what}"
                for (a, b, dx, dy), what, r in zip(called, said, alike)
            ],
            "full_size_correlation_below_0.8": [what for what, r in zip(said, alike) if r < 0.8],
            "cells_disagree": sum(w == "cells disagree" for w in said),
            "pairs_counting_once": sum(w != "cells disagree" and not w.startswith("0 of") for w in said),
            "cells_counted_once": sum(int(w.split()[0]) for w in said if w != "cells disagree"),
        }
        compared, seconds = compared + pairs, seconds + took
    q = SETTINGS.quality
    header = "| source | pairs | " + " | ".join(f"{lo:.2f}-{hi:.2f} shared" for lo, hi in BANDS) + " |"
    rows = [header, "|---|---|" + "---|" * len(BANDS)]
    for name, pairs in found.items():
        shares = []
        for lo, hi in BANDS:
            band = [p for p in pairs if lo <= p["share"] < hi]
            right = sum(p["right"] for p in band)
            shares.append(
                f"{right}/{len(band)}"
                + (
                    f" (+{sum(p['found'] for p in band) - right} off)"
                    if any(p["found"] and not p["right"] for p in band)
                    else ""
                )
            )
        rows.append(f"| {name} | {len(pairs)} | " + " | ".join(shares) + " |")
    taken_rows = [
        "| source | images | pairs compared | called overlapping | full-size correlation < 0.8 (cells counted once "
        "in them) | their cells disagree | pairs with cells counted once | cells counted once |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {n} | {r['images']} | {r['pairs_compared']} | {len(r['called'])} | "
            f"{len(r['full_size_correlation_below_0.8'])} "
            f"({sum(int(w.split()[0]) for w in r['full_size_correlation_below_0.8'] if w != 'cells disagree')}) | "
            f"{r['cells_disagree']} | {r['pairs_counting_once']} | {r['cells_counted_once']} |"
            for n, r in overlapping.items()
        ),
    ]
    listed = [f"- {n}: {p}" for n, r in overlapping.items() for p in r["called"]]
    markdown = "\n".join(
        [
            f"Fields that overlap, by `quality.overlaps` (sharing >= {q.overlap_min_share} of a field, detail "
            f"correlation >= {q.overlap_min_corr} over the shared part on a {q.look_side} x {q.look_side} grid).",
            "",
            "Found, with the shift within 2 % of the field (two windows of half the side of one image, the second "
            "captured again; found at a wrong shift in brackets), by the share of a field the two share:",
            "",
            *rows,
            "",
            f"Cells (TXL-PBC test fields, their labelled white cells; {cells['pairs']} pairs of windows sharing >= "
            f"{q.overlap_min_share}, {cells['pairs_found']} found, the cells of {cells['cells_disagree']} of them "
            f"disagreeing): {cells['cells_in_both']} cells in both windows, "
            f"{cells['counted_once']} counted once; {cells['merged_wrongly']} cells of one window alone taken for "
            "another's.",
            "",
            f"Taken for overlapping: every image of each source against the up to {q.overlap_window} earlier ones "
            "of its size (as a slide's fields), repeats left out first; then the shipped detector's cells of each "
            "pair (`quality.shared_cells`): where fewer than half of the cells inside the shared part have their "
            "partner, the cells disagree and none is left out:",
            "",
            *taken_rows,
            "",
            *(listed or ["- none"]),
            "",
            f"Cost: {1000 * seconds / max(compared, 1):.3f} s per 1,000 pairs compared ({compared} pairs, "
            f"{seconds:.1f} s).",
        ]
    )
    save(
        "overlapping_fields",
        {
            "rule": {
                k: getattr(q, k) for k in ("look_side", "overlap_min_share", "overlap_min_corr", "overlap_window")
            },
            "found": found,
            "cells": cells,
            "taken": overlapping,
            "seconds_per_1000_pairs": round(1000 * seconds / max(compared, 1), 4),
        },
        markdown,
    )


if __name__ == "__main__":
    main()
