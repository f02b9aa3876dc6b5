"""Headless Chromium for the tests that load the review page as a reviewer's browser would."""

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (installed by .ci/run)")


def chromium(
    page: Path, tmp_path: Path, *extra: str, budget_ms: int = 5000, timeout: int = 180
) -> subprocess.CompletedProcess:
    """Open ``page`` (a file) in headless Chromium with a fresh profile, no network chatter and the page's
    console on stderr; ``extra`` flags such as ``--dump-dom``; ``budget_ms`` of virtual time to settle."""
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--virtual-time-budget={budget_ms}",
            *extra,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
