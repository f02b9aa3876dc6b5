"""leukoscan command line: screen blood-smear slides for acute lymphoblastic leukemia (a screening aid).

A run, as a lab user sees it: each slide folder (or single image) is screened field by field (load →
detect → crop → classify in batches → per-cell records, saved as each field finishes), the cells are
aggregated into a slide verdict, and the tables, overlays and an HTML report are written to ``--out``.
"""

from __future__ import annotations

import signal
from pathlib import Path

import typer
from rich.markup import escape

import leukoscan
from leukoscan import runtime
from leukoscan.cards import Backend, ModelFormat
from leukoscan.classify.cli import app as classify_app
from leukoscan.cli import (
    NOTHING_PROCESSED,
    OneLineErrors,
    cell_size_option,
    console,
    device_option,
    fail,
    finite,
    interrupted,
    max_megapixels_option,
    positive,
    progress,
    shown_name,
    um_per_px_option,
    user_errors,
)
from leukoscan.config import (
    BUILD_DIR,
    CLASSIFIER_WEIGHTS,
    DEMO_SLIDE,
    DETECTOR_WEIGHTS,
    SETTINGS,
    SUBTYPE_WEIGHTS,
    Engine,
    Export,
)
from leukoscan.datasets.cli import app as data_app
from leukoscan.detect.cli import app as detect_app
from leukoscan.doctor import doctor
from leukoscan.summary import conclude

app = typer.Typer(
    help=f"leukoscan: ALL screening on blood smears. {leukoscan.DISCLAIMER} Exit codes, the same in "
    "every command: 0 done, 1 nothing could be processed, 2 usage or input error, 130 interrupted.",
    no_args_is_help=True,
    cls=OneLineErrors,
)
app.command()(doctor)
app.add_typer(data_app, name="data")
app.add_typer(detect_app, name="detect")
app.add_typer(classify_app, name="classify")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"leukoscan {leukoscan.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """The options of ``leukoscan`` itself (its help is the app's); every command starts with the runtime set-up."""
    runtime.setup()


@app.command()
def run(
    slides: list[Path] = typer.Argument(
        None,
        help="Slide folders (or single images). Default: the bundled demo "
        "photographs, each its own slide (they come from different labs).",
    ),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Output folder."),
    device: str = device_option(),
    cell_size: float = cell_size_option(),
    um_per_px: float = um_per_px_option(),
    batch: int = typer.Option(SETTINGS.run.batch, min=1, help="Fields per batch through the models."),
    batch_megapixels: float = typer.Option(
        SETTINGS.run.batch_megapixels,
        callback=positive,
        help="A batch also stops at this many megapixels of fields (bounds memory on large photographs).",
    ),
    max_megapixels: float = max_megapixels_option(),
    workers: int = typer.Option(
        SETTINGS.run.workers, min=1, help="Slides screened in parallel (each worker gets cores / workers threads)."
    ),
    engine: Engine = typer.Option(
        "local",
        help="local: this machine (--workers); ray: a Ray cluster (pip install 'leukoscan\\[ray]'), one actor "
        "per GPU or per machine; --out must be a folder every node can write.",
    ),
    ray_address: str = typer.Option(
        None, help="--engine ray: the cluster to join (auto, host:port or ray://host:port); default: a local Ray."
    ),
    force: bool = typer.Option(False, help="Reprocess images already finished in --out."),
    detector_weights: Path = typer.Option(DETECTOR_WEIGHTS, help="Detector weights."),
    classifier_weights: Path = typer.Option(CLASSIFIER_WEIGHTS, help="Cell-type classifier weights."),
    subtype_weights: Path = typer.Option(SUBTYPE_WEIGHTS, help="Blast subtype classifier weights."),
    backend: Backend = typer.Option("pytorch", help="Exported by `leukoscan export`; faster on CPU."),
    export: list[Export] = typer.Option(
        [],
        help="Also write the cells for other tools (repeatable): geojson (QuPath, "
        "one file per field) or coco (one file per slide).",
    ),
    lab_reference: Path = typer.Option(
        None,
        help="This lab's blast reference (`leukoscan lab-reference`, from its own normal slides): each cell's "
        "blast call placed where the lab's normal cells sit instead of the model's default.",
    ),
) -> None:
    """Screen slides: find and classify every white cell, then give each slide a screening verdict."""
    from leukoscan.engine import not_busy, outside_slides, slide_tasks, slides_given
    from leukoscan.images import list_images, pixel_limit
    from leukoscan.journal import finished_count
    from leukoscan.lab import LabReference
    from leukoscan.models import ModelFiles, Models
    from leukoscan.slide import Options, screening_key

    screen = engine_screen(engine, ray_address)
    files = ModelFiles(detector_weights, classifier_weights, subtype_weights, device, backend)
    with user_errors():
        tasks = slide_tasks(slides_given(slides or list_images(DEMO_SLIDE)), out)
        outside_slides(out, tasks, slides or [])
        tasks = not_busy(tasks)  # a slide another run is screening into --out now: left out, said
        models = Models.from_files(files, lazy=True)  # read from their files and cards only, until screening asks
        # an offset belongs to the classifier (and calibration) that scored the reference cells
        lab = LabReference.load(lab_reference, models.description["models"]["classifier"]) if lab_reference else None
        opts = Options(
            cell_size=cell_size,
            um_per_px=um_per_px,
            batch=batch,
            batch_megapixels=batch_megapixels,
            force=force,
            exports=tuple(export),
            lab=lab,
        )
        opts.key = screening_key(models, opts)  # fields screened before with other models or scale: again
        # a resume with every field finished loads no model (the verdicts are aggregated again from the journals);
        # the Ray engine's models are loaded by its actors (here they only aggregate)
        reused = [0 if force else finished_count(t.out, t.slide.images, opts.key) for t in tasks]
        done = not force and all(n == len(t.slide.images) for n, t in zip(reused, tasks))
        for n, t in zip(reused, tasks):
            if n:  # a resume: said, so that a rerun is not mistaken for a fresh screening
                console.print(
                    f"{escape(shown_name(t.name))}: {n} of {len(t.slide.images)} fields already screened in "
                    f"{escape(shown_name(out))}, "
                    "kept (--force screens them again)",
                    soft_wrap=True,
                )
        if not done and engine is Engine.local:  # (with --workers too: unusable weights are found here, at once)
            models = Models.from_files(files)
    terminated = signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill`: as Ctrl-C, workers too
    try:
        with progress() as bar, pixel_limit(max_megapixels):  # one bar per slide and one overall
            parallel = 1 if done else workers  # nothing left to screen: aggregated here, no worker started
            verdicts = screen(models, tasks, opts, bar, parallel, max_megapixels)
        if not verdicts:
            fail("no slide could be screened or written (each is named above with why)", NOTHING_PROCESSED)
        conclude(verdicts, out)
    except ConnectionError as e:  # --engine ray: the cluster cannot be joined (ray_engine.ClusterUnreachable)
        fail(str(e))
    except KeyboardInterrupt:
        kept = sum(finished_count(t.out, t.slide.images, opts.key) for t in tasks)
        interrupted(
            f"the {kept} field(s) finished so far are kept in {out}; run the same command again to resume "
            "(--force starts afresh)"
        )
    finally:
        signal.signal(signal.SIGTERM, terminated)


@app.command("lab-reference")
def lab_reference(
    runs: list[Path] = typer.Argument(
        ..., help="Output folders of `leukoscan run` on this lab's normal slides (or slide folders in them)."
    ),
    out: Path = typer.Option(Path("lab_reference.json"), "--out", "-o", help="The reference file to write."),
    normal_called_blast: float = typer.Option(
        SETTINGS.lab.normal_called_blast,
        callback=finite,
        min=0.001,
        max=0.2,
        help="Share of the reference cells left called blast (the blast call is placed at that quantile).",
    ),
    min_cells: int = typer.Option(SETTINGS.lab.min_cells, min=1, help="Fewest reference cells accepted."),
) -> None:
    """Make this lab's blast reference from normal slides `leukoscan run` screened (screen 3-5 normal slides of
    the lab first, without --lab-reference), then screen with `leukoscan run --lab-reference FILE`. It fits the
    cell-type classifier it was made with only. See the README ("Your lab's own reference")."""
    from dataclasses import replace

    from leukoscan.lab import LabReference

    calibration = replace(SETTINGS.lab, normal_called_blast=normal_called_blast, min_cells=min_cells)
    with user_errors():
        reference = LabReference.from_runs(runs, calibration)
        replaced = out.is_file()
        reference.save(out)
    for slide, kept in reference.repeats:
        console.print(
            f"[yellow]note:[/] {escape(shown_name(slide))} is {escape(shown_name(kept))}'s slide screened again: "
            "its cells counted once",
            soft_wrap=True,
        )
    for slide, verdict in reference.flagged_slides():
        console.print(
            f"[yellow]note:[/] {escape(shown_name(slide))} was called {verdict} when screened: the reference assumes "
            "normal slides only; leave it out (and make the reference again) unless a hematologist found it normal",
            soft_wrap=True,
        )
    n = len(reference.slides)
    typer.echo(
        f"lab reference {out}: blast offset {reference.offset:+.2f} (log-odds), from {reference.n_cells} cells of "
        f"{n} slide{'s' if n != 1 else ''}, {normal_called_blast:.1%} of them called blast"
        + (
            " (it replaces the reference that was there: slides screened with that one keep its calls)"
            if replaced
            else ""
        )
    )


def engine_screen(engine: Engine, ray_address: str | None):
    """The chosen engine's ``screen_slides`` (``run --engine``): the local one, or the Ray one joining
    ``ray_address`` (a local Ray when None). Ray is imported only for the Ray engine."""
    from functools import partial

    from leukoscan.engine import screen_slides

    if engine is Engine.local:
        if ray_address:
            fail("--ray-address needs --engine ray")
        return screen_slides
    try:
        from leukoscan.ray_engine import screen_slides_on_ray
    except ModuleNotFoundError as e:
        fail(f"--engine ray needs Ray ({e}): pip install 'leukoscan[ray]'")
    return partial(screen_slides_on_ray, address=ray_address)


@app.command()
def export(
    detector_weights: Path = typer.Option(DETECTOR_WEIGHTS, help="Detector weights."),
    classifier_weights: Path = typer.Option(CLASSIFIER_WEIGHTS, help="Cell-type classifier weights."),
    subtype_weights: Path = typer.Option(SUBTYPE_WEIGHTS, help="Blast subtype classifier weights."),
    formats: list[ModelFormat] = typer.Option(["onnx"], "--format", help="Repeat the option for several."),
    detect_data: Path = typer.Option(
        BUILD_DIR / "detect" / "data.yaml", help="openvino-int8: detector calibration set (its val split)."
    ),
    classify_data: Path = typer.Option(
        BUILD_DIR / "cells" / "runs" / "all",
        help="openvino-int8: cell-type classifier calibration set (its val split).",
    ),
    subtype_data: Path = typer.Option(
        BUILD_DIR / "classify", help="openvino-int8: subtype classifier calibration set (its val split)."
    ),
) -> None:
    """Export the three models (dynamic batch and size) beside their .pt files, for `run --backend ...`.

    openvino-int8 quantises weights and activations to 8 bits (NNCF post-training quantisation,
    calibrated on the held-in val splits that `leukoscan data detect|classify` build): the fastest CPU
    backend on processors with VNNI; check it with bench/backends_agree.py and the eval scripts."""
    from leukoscan.model_export import export_models

    models = (
        (detector_weights, "detect", detect_data),
        (classifier_weights, "classify", classify_data),
        (subtype_weights, "classify", subtype_data),
    )
    export_models(models, formats)


if __name__ == "__main__":
    app()
