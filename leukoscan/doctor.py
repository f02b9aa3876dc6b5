"""``leukoscan doctor``: what is installed, which device runs, which weights and datasets are present."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from leukoscan.cards import BACKENDS, WeightsError, backend_file, load_model, sha256
from leukoscan.cli import NOTHING_PROCESSED, fail, one_line
from leukoscan.config import DATA_ROOT, SETTINGS, WEIGHTS_DIR
from leukoscan.runtime import cores

PACKAGES = (
    "leukoscan",
    "torch",
    "torchvision",
    "ultralytics",
    "supervision",
    "opencv-python",
    "scikit-image",
    "numpy",
    "pandas",
    "typer",
    "onnxruntime",
    "openvino",
)
DATASETS = ("all-taleqani", "pbc", "munich-aml", "zheng-wbc", "txl-pbc", "labs-samples")
REQUIRED_WEIGHTS = ("detector.pt", "classifier.pt", "subtype.pt")


def doctor(
    data_root: Path = typer.Option(DATA_ROOT, help="Folder holding the public datasets."),
    weights_dir: Path = typer.Option(WEIGHTS_DIR, help="Folder holding detector.pt, classifier.pt and subtype.pt."),
) -> None:
    """Check the installation: versions, device, weights (each model loaded and run once) and dataset paths."""
    table = Table(title="leukoscan doctor", show_header=True)
    table.add_column("item")
    table.add_column("value")
    problems = environment_rows(table)
    for name in REQUIRED_WEIGHTS:
        problems += weights_rows(table, name, weights_dir / name)
    for name in DATASETS:
        path = data_root / name
        ok = path.is_dir() and os.access(path, os.R_OK)
        state = "readable" if ok else "not found: needed to train, fine-tune and promote, not to screen"
        table.add_row(f"dataset {name}", escape(f"{path} ({state})"))
    report = Console(highlight=False)  # the report is the command's output (stdout: `leukoscan doctor > it.txt`)
    report.print(table)
    if problems:
        for p in problems:
            report.print(f"[red]problem:[/] {escape(p)}", soft_wrap=True)
        fail(f"{len(problems)} problem(s) found (listed above)", NOTHING_PROCESSED)
    report.print("[green]ok[/]")


def environment_rows(table: Table) -> list[str]:
    """Python, the packages, threads, CUDA and Ultralytics' config folder into ``table``; the problems."""
    import torch

    problems = []
    table.add_row("python", platform.python_version())
    for name in PACKAGES:
        try:
            table.add_row(name, version(name))
        except PackageNotFoundError:
            table.add_row(name, "[red]missing[/]")
            problems.append(f"package {name} is not installed")
    table.add_row("cpu threads", f"{torch.get_num_threads()} of the {cores()} cores this process may use")
    table.add_row("openvino precision", openvino_precision())
    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "not available (CPU will be used)"
    table.add_row("cuda", cuda)
    table.add_row("ultralytics config", os.environ.get("YOLO_CONFIG_DIR", "?"))
    return problems


def openvino_precision() -> str:
    """The precision OpenVINO runs fp32 models in on this CPU: bfloat16 where the CPU has it (AVX512-BF16 or AMX),
    which moves answers a little ("Backends agree" in the README), else fp32."""
    try:
        import openvino

        hint = openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    except Exception as e:  # not installed, or no CPU plugin: said, not a problem (PyTorch is the default)
        return f"not known ({one_line(e)})"
    if hint == "bf16":
        return "bfloat16 (this CPU has it: --backend openvino's probabilities move by up to ~0.02 from PyTorch's)"
    return f"{hint} (--backend openvino gives the PyTorch answers)"


def weights_rows(table: Table, name: str, path: Path) -> list[str]:
    """One weights file into ``table``: its hash and size, whether it loads and runs, its exports; the problems."""
    if not path.is_file():
        table.add_row(f"weights {name}", "[red]missing[/]")
        return [f"weights {path} not found"]
    table.add_row(f"weights {name}", f"{sha256(path)[:16]}…  ({path.stat().st_size / 1e6:.1f} MB)")
    if made := origin(path):
        table.add_row("  made", escape(made))
    if problem := model_problem(name, path):
        table.add_row("  loads and runs", "[red]no[/]")
        return [f"weights {name}: {problem}"]
    table.add_row("  loads and runs", "yes (one pass on the CPU)")
    exported, stale, broken = [], [], []
    for backend in BACKENDS[1:]:
        try:
            export = backend_file(path, backend)
            load_model(export, "detect" if name == "detector.pt" else "classify")
            if export.is_dir():  # OpenVINO: Ultralytics reads it on first use only, so read it here
                read_openvino(export)
            exported.append(backend)
        except FileNotFoundError:
            pass
        except WeightsError as e:  # there, but it does not load (an export interrupted, a file damaged)
            broken.append(f"weights {name}: its {backend} export: {e}")
        except ValueError:  # made from other weights: refused by --backend
            stale.append(backend)
    row = ", ".join(exported) or "none (`leukoscan export` writes them)"
    if stale:
        row += f"; [yellow]made from other weights, export again:[/] {', '.join(stale)}"
    if broken:
        row += f"; [red]broken, export again:[/] {len(broken)}"
    table.add_row("  exported for --backend", row)
    return broken


def origin(weights: Path) -> str | None:
    """What a model's card says it is, where it is not the trained model of a recipe: fine-tuned on a lab's
    reviewed cells, promoted by the gate, restored by a rollback (None for a card that says none of it, or none)."""
    from leukoscan.cards import read_card

    try:
        card = read_card(weights)
    except WeightsError:
        return None  # (said by model_problem)
    said = []
    if tuned := card.get("finetune"):
        cells = sum((tuned.get("lab_cells") or {}).values())
        said.append(f"fine-tuned from {str(tuned.get('from_sha256', '?'))[:12]} on {cells} reviewed lab cells")
    if promotion := card.get("promotion"):
        said.append(f"promoted {promotion.get('date', '?')} (leukoscan classify/detect promote; rollback restores)")
    if card.get("note"):
        said.append(str(card["note"]))
    return "; ".join(said) or None


def read_openvino(folder: Path) -> None:
    """Read the OpenVINO model in an export folder (its .xml and .bin); a ``WeightsError`` when it does not read."""
    import openvino

    xml = next(folder.glob("*.xml"), None)
    try:
        if xml is None:
            raise ValueError("no .xml model in it")
        openvino.Core().read_model(str(xml))
    except Exception as e:  # a damaged file fails anywhere in OpenVINO, with any exception type
        lines = [line for line in str(e).splitlines() if line.strip()]  # OpenVINO's reason is its last line
        raise WeightsError(f"cannot read {folder}: {lines[-1] if lines else type(e).__name__}") from None


def model_problem(name: str, weights: Path) -> str | None:
    """Load the model in ``weights`` (``name``: one of ``REQUIRED_WEIGHTS``) on the CPU and run it once on a
    tiny blank input; None when it works, else what is wrong, in one line."""
    import numpy as np

    from leukoscan.cards import scoring_card
    from leukoscan.classify.predict import CellClassifier, SubtypeClassifier
    from leukoscan.detect.predict import Detector

    blank = np.full((64, 64, 3), 200, np.uint8)
    try:
        if name == "detector.pt":
            Detector(weights, "cpu").detect([blank], cell_size=SETTINGS.geometry.train_cell_px)
        else:
            classifier = (CellClassifier if name == "classifier.pt" else SubtypeClassifier)(weights, "cpu")
            scoring_card(weights)  # as `run` refuses it: a classifier's scores are made from its card
            classifier.probs(blank[None, : classifier.imgsz, : classifier.imgsz])
    except Exception as e:  # a diagnosis: whatever stops the model is the answer
        return one_line(e)
    return None
