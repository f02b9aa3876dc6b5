"""What the CLI commands share on the console: progress bars, one-line errors with the documented exit
codes, and the option checks typer applies before a command runs.

Exit codes, the same in every command: 0 done; 1 nothing could be processed (or ``doctor`` found a
problem); 2 a usage or input error (a bad option value, a missing or malformed path, unusable weights); 130
interrupted (Ctrl-C, or ``kill`` where a command turns it into one).
Progress, logs and errors go to stderr; what a command reports as its result may go to stdout.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from typer.core import TyperGroup

from leukoscan.config import MAX_MEGAPIXELS, SETTINGS

T = TypeVar("T")
console = Console(stderr=True)
NOTHING_PROCESSED, USAGE_ERROR, INTERRUPTED = 1, 2, 130  # exit codes (0: done)


def progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def track(items: Sequence[T] | Iterable[T], description: str) -> Iterable[T]:
    items = list(items)
    with progress() as bar:
        task = bar.add_task(description, total=len(items))
        for item in items:
            yield item
            bar.advance(task)


def error(message: str) -> None:
    """One ``error:`` line on stderr, never wrapped (``message`` is shown as it is, brackets and all)."""
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)


def interrupted(what: str = "stopped before it finished") -> NoReturn:
    """End an interrupted command with one line saying ``what`` is kept, and exit code 130 (as a shell's Ctrl-C)."""
    console.print(f"[yellow]interrupted:[/] {escape(what)}", soft_wrap=True)
    raise typer.Exit(INTERRUPTED)


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """End the command with one ``error:`` line and exit code ``code``."""
    error(message)
    raise typer.Exit(code)


def one_line(e: BaseException) -> str:
    """What an exception says, on one line: an OSError's reason and file, anything else its first line."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def shown_name(name: str | Path) -> str:
    """A file or slide name as a terminal line shows it: itself, or quoted where it would not read as itself on a
    line (a newline, a tab, edge spaces)."""
    name = str(name)
    return name if name.isprintable() and name == name.strip() else repr(name)


def first_names(names: Sequence[str], n: int = 3) -> str:
    """The first ``n`` of ``names``, and how many more (one line, odd names quoted: ``shown_name``)."""
    return ", ".join(map(shown_name, names[:n])) + (f" and {len(names) - n} more" if len(names) > n else "")


@contextmanager
def user_errors(code: int = USAGE_ERROR) -> Iterator[None]:
    """Around the part of a command that reads what the user named (paths, weights, label sets, images): a
    missing, unreadable or unusable one (``OSError``, ``ValueError``) ends it with one line and ``code``."""
    try:
        yield
    except (OSError, ValueError) as e:
        fail(one_line(e), code)


def rollback_weights(current: Path, kind: str, sha: str) -> None:
    """``detect rollback`` and ``classify rollback``: restore the archived ``kind`` of model whose sha256 starts
    with ``sha`` as ``current`` (``WeightsRegistry.rollback``), or one line saying why not."""
    from leukoscan.cards import sha256
    from leukoscan.registry import WeightsRegistry

    with user_errors():
        WeightsRegistry(current, kind).rollback(sha)
        restored = sha256(current)
    console.print(f"restored {restored[:12]} as {escape(str(current))}", soft_wrap=True)


def show_json(value: Any, indent: int | None = 2) -> None:
    """A command's result as JSON on the console, as it is: no markup read into it, no line wrapped."""
    console.print(json.dumps(value, indent=indent), markup=False, highlight=False, emoji=False, soft_wrap=True)


def report_decision(result: dict, after_promotion: str = "") -> None:
    """``detect promote`` and ``classify promote``: the gate's figures (JSON, shown as they are), its note if
    any, and one line saying promoted or rejected and why (``after_promotion`` follows a promotion)."""
    show_json(result)
    if note := result.get("note"):
        console.print(f"[yellow]note: {escape(note)}[/]", soft_wrap=True)
    if result["promoted"]:
        then = f"\n{escape(after_promotion)}" if after_promotion else ""
        console.print(f"[green]promoted[/]: {escape(result['reason'])}{then}", soft_wrap=True)
    else:
        console.print(f"[yellow]rejected[/]: {escape(result['reason'])}", soft_wrap=True)


def _all_commands(group) -> Iterator[Any]:
    for command in getattr(group, "commands", {}).values():
        yield command
        yield from _all_commands(command)


def _with_value(e: Exception) -> str:
    """A usage error's message, naming the value given where typer's own check (pydantic's) does not: "--conf
    nan" reads "nan is not a number" (not "Input should be less than or equal to 1"), "--batch 0" reads "0:
    should be greater than or equal to 1"; pydantic's "Value error, " prefix is dropped."""
    message = e.format_message()
    errors = e.__cause__.errors() if hasattr(e.__cause__, "errors") else []
    said = errors[0].get("msg", "") if errors else ""
    if not said or not message.endswith(said):
        return message
    given, reason = str(errors[0].get("input")), said.removeprefix("Value error, ").removeprefix("Input ")
    if given.strip().lower().lstrip("+-") == "nan":
        reason = f"{given} is not a number"
    return message.removesuffix(said) + (reason if given in reason else f"{given}: {reason}")


class OneLineErrors(TyperGroup):
    """The command group of ``leukoscan``: a usage error in any command (an unknown option, a value typer
    refuses, a missing argument) is one ``error:`` line and exit code 2, instead of a boxed panel. A group's list
    of commands shows each command's first paragraph as one line of prose (typer keeps its line breaks there)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for command in _all_commands(self):
            if command.help and not command.short_help:
                first = inspect.cleandoc(command.help).split("\n\n")[0]
                command.short_help = " ".join(first.split())

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as e:  # typer's own click: a usage error, or a group's help shown
            if type(e).__name__ != "NoArgsIsHelpError":
                ctx = getattr(e, "ctx", None)
                error(_with_value(e) + (f" (see '{ctx.command_path} --help')" if ctx else ""))
            sys.exit(e.exit_code)
        except typer.Abort:
            error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx) -> Any:
        """A command interrupted (Ctrl-C, or ``kill`` where the command turns it into one) before it says what it
        keeps: one line and exit code 130 (typer's own exits 130 silently). The commands that write something
        say themselves what is kept."""
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            interrupted()


DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _device(value: str) -> str:
    if not DEVICE.fullmatch(value.strip().lower()):
        raise typer.BadParameter(f"{value!r} is not a device (use auto, cpu or cuda:N)")
    return value


def device_option() -> Any:
    """``--device``, checked by typer: auto (CUDA when present), cpu or cuda:N."""
    return typer.Option("auto", callback=_device, help="auto (CUDA when present), cpu or cuda:N.")


def finite(value: float | None) -> float | None:
    """A typer callback: a finite number (or no value); click's ranges let nan through (every comparison is False)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value:g} is not a finite number")
    return value


def positive(value: float | None) -> float | None:
    """A typer callback: a number above 0 (or no value); not nan or infinity."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(f"{value:g} is not a finite number above 0")
    return value


def _one_scale(ctx: typer.Context, value: float | None, other: str) -> None:
    """--cell-size and --um-per-px say the same thing: one of them (whichever comes second is refused)."""
    if value is not None and ctx.params.get(other) is not None:
        raise typer.BadParameter("give --cell-size or --um-per-px, not both")


def _cell_px(ctx: typer.Context, value: float | None) -> float | None:
    low, high = SETTINGS.geometry.min_cell_px, SETTINGS.geometry.max_cell_px
    _one_scale(ctx, value, "um_per_px")
    if positive(value) is not None and not low <= value <= high:
        raise typer.BadParameter(f"{value:g} px is not a white cell's diameter the models can use ({low:g}-{high:g})")
    return value


def _um_per_px(ctx: typer.Context, value: float | None) -> float | None:
    geo = SETTINGS.geometry
    _one_scale(ctx, value, "cell_size")
    if positive(value) is not None and not geo.min_cell_px <= geo.wbc_um / value <= geo.max_cell_px:
        raise typer.BadParameter(
            f"{value:g} µm/px makes a {geo.wbc_um:g} µm white cell {geo.wbc_um / value:.3g} px wide, outside the "
            f"{geo.min_cell_px:g}-{geo.max_cell_px:g} px the models can use"
        )
    return value


def cell_size_option() -> Any:
    """``--cell-size``: the fields' white-cell diameter in pixels, when the user knows it."""
    geo = SETTINGS.geometry
    return typer.Option(
        None,
        callback=_cell_px,
        help="White-cell diameter in pixels, "
        f"{geo.min_cell_px:g}-{geo.max_cell_px:g} (default: estimated per slide by the detector, from its white "
        "cells).",
    )


def um_per_px_option() -> Any:
    """``--um-per-px``: the fields' scale, when the user knows it (an alternative to ``--cell-size``)."""
    return typer.Option(
        None, callback=_um_per_px, help="Micrometres per pixel (an alternative to --cell-size: give one of them)."
    )


def max_megapixels_option() -> Any:
    """``--max-megapixels``: larger images are refused, each with a one-line reason."""
    return typer.Option(
        MAX_MEGAPIXELS,
        callback=positive,
        help="Larger images are refused (one line each, the "
        "others go on): a guard against decompression bombs and out-of-memory crashes.",
    )
