"""Offline, quiet, all-cores runtime for Ultralytics and torch, set once, before Ultralytics is imported."""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
_done = False


def home() -> Path:
    """Project-local writable state (Ultralytics config, matplotlib cache); ``LEUKOSCAN_HOME`` overrides."""
    env = os.environ.get("LEUKOSCAN_HOME")
    candidates = [Path(env)] if env else [REPO_ROOT / ".leukoscan", Path.home() / ".cache" / "leukoscan"]
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            continue
    raise RuntimeError(f"no writable state directory among {candidates}; set LEUKOSCAN_HOME")


def setup() -> None:
    """Set the environment and font now, and have Ultralytics configured (threads, settings, PIL) the
    moment it is first imported: importing leukoscan stays cheap (``leukoscan --help`` never loads torch),
    and nothing imports Ultralytics unconfigured. Safe to call more than once."""
    global _done
    if _done:
        return
    state = home()
    n = str(os.cpu_count() or 1)
    os.environ["YOLO_OFFLINE"] = "true"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["YOLO_VERBOSE"] = os.environ.get("YOLO_VERBOSE", "false")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(state / "config"))
    os.environ.setdefault("MPLCONFIGDIR", str(state / "matplotlib"))
    os.environ.setdefault("OMP_NUM_THREADS", n)  # ultralytics would force 1
    _place_font(Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics")
    if "ultralytics" in sys.modules:  # imported before leukoscan: configure it now
        _configure_ultralytics()
    else:
        sys.meta_path.insert(0, _ConfigureOnImport())
    _done = True


def _configure_ultralytics() -> None:
    import ultralytics.utils as uu

    use_threads(os.cpu_count() or 1)  # Ultralytics uses cpu_count-1 threads (one core on a 2-core machine): use all
    uu.SETTINGS.update({"sync": False})
    # Ultralytics patches PIL.Image.open to pip-install a HEIF plugin whenever Pillow cannot identify a
    # file; a non-image in a slide folder must be a plain error, never an install attempt.
    import ultralytics.utils.patches as patches
    from PIL import Image

    Image.open = patches._image_open


class _ConfigureOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it asks the other finders for ``ultralytics`` and has the loader they return
    run ``_configure_ultralytics`` as soon as the package has been executed (then it steps aside). A mere
    ``importlib.util.find_spec`` without an import leaves it in place for the real import."""

    def find_spec(self, name, path=None, target=None):
        if name != "ultralytics":
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else getattr(finder, "find_spec", lambda *a: None)(name, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            _configure_ultralytics()

        spec.loader.exec_module = exec_module
        return spec


def use_threads(n: int) -> None:
    """Run torch on ``n`` threads, and make Ultralytics keep it so: its ``select_device`` resets torch to
    its own ``NUM_THREADS`` whenever a model is loaded or predicts on the CPU."""
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
