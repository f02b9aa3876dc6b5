"""Output files, atomic by default (temp file + rename): an interrupted run never leaves a half-written file."""

from __future__ import annotations

import json
import os
import tempfile
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pandas as pd


def out_folder(out: Path) -> Path:
    """``out`` (a command's ``--out``) as a folder to write into; a ``ValueError`` (one line) when it is a file."""
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    return Path(out)


def write_bytes(path: Path, data: bytes, atomic: bool = True) -> Path:
    """``data`` to ``path`` through a temporary file and a rename; ``atomic=False``: straight to ``path``
    (for files whose completion something else records, such as a field's outputs in the journal)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not atomic:
        path.write_bytes(data)
        return path
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:  # (a folder that cannot be written: said of the file asked for)
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        os.fchmod(fd, file_mode())  # mkstemp's file is the owner's alone; the output is anyone's a plain write's is
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:  # said of the file asked for, not of the temporary one
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@cache
def file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` gives a new file: 0o666 less the process's umask (Linux says it
    in /proc; elsewhere it is set and put back once, before the run's threads write anything)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj, indent: int | None = 2) -> Path:
    """``obj`` as JSON (numpy values and paths as plain ones); ``indent=None``: compact, C-encoder fast."""
    return write_text(path, json.dumps(obj, indent=indent, default=json_default) + "\n")


def write_csv(path: Path, df: pd.DataFrame) -> Path:
    """``df`` as CSV, floats to 4 decimals (rounded first and written shortest: ~1.6x faster than a
    ``float_format``, which formats every value in Python)."""
    return write_text(path, df.round(4).to_csv(index=False))


def write_jpeg(path: Path, bgr: np.ndarray, quality: int = 90, atomic: bool = True) -> Path:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"could not encode {path.name}")
    return write_bytes(path, buf.tobytes(), atomic)


def json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
