"""``leukoscan data …``: build the training datasets from the public datasets on disk."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer

from leukoscan.cli import NOTHING_PROCESSED, console, fail, finite, show_json, track, user_errors
from leukoscan.config import BUILD_DIR, DATA_ROOT, SETTINGS

app = typer.Typer(
    help="Build the training datasets from the public ones: split (the manifest), detect, classify, fields, cells.",
    no_args_is_help=True,
)


def _manifest(data_root: Path, out: Path) -> pd.DataFrame:
    from leukoscan.datasets.splits import build_manifest, leaks

    tq = data_root / "all-taleqani"
    if not (tq / "Original").is_dir():
        fail(f"{tq / 'Original'} not found (use --data-root)")
    if out.is_dir():
        fail(f"{out} is a folder, not the manifest CSV to write")
    with user_errors():
        df = build_manifest(tq, out, progress=track)
    problems = leaks(df)
    if problems:
        fail(f"split leaks: {problems[:3]}", NOTHING_PROCESSED)
    console.print(
        f"manifest: {out}  ({(df.split != '').sum()} images used, {(df.split == '').sum()} dropped)",
        markup=False,
        soft_wrap=True,
    )
    console.print(df[df.split != ""].groupby(["class_dir", "split"]).size().unstack().to_string())
    return df


@app.command()
def split(
    data_root: Path = typer.Option(DATA_ROOT, help="Folder holding all-taleqani/ and txl-pbc/."),
    out: Path = typer.Option(BUILD_DIR / "manifest.csv", "--out", "-o", help="Split manifest CSV to write."),
) -> None:
    """Deduplicate and split all-taleqani by contiguous file-number blocks; write the manifest."""
    _manifest(data_root, out)


def _build(build, data_root: Path, out: Path, **options) -> None:
    """A dataset built by ``build`` on the Taleqani split manifest (written to ``out/manifest.csv`` first),
    its summary printed."""
    manifest = _manifest(data_root, out / "manifest.csv")
    with user_errors(NOTHING_PROCESSED):  # a field or mask that cannot be read: named
        summary = build(data_root, out, manifest, **options)
    show_json(summary)


@app.command()
def detect(
    data_root: Path = typer.Option(DATA_ROOT, help="Folder holding all-taleqani/ and txl-pbc/."),
    out: Path = typer.Option(BUILD_DIR / "detect", "--out", "-o", help="Output YOLO dataset folder."),
) -> None:
    """Detection dataset: Taleqani boxes from masks (colour segmentation for Pro) plus TXL-PBC WBC boxes."""
    from leukoscan.datasets.build import build_detection

    _build(build_detection, data_root, out)


@app.command()
def classify(
    data_root: Path = typer.Option(DATA_ROOT, help="Folder holding all-taleqani/."),
    out: Path = typer.Option(BUILD_DIR / "classify", "--out", "-o", help="Output crop dataset folder."),
    margin: float = typer.Option(
        SETTINGS.geometry.crop_margin,
        callback=finite,
        min=0.0,
        help="Context around each cell, as a fraction of its size per side.",
    ),
    size: int = typer.Option(SETTINGS.geometry.crop_px, min=8, help="Crop side in pixels."),
) -> None:
    """Classification dataset: one crop per white cell, labelled with the image's class (weak labels)."""
    from leukoscan.datasets.build import build_classification

    _build(build_classification, data_root, out, margin=margin, size=size)


@app.command()
def fields(
    data_root: Path = typer.Option(DATA_ROOT, help="Folder holding all-taleqani/."),
    out: Path = typer.Option(BUILD_DIR / "fields", "--out", "-o", help="Output folder."),
) -> None:
    """Whole-field classification dataset (baseline: one classifier on the whole 224x224 field)."""
    from leukoscan.datasets.build import build_fields

    _build(build_fields, data_root, out)


@app.command()
def cells(
    data_root: Path = typer.Option(
        DATA_ROOT, help="Folder holding pbc/, munich-aml/, zheng-wbc/, all-taleqani/, txl-pbc/."
    ),
    out: Path = typer.Option(BUILD_DIR / "cells", "--out", "-o", help="Output folder (crops/ and cells.csv)."),
    window_cells: float = typer.Option(
        SETTINGS.geometry.window_cells,
        min=1.0,
        max=4.0,
        help="Crop window, in white-cell diameters (a model trained on the crops cuts slides at it: its card).",
    ),
) -> None:
    """Cross-lab cell-type dataset: one crop of one physical scale per white cell, from five sources."""
    from dataclasses import replace

    from leukoscan.datasets.cells import FOLDER, build_cells
    from leukoscan.detect.predict import Detector

    missing = [name for name in FOLDER.values() if not (data_root / name).is_dir()]
    if missing:
        fail(f"{', '.join(missing)} not found under {data_root} (use --data-root)")
    df = build_cells(data_root, out, Detector(device="cpu"), replace(SETTINGS.geometry, window_cells=window_cells))
    console.print(df.groupby(["source", "split"]).size().unstack().to_string())
