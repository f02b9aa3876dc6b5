"""Does the rule that finds the same field given twice (``quality.repeats``) tell it from other fields?

A field copied, saved again in another format or size, or captured twice with the stage unmoved or drifted a little
is counted once by `leukoscan run` (README, quality control). Measured on every image of each source as on a
slide's fields: each image against the earlier ones of its shape, plain and under one camera's shading (the same
vignette on all), should be told apart from different images; the first 100 of each source against themselves
saved again (PNG, JPEG at quality 95, 75 and 50), captured again (Gaussian sensor noise, SD 4 gray levels; the
stage drifted by 1 % or 2 % of the field), at half size (as PNG and as JPEG) and at a quarter size as JPEG should
be found. The files called a repeat are listed by name: a source can hold one picture twice (Taleqani's splits
drop such near duplicates), and the least gray-level difference between two files of a source is 0 where it does.

    python bench/duplicate_fields.py [--per-source N]   # writes bench/results/duplicate_fields.{json,md} (~2 min)
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_io import save  # noqa: E402

from leukoscan.config import DATA_ROOT, IMAGE_SUFFIXES, SETTINGS  # noqa: E402
from leukoscan.images import load_rgb  # noqa: E402
from leukoscan.quality import field_look, look_array, repeats  # noqa: E402

SOURCES = {  # folder under ../shared/datasets: its images (single cells or fields)
    "taleqani": "all-taleqani/Original",
    "pbc": "pbc/images",
    "munich": "munich-aml/images",
    "zheng": "zheng-wbc/images",
    "txl-pbc": "txl-pbc/images",
}
AGAIN = (
    "png",
    "jpeg 95",
    "jpeg 75",
    "jpeg 50",
    "noise 4",
    "drift 1 %",
    "drift 2 %",
    "half size",
    "half size jpeg 75",
    "quarter size jpeg 75",
)


def again(rgb: np.ndarray, how: str, rng: np.random.Generator) -> np.ndarray:
    """``rgb`` saved again as ``how`` says and read back, or captured again (sensor noise)."""
    if how == "noise 4":
        return np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)
    if how.startswith("drift"):  # the stage moved by that share of the field, right and down, before a capture
        h, w = rgb.shape[:2]
        f = float(how.split()[1]) / 100
        shift = np.float32([[1, 0, f * w], [0, 1, f * h]])
        return cv2.warpAffine(rgb, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if how.startswith(("half size", "quarter size")):
        h, w = rgb.shape[:2]
        f = 2 if how.startswith("half") else 4
        small = cv2.resize(rgb, (w // f, h // f), interpolation=cv2.INTER_AREA)
        return again(small, how.split(" size ")[1], rng) if " size " in how else small
    ext, *quality = how.split()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality[0])] if quality else []
    ok, data = cv2.imencode(f".{ext}", rgb[..., ::-1], params)
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


def shaded(rgb: np.ndarray) -> np.ndarray:
    """``rgb`` under a camera's shading: half as bright in the corners as in the centre."""
    h, w = rgb.shape[:2]
    y, x = np.mgrid[:h, :w]
    r = ((x - w / 2) ** 2 + (y - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    return np.clip(rgb * (1 - 0.5 * r)[..., None], 0, 255).astype(np.uint8)


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``b`` is found to repeat ``a``."""
    shapes = [x.shape[1] / x.shape[0] for x in (a, b)]
    return repeats([look_array(field_look(a)), look_array(field_look(b))], shapes) == [None, 0]


def measure(files: list[Path], rng: np.random.Generator) -> dict:
    images = {f: load_rgb(f) for f in files}
    shapes = [rgb.shape[1] / rgb.shape[0] for rgb in images.values()]
    looks = [look_array(field_look(rgb)) for rgb in images.values()]
    called = [
        f"{f.parent.name}/{f.name} ~ {files[first].parent.name}/{files[first].name}"
        for f, first in zip(files, repeats(looks, shapes))
        if first is not None
    ]
    shaded_looks = [look_array(field_look(shaded(rgb))) for rgb in images.values()]
    called_shaded = sum(r is not None for r in repeats(shaded_looks, shapes))
    # the least gray-level difference between two files of one shape (a slide's fields are compared so)
    side = SETTINGS.quality.same_side  # (as repeats compares them)
    grids = np.stack([cv2.resize(g, (side, side), interpolation=cv2.INTER_AREA).ravel() for g in looks])
    ratio = np.log(shapes)
    alike = [np.abs(ratio[:i] - ratio[i]) <= np.log1p(SETTINGS.quality.same_max_shape_diff) for i in range(len(files))]
    least = [float(np.abs(grids[:i][m] - grids[i]).mean(axis=1).min()) for i, m in enumerate(alike) if m.any()]
    found = {
        how: float(np.mean([same(rgb, again(rgb, how, rng)) for rgb in list(images.values())[:100]])) for how in AGAIN
    }
    return {
        "images": len(files),
        "pairs_of_one_shape": int(sum(m.sum() for m in alike)),
        "called_same": len(called),
        "called_same_with_shading": int(called_shaded),
        "called_same_files": called,
        "least_grey_diff_of_different_files": round(min(least), 2) if least else None,
        "found_again": found,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-source", type=int, help="images sampled from each source (default: all)")
    args = parser.parse_args()
    rng, results = np.random.default_rng(0), {}
    for name, folder in SOURCES.items():
        files = sorted(p for p in (DATA_ROOT / folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            sys.exit(f"no images in {DATA_ROOT / folder}: this benchmark needs ../shared/datasets")
        n = len(files) if args.per_source is None else min(args.per_source, len(files))
        results[name] = measure(random.Random(0).sample(files, n), rng)
    q = SETTINGS.quality
    rows = [
        "| source | images | pairs of different files of one shape | files called a repeat of another | with shading "
        "| least gray-level difference | found again: " + ", ".join(AGAIN) + " |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['images']} | {r['pairs_of_one_shape']} | {r['called_same']} | "
            f"{r['called_same_with_shading']} | {r['least_grey_diff_of_different_files']} | "
            + ", ".join(f"{v:.2f}" for v in r["found_again"].values())
            + " |"
        )
    listed = [f"- {name}: {p}" for name, r in results.items() for p in r["called_same_files"]]
    markdown = "\n".join(
        [
            f"The same picture, by `quality.repeats` (mean gray-level difference <= {q.same_max_grey_diff}"
            f" on a {q.same_side} x {q.same_side} grid, and detail correlation >= {q.same_min_texture_corr}); "
            f"{'every image' if args.per_source is None else f'up to {args.per_source} images'} of each source, "
            "each against the earlier ones of its shape "
            "(as a slide's fields):",
            "",
            *rows,
            "",
            "Files called a repeat of another file (look at them: a source may hold one picture twice):",
            "",
            *(listed or ["- none"]),
        ]
    )
    save(
        "duplicate_fields",
        {
            "rule": {k: getattr(q, k) for k in ("same_side", "same_max_grey_diff", "same_min_texture_corr")},
            "sources": results,
        },
        markdown,
    )


if __name__ == "__main__":
    main()
