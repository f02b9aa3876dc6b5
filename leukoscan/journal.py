"""A slide's resume journal: one JSON line per finished field, appended as each field finishes.

A rerun into the same output folder reads it back and skips the fields recorded there whose file is unchanged
(same resolved path, size and modification time) and that were screened the same way (the same key:
``slide.screening_key``, of the models, the scale the user gave and the lab reference); the others are
screened again. A line cut short by an interrupted run is skipped on reading, and the next run starts its
lines on a fresh line, so nothing recorded before is lost. One append per field, instead of a file per field,
keeps resuming cheap on slides of thousands of fields.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from functools import cached_property
from pathlib import Path

from leukoscan.images import TOO_LARGE
from leukoscan.locks import exclusive
from leukoscan.outputs import json_default
from leukoscan.records import FieldResult, FieldStatus


class SlideBusy(RuntimeError):
    """Another run is screening the slide into the same output folder (one line: which process)."""


def lock_path(out: Path) -> Path:
    return Path(out) / ".state" / "run.lock"


@contextmanager
def slide_lock(out: Path) -> Iterator[None]:
    """Output folder ``out`` is this process's while the block runs (an ``flock`` on ``lock_path``, released however
    the process ends): a ``SlideBusy`` when another process holds it, as two runs started into one --out would
    (both would screen the slide's fields, and one's removal of stale outputs could take the other's). Held by
    whoever screens the slide (this process, a --workers worker, the Ray driver while it aggregates), one slide at
    a time (``locks.exclusive``)."""

    def taken(holder: str) -> SlideBusy:
        return SlideBusy(
            f"slide {Path(out).name}: another leukoscan run ({holder}) is screening it into {out}: left out of this "
            "run (run this command again when that one has finished)"
        )

    with exclusive(lock_path(out), taken):
        yield


def busy(out: Path) -> SlideBusy | None:
    """Whether another process is screening into ``out`` now (``slide_lock``: taken and released at once), so that a
    run can leave that slide out before it counts and loads for it. Nothing is written where no lock file is (no
    run has held it: nobody holds it now)."""
    if not lock_path(out).is_file():
        return None
    try:
        with slide_lock(out):
            return None
    except SlideBusy as e:
        return e


def fingerprint(image: Path) -> dict:
    """What identifies a field's file: its resolved path, size and modification time (None for a file
    that has gone: it is recorded as an error and never matches on resume)."""
    path = os.path.realpath(image)  # (Path.resolve raises on a link loop; this never does)
    try:
        st = image.stat()
    except OSError:
        return {"path": path, "size": None, "mtime": None}
    return {"path": path, "size": st.st_size, "mtime": st.st_mtime}


def journal_path(out: Path) -> Path:
    return Path(out) / ".state" / "fields.jsonl"


def read_states(text: bytes) -> dict[str, dict]:
    """Resolved image path -> its latest state, from a journal's ``text``."""
    recorded = {}
    for line in text.splitlines():
        try:
            state = json.loads(line)
            recorded[state["fingerprint"]["path"]] = state
        except (ValueError, KeyError, TypeError):
            continue  # cut short, or not a state
    return recorded


def finished_state(
    recorded: dict[str, dict], image: Path, key: str = "", out: Path | None = None
) -> FieldResult | None:
    """The result of ``image`` in ``recorded`` if it was finished under ``key`` (lines of earlier versions
    have none), its file has not changed since, it was not refused for its size (tried again: the limit may have
    been raised) and (with ``out``, the slide's output folder) its overlay is still there: a field removed from the
    slide and put back has had its outputs removed (``slide._remove_stale``)."""
    now = fingerprint(image)
    state = recorded.get(now["path"])
    if not isinstance(state, dict) or now["size"] is None or state.get("fingerprint") != now:
        return None
    if out is not None and state.get("overlay") and not (Path(out) / state["overlay"]).is_file():
        return None
    # a field refused for its size is tried again each run: the size limit may have been raised (--max-megapixels);
    # a repaired file is a changed one
    if state.get("status") == FieldStatus.ERROR and str(state.get("error", "")).startswith(TOO_LARGE):
        return None
    if state.get("key", "") != key:
        return None
    try:
        return FieldResult.from_record(state)
    except (TypeError, ValueError):  # a line edited or damaged into other valid JSON: the field is screened again
        return None


def finished_count(out: Path, images: list[Path], key: str = "") -> int:
    """How many of ``images`` output folder ``out``'s journal records finished under ``key`` and unchanged (read
    only, nothing is created)."""
    path = journal_path(out)
    recorded = read_states(path.read_bytes()) if path.is_file() else {}
    return sum(finished_state(recorded, image, key, out) is not None for image in images)


def all_finished(out: Path, images: list[Path], key: str = "") -> bool:
    """Whether every one of ``images`` is finished (``finished_count``): a resume with nothing left to screen."""
    return finished_count(out, images, key) == len(images)


class Journal:
    def __init__(self, out: Path, fresh: bool = False, key: str = ""):
        """The journal of output folder ``out``; ``fresh`` forgets what it recorded (``--force``); ``key``:
        how this run screens (``slide.screening_key``), recorded with each field and required of a finished one."""
        self.path, self.key, self.fresh = journal_path(out), key, fresh
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb" if fresh else "ab+")
        if self._file.seek(0, 2):  # something recorded: end the line an interrupted run cut short
            self._file.seek(-1, 2)
            if self._file.read(1) != b"\n":
                self._file.write(b"\n")

    @cached_property
    def recorded(self) -> dict[str, dict]:
        """Resolved image path -> its latest state (read when first asked, before anything is recorded: a batch
        that only appends, as each Ray batch does, does not read the slide's whole journal again)."""
        return {} if self.fresh else read_states(self.path.read_bytes())

    def finished(self, image: Path) -> FieldResult | None:
        """The recorded result of ``image`` if it was finished and has not changed since."""
        return finished_state(self.recorded, image, self.key, self.path.parent.parent)

    def record(self, image: Path, result: FieldResult) -> FieldResult:
        """Append ``image``'s result (its outputs already written) and return it with its fingerprint."""
        result = replace(result, fingerprint=fingerprint(image))
        line = {**result.record(), "key": self.key}
        self._file.write(json.dumps(line, default=json_default).encode() + b"\n")
        self._file.flush()
        return result

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
