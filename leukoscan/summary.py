"""The end of a run: its summary.csv and review page over the slides it screened, one line per field that could
not be read, and the summary table with each slide's verdict on stdout."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from rich.markup import escape

import leukoscan
from leukoscan.cli import NOTHING_PROCESSED, console, error, fail, first_names, one_line, shown_name
from leukoscan.config import SETTINGS
from leukoscan.records import WITHOUT_REFERENCE, FieldStatus, SlideVerdict, screened_folders, unreferenced_negatives


def conclude(verdicts: list[SlideVerdict], out: Path) -> None:
    """The run's summary.csv and review page, the fields skipped and the summary; exit 1 when those files could not
    be written or no image could be processed."""
    from leukoscan import outputs
    from leukoscan.records import SUMMARY_COLUMNS
    from leukoscan.report import write_report

    try:
        outputs.write_csv(out / "summary.csv", pd.DataFrame([v.record() for v in verdicts])[SUMMARY_COLUMNS])
        write_report(out, verdicts)
        report = True
    except OSError as e:  # a full disk, a folder in the way: the slides' own outputs are written already
        error(f"could not write summary.csv and report.html in {out} ({one_line(e)}); each slide's folder has its own")
        report = False
    show_skipped(verdicts, out)
    show_shared(verdicts)
    show_summary(verdicts, out, report)
    others = sorted({f.name for f in screened_folders(out) if f != out} - {v.slide for v in verdicts})
    if others:  # an earlier run's slides in the same --out
        console.print(
            f"[yellow]note:[/] {out} also holds {len(others)} slide folder(s) this run did not screen "
            f"({escape(first_names(others, 5))}): summary.csv and report.html are "
            "this run's slides only",
            soft_wrap=True,
        )
    negatives = unreferenced_negatives(verdicts)
    if negatives:
        console.print(
            f"[yellow]note:[/] {len(negatives)} slide(s) negative ({escape(first_names(negatives))}) "
            f"{escape(WITHOUT_REFERENCE)}",
            soft_wrap=True,
        )
    if not report:
        raise typer.Exit(NOTHING_PROCESSED)
    if all(v.n_failed == v.n_images for v in verdicts):
        fail("no image could be processed (see images.csv in each slide folder)", NOTHING_PROCESSED)


def show_skipped(verdicts: list[SlideVerdict], out: Path, limit: int = 20) -> None:
    """One line on stderr per field that could not be read or is a copy of another (its file and why, from the
    slide's images.csv), at most ``limit`` per slide, the rest counted."""
    for v in verdicts:
        if not v.n_failed and not v.n_duplicates:
            continue
        images = pd.read_csv(out / v.slide / "images.csv", keep_default_na=False)
        skipped = images[images.status.isin([FieldStatus.ERROR, FieldStatus.DUPLICATE])]
        for row in skipped.head(limit).itertuples():
            console.print(
                f"[yellow]skipped[/] {escape(shown_name(f'{v.slide}/{row.image}'))}: {escape(row.error)}",
                soft_wrap=True,
            )
        if len(skipped) > limit:
            console.print(
                f"[yellow]skipped[/] {len(skipped) - limit} more of slide {escape(shown_name(v.slide))} "
                "(its images.csv)"
            )


def show_shared(verdicts: list[SlideVerdict]) -> None:
    """One line on stderr per slide with cells seen in two overlapping fields (counted once, in the first)."""
    for v in verdicts:
        if v.n_shared_cells:
            console.print(
                f"[yellow]note:[/] {escape(shown_name(v.slide))}: {v.n_shared_cells} cell(s) seen in two overlapping "
                "fields, counted once (images.csv: overlaps)",
                soft_wrap=True,
            )


def show_summary(verdicts: list[SlideVerdict], out: Path, report: bool = True) -> None:
    """The run's summary on stdout (progress and logs are on stderr): a table on a terminal; plain columns,
    never cut to a width, when stdout is piped or redirected; then where the ``report`` is, when it was written."""
    from rich.console import Console
    from rich.table import Table

    from leukoscan.numbers import percent

    limit = SETTINGS.verdict.suspect_fraction  # a negative slide's 9.95 % reads 9.9 %
    columns = ("slide", "images", "failed", "white cells", "blasts (95% CI)", "subtype", "verdict", "review")
    rows = [
        (
            shown_name(v.slide),
            str(v.n_images),
            str(v.n_failed),
            str(c.n_white_cells),
            "–"
            if c.blast_fraction is None
            else f"{percent(c.blast_fraction, below=limit)} ({percent(c.ci_low)}–{percent(c.ci_high)})",
            c.predominant_subtype or "–",
            c.verdict,
            "yes" if c.needs_review else "no",
        )
        for v, c in ((v, v.call) for v in verdicts)
    ]
    title = f"leukoscan: {leukoscan.DISCLAIMER}"
    stdout = Console(highlight=False, emoji=False)
    if stdout.is_terminal:  # wrapped to the terminal's width, never cut
        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*map(escape, row))
        stdout.print(table)
    else:
        widths = [max(map(len, column)) for column in zip(columns, *rows)]
        typer.echo(
            "\n".join(
                [title, *("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in (columns, *rows))]
            )
        )
    for v in verdicts:
        stdout.print(f"{escape(shown_name(v.slide))}: {v.verdict} ({escape(v.call.reason)})", soft_wrap=True)
    if report:
        stdout.print(f"report: {escape(str(out / 'report.html'))}", soft_wrap=True)
