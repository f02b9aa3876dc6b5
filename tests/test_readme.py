"""The README quotes benchmark tables as their scripts last wrote them (bench/results/*.md): a rerun that moves a
figure fails here until the README quotes the new table."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

# results file -> the first cells of the tables the README quotes (None: every table of the file)
QUOTED = {
    "speed.md": None,
    "slides.md": None,
    "dataset_tables.md": None,
    "detector.md": None,
    "backends_agree.md": None,
    "ray.md": None,
    "workers.md": None,
    "speed_cuda.md": None,
    "crosslab_runs_3.md": None,
    "crosslab.md": ("| held out |", "| source | n | accuracy |", "| row_0 ", "| model | txl-575x575"),
}


def tables(text: str) -> list[list[str]]:
    """The markdown tables of ``text``: runs of lines that start with ``|``, stripped."""
    found, table = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line.strip())
        elif table:
            found.append(table)
            table = []
    return found


def test_tables_are_read_whole():
    assert tables("a\n| h |\n|---|\n| 1 |\nb\n| x |") == [["| h |", "|---|", "| 1 |"], ["| x |"]]


@pytest.mark.parametrize("name", sorted(QUOTED))
def test_readme_quotes_the_tables_as_last_written(name):
    readme = {line.strip() for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()}
    found = tables((RESULTS / name).read_text(encoding="utf-8"))
    heads = QUOTED[name]
    quoted = [t for t in found if heads is None or t[0].startswith(heads)]
    assert quoted and (heads is None or len(quoted) == len(heads)), f"{name}: the quoted tables are not all there"
    stale = [row for table in quoted for row in table if row not in readme]
    assert not stale, f"README does not quote bench/results/{name} as it stands: {stale[:3]}"
