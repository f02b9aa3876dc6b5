"""Where every benchmark writes: ``bench/results/<name>.json`` (all figures) and ``<name>.md`` (the table
the README quotes)."""

from __future__ import annotations

import json
from pathlib import Path

from leukoscan.config import REPO_ROOT

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, results: dict, markdown: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(markdown.rstrip("\n") + "\n")
    print(markdown)


def rel(path: Path) -> str:
    """``path`` as the command line shows it: relative to the repository's root where it lies inside it."""
    path = Path(path)
    resolved = path.resolve() if path.is_absolute() else (REPO_ROOT / path).resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(resolved)
