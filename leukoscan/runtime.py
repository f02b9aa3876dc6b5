"""The process-wide set-up leukoscan needs, in one place, and the one door through which it imports Ultralytics.

Every entry point calls ``setup()`` first (the CLI's callback, the tests' conftest, each benchmark's
``main``); ``ultralytics()`` calls it too, so no code path imports Ultralytics unconfigured whatever the
import order. Importing ``leukoscan`` changes nothing. What ``setup()`` changes, and why:

- environment: ``YOLO_OFFLINE``, ``YOLO_AUTOINSTALL=false`` (no download, no pip install at run time),
  ``YOLO_VERBOSE=false`` (unless set), ``YOLO_CONFIG_DIR`` and ``MPLCONFIGDIR`` under ``home()`` (writable
  state), ``OMP_NUM_THREADS`` = all cores (Ultralytics would set 1 when it is unset);
- a font copied to where Ultralytics looks for Arial (its plots would otherwise download it);
- Pillow's decompression-bomb guard off: the project's own limit (``--max-megapixels``, checked from the
  header by ``images.load_rgb``) replaces it, with its own one-line message.

and what ``ultralytics()`` patches after the first import (each one tested in ``tests/test_runtime.py``,
which fails when an upgrade makes it wrong):

- ``NUM_THREADS`` = all cores: Ultralytics' ``select_device`` resets torch to ``cpu_count - 1`` threads
  (one core of two) on every CPU load or predict, and offers no setting for it;
- ``PIL.Image.open`` back to Pillow's own: Ultralytics swaps it for one that pip-installs a HEIF plugin
  when Pillow cannot identify a file (and, with installs off, raises ``ModuleNotFoundError``); a
  non-image in a slide folder must be a plain ``UnidentifiedImageError``;
- through its settings API: ``sync`` off (no usage events) and its experiment-tracking integrations off
  (ClearML, Comet, DVC, MLflow, Ray Tune: each activates when its package is installed, and Ray's, with
  the ``ray`` extra, opens a local connection from every training run).
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
# a source checkout (an editable install, or the repository on sys.path): the repository's folders are used;
# an installed wheel carries its weights and demo slide inside the package (``package_path``)
SOURCE_TREE: Path | None = PACKAGE.parent if (PACKAGE.parent / "pyproject.toml").is_file() else None
REPO_ROOT = SOURCE_TREE or Path.cwd()  # where data/ and runs/ go by default (the working folder when installed)
TRACKERS = ("clearml", "comet", "dvc", "mlflow", "raytune")  # Ultralytics' integrations, all switched off
_state: dict[str, object] = {"setup": False, "patched": False, "pil_open": None}


def package_path(name: str) -> Path:
    """A folder shipped with leukoscan (``weights``, ``datasets/samples``): in the repository for a source
    checkout, inside the installed package otherwise (the wheel's package data)."""
    return (SOURCE_TREE or PACKAGE) / name


def home() -> Path:
    """Writable state (Ultralytics config, matplotlib cache): ``LEUKOSCAN_HOME``, else ``.leukoscan`` in a
    source checkout, else ``~/.cache/leukoscan``."""
    env = os.environ.get("LEUKOSCAN_HOME")
    candidates = (
        [Path(env)]
        if env
        else [p for p in (SOURCE_TREE and SOURCE_TREE / ".leukoscan", Path.home() / ".cache" / "leukoscan") if p]
    )
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            continue
    raise RuntimeError(f"no writable state directory among {candidates}; set LEUKOSCAN_HOME")


def setup() -> None:
    """Every process-wide change leukoscan makes (listed in the module docstring); cheap (no torch, no
    Ultralytics), and safe to call more than once."""
    if _state["setup"]:
        return
    from PIL import Image

    state = home()
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_VERBOSE", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(state / "config"))
    os.environ.setdefault("MPLCONFIGDIR", str(state / "matplotlib"))
    os.environ.setdefault("OMP_NUM_THREADS", str(cores()))
    _place_font(Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics")
    Image.MAX_IMAGE_PIXELS = None
    if "ultralytics" not in sys.modules:
        _state["pil_open"] = Image.open  # Pillow's own, before Ultralytics replaces it
    _state["setup"] = True


def ultralytics(module: str = "ultralytics") -> ModuleType:
    """``module`` of Ultralytics (``ultralytics``, ``ultralytics.data.dataset``, …), imported after
    ``setup()`` and patched once: the only way leukoscan imports Ultralytics."""
    setup()
    imported = importlib.import_module(module)
    if not _state["patched"]:
        _patch_ultralytics()
        _state["patched"] = True
    return imported


def yolo(source: str | Path, task: str):
    """An Ultralytics model from a yaml (untrained) or weights, for ``task`` (detect or classify)."""
    return ultralytics().YOLO(str(source), task=task)


def _patch_ultralytics() -> None:
    import ultralytics.utils as uu
    import ultralytics.utils.patches as patches
    from PIL import Image

    use_threads(cores())
    uu.SETTINGS.update({"sync": False, **{key: False for key in TRACKERS}})
    Image.open = _state["pil_open"] or patches._image_open  # imported before setup(): Ultralytics kept the original


def cores() -> int:
    """The CPU cores this process may use (its affinity: a container's or ``taskset``'s share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def use_threads(n: int) -> None:
    """Run torch on ``n`` threads, and make Ultralytics keep it so (its ``select_device`` resets torch to
    its own ``NUM_THREADS`` whenever a model is loaded or predicts on the CPU)."""
    import torch
    import ultralytics.utils as uu
    import ultralytics.utils.torch_utils as tu

    uu.NUM_THREADS = tu.NUM_THREADS = n
    torch.set_num_threads(n)


def _place_font(config_dir: Path) -> None:
    """Put a bundled font where Ultralytics looks for Arial so plotting never tries to download it."""
    missing = [config_dir / name for name in ("Arial.ttf", "Arial.Unicode.ttf") if not (config_dir / name).exists()]
    if missing:
        import matplotlib

        config_dir.mkdir(parents=True, exist_ok=True)
        for dst in missing:
            shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", dst)


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda:0`` when CUDA is present, else ``cpu``; ``cpu`` and ``cuda:N`` pass through."""
    import torch

    device = device.strip().lower()
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device == "cpu" or (device.startswith("cuda") and torch.cuda.is_available()):
        return device if device != "cuda" else "cuda:0"
    raise ValueError(f"device {device!r} is not available (use auto, cpu or cuda:N)")


def train_device(device: str) -> str:
    """Ultralytics' trainer spelling of a resolved device ('cpu' or the CUDA index)."""
    device = resolve_device(device)
    return "cpu" if device == "cpu" else device.split(":")[1] if ":" in device else "0"
