"""A folder that one process at a time may write: an ``flock`` on a lock file, released however the process ends."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(lock: Path, busy: Callable[[str], Exception]) -> Iterator[None]:
    """This process holds ``lock`` (a file, made with its folder) while the block runs; when another process holds
    it, ``busy(holder)`` is raised (``holder``: ``pid N`` as that process wrote it). Where no lock can be taken (no
    fcntl, a file system without locks, no room for the file) the block runs without: what it writes says what is
    wrong."""
    try:
        import fcntl

        lock.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock, "a+")
    except (ImportError, OSError):
        yield
        return
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise busy(handle.read().strip() or "another process") from None
        except OSError:  # a file system without locks
            yield
            return
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
