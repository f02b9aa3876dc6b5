"""``leukoscan doctor``: what is installed, which device runs, which weights and datasets are present."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import typer
from rich.table import Table

from leukoscan.cards import BACKENDS, backend_file, sha256
from leukoscan.config import DATA_ROOT, WEIGHTS_DIR
from leukoscan.progress import console

PACKAGES = ("leukoscan", "torch", "torchvision", "ultralytics", "supervision", "opencv-python", "scikit-image",
            "numpy", "pandas", "typer", "onnxruntime", "openvino")
DATASETS = ("all-taleqani", "pbc", "munich-aml", "zheng-wbc", "txl-pbc", "labs-samples")
REQUIRED_WEIGHTS = ("detector.pt", "classifier.pt", "subtype.pt")


def doctor(
    data_root: Path = typer.Option(DATA_ROOT, help="Folder holding the public datasets."),
    weights_dir: Path = typer.Option(WEIGHTS_DIR, help="Folder holding detector.pt, classifier.pt and subtype.pt."),
) -> None:
    """Check the installation: versions, device, weights (sha256) and dataset paths."""
    import torch

    problems = []
    table = Table(title="leukoscan doctor", show_header=True)
    table.add_column("item")
    table.add_column("value")
    table.add_row("python", platform.python_version())
    for name in PACKAGES:
        try:
            table.add_row(name, version(name))
        except PackageNotFoundError:
            table.add_row(name, "[red]missing[/]")
            problems.append(f"package {name} is not installed")
    table.add_row("cpu threads", f"{torch.get_num_threads()} of {os.cpu_count()} cores")
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available (CPU will be used)"
    table.add_row("cuda", cuda)
    table.add_row("ultralytics config", os.environ.get("YOLO_CONFIG_DIR", "?"))
    for name in REQUIRED_WEIGHTS:
        path = weights_dir / name
        if path.is_file():
            table.add_row(f"weights {name}", f"{sha256(path)[:16]}…  ({path.stat().st_size / 1e6:.1f} MB)")
        else:
            table.add_row(f"weights {name}", "[red]missing[/]")
            problems.append(f"weights {path} not found")
            continue
        exported = []
        for backend in BACKENDS[1:]:
            try:
                backend_file(path, backend)
                exported.append(backend)
            except FileNotFoundError:
                pass
        table.add_row("  exported for --backend", ", ".join(exported) or "none (`leukoscan export` writes them)")
    for name in DATASETS:
        path = data_root / name
        ok = path.is_dir() and os.access(path, os.R_OK)
        table.add_row(f"dataset {name}", f"{path} ({'readable' if ok else 'not found'})")
    console.print(table)
    if problems:
        for p in problems:
            console.print(f"[red]problem:[/] {p}", soft_wrap=True)
        raise typer.Exit(1)
    console.print("[green]ok[/]")
