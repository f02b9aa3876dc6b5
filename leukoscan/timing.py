"""Where a run's time goes: named stages timed by one context manager instead of ``perf_counter`` pairs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Stopwatch:
    """Seconds per named stage, summed over every ``with watch("detect"):`` block of that name.

    >>> watch = Stopwatch()
    >>> with watch("decode"):
    ...     pass
    >>> list(watch.seconds)
    ['decode']
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def per(self, n: int, digits: int | None = None) -> dict[str, float]:
        """Each stage's seconds divided by ``n`` (fields), rounded to ``digits`` when given."""
        return {k: (v / n if digits is None else round(v / n, digits)) for k, v in self.seconds.items()}
