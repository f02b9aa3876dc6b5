"""Style: the code is ruff-formatted and passes ruff's lint (pycodestyle, pyflakes, import order, complexity
and function length; configured in pyproject.toml), so CI fails on a change that is not."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [["format", "--check", "--diff"], ["check", "--output-format", "concise"]])
def test_ruff(command):
    ruff = shutil.which("ruff") or pytest.fail("ruff is not installed (pip install -e '.[test]')")
    out = subprocess.run([ruff, *command, "."], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
