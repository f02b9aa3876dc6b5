"""leukoscan command line: screen blood-smear slides for acute lymphoblastic leukemia (a screening aid)."""

from __future__ import annotations

import leukoscan  # noqa: F401  (offline runtime before ultralytics)

import typer

from classify.cli import app as classify_app
from datasets.cli import app as data_app
from detect.cli import app as detect_app
from leukoscan.doctor import doctor

app = typer.Typer(help=f"leukoscan: ALL screening on blood smears. {leukoscan.DISCLAIMER}", no_args_is_help=True)
app.command()(doctor)
app.add_typer(data_app, name="data")
app.add_typer(detect_app, name="detect")
app.add_typer(classify_app, name="classify")

if __name__ == "__main__":
    app()
