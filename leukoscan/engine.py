"""The local engine: the slides of a run screened one after another in this process, or ``--workers`` at a
time in worker processes (one slide each, the cores split between them), with one progress bar."""

from __future__ import annotations

import os
from pathlib import Path

from rich.markup import escape

from leukoscan import outputs
from leukoscan.cli import console, error, first_names, one_line, shown_name
from leukoscan.config import IMAGE_SUFFIXES, MAX_MEGAPIXELS
from leukoscan.journal import SlideBusy, busy
from leukoscan.models import ModelFiles, Models
from leukoscan.records import SlideVerdict, read_verdict
from leukoscan.slide import Slide, SlideTask


def screen_slides(
    models: Models, tasks: list[SlideTask], opts, bar, workers: int = 1, max_megapixels: float = MAX_MEGAPIXELS
) -> list[SlideVerdict]:
    """Screen each task's slide into its folder: in turn in this process, or ``workers`` slides at a time in worker
    processes that load their own models (from ``models.files``) with the run's image size limit. Returns the
    verdict of every slide screened (its ``slide``: the output folder's name), in the tasks' order; a slide that
    could not be written or that an error stopped gets one line, and the others go on."""
    if workers > 1:
        return _screen_in_parallel(tasks, opts, workers, models.files, max_megapixels, bar)
    return _screen_in_turn(models, tasks, opts, bar)


_worker_models: Models | None = None
_fields_done = None  # fields finished by all workers together (a shared counter the parent's progress bar reads)


def _init_worker(files: ModelFiles, threads: int, counter, fields_done, max_megapixels: float) -> None:
    """Each worker gets its own ``threads`` cores (CPU affinity, which ONNX Runtime and OpenVINO respect
    too) and as many torch threads, so workers never fight over a core; and the run's image size limit. Ctrl-C
    is the parent's to handle (it stops the workers): a worker would otherwise take the next queued slide."""
    global _worker_models, _fields_done
    import os
    import signal

    from leukoscan.images import limit_megapixels
    from leukoscan.runtime import setup, use_threads

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_parent()
    setup()  # a spawned process: the set-up of an entry point
    limit_megapixels(max_megapixels)

    _fields_done = fields_done
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) >= 2 * threads:
        start = (index * threads) % len(cores)
        os.sched_setaffinity(0, cores[start : start + threads])
    _worker_models = Models.from_files(files)
    use_threads(threads)  # after loading: the first Ultralytics import in this process sets every core


def _end_with_parent() -> None:
    """Linux: this worker gets SIGTERM when the process that started it dies (killed with -9, say), rather than
    screening the queued slides on its own for nobody."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's own stop (Ctrl-C, SIGTERM) still ends them
        pass


def _screen_in_worker(task: SlideTask, opts):
    from leukoscan.slide import screen_slide

    return screen_slide(_worker_models, task.slide, task.out, opts, _count_fields)


def _count_fields(n: int) -> None:
    with _fields_done.get_lock():
        _fields_done.value += n


def _screen_in_turn(models: Models, tasks: list[SlideTask], opts, bar) -> list[SlideVerdict]:
    from leukoscan.slide import screen_slide

    overall = bar.add_task("all slides", total=sum(len(t.slide.images) for t in tasks))
    verdicts = []
    for task in tasks:
        row = bar.add_task(escape(task.slide.name), total=len(task.slide.images))

        def advance(n, row=row):
            bar.advance(row, n)
            bar.advance(overall, n)

        try:
            verdicts.append(screen_slide(models, task.slide, task.out, opts, advance))
        except Exception as e:  # one slide's failure, whatever it is, ends that slide only
            slide_failed(task.out, e)
    return verdicts


def _screen_in_parallel(
    tasks: list[SlideTask], opts, workers: int, files: ModelFiles, max_megapixels: float, bar
) -> list[SlideVerdict]:
    """One slide per worker process; threads split so that workers x threads = cores (no oversubscription).
    A worker that stops (killed, out of memory) takes its pool's unfinished slides down with it: those are
    screened again, resuming from their journals, one at a time in a fresh worker, where the first to stop
    that worker again is the one that stops it (reported; the rest go on)."""
    import multiprocessing as mp

    from leukoscan.runtime import cores

    ctx = mp.get_context("spawn")
    fields_done = ctx.Value("i", 0)
    total = sum(len(t.slide.images) for t in tasks)
    overall = bar.add_task(f"all slides ({workers} workers)", total=total)

    def follow():  # (fields of a slide resumed are counted again: the bar stops at its end)
        bar.update(overall, completed=min(fields_done.value, total))

    def pool_of(n: int):
        from concurrent.futures import ProcessPoolExecutor

        initargs = (files, max(1, cores() // n), ctx.Value("i", 0), fields_done, max_megapixels)
        return ProcessPoolExecutor(n, mp_context=ctx, initializer=_init_worker, initargs=initargs)

    results, broken = _screen_round(pool_of(workers), tasks, opts, follow)
    if broken:
        console.print(
            f"[yellow]a worker process stopped unexpectedly (out of memory?):[/] {len(broken)} slide(s) it left "
            "unfinished are screened again one at a time, from what they finished",
            soft_wrap=True,
        )
    while broken:
        done, broken = _screen_round(pool_of(1), broken, opts, follow)
        results += done
        if broken:  # one worker, slides in order: the first one unfinished stopped it
            error(
                f"slide {shown_name(broken[0].name)}: its worker process stopped unexpectedly while screening it "
                "(out of memory?); the fields it finished are kept: a lower --max-megapixels or --batch may help"
            )
            broken = broken[1:]
    follow()
    order = {t.name: i for i, t in enumerate(tasks)}
    return sorted(results, key=lambda v: order[v.slide])


def _screen_round(pool, todo: list[SlideTask], opts, follow) -> tuple[list[SlideVerdict], list[SlideTask]]:
    """Screen the tasks ``todo`` in ``pool`` (then shut down): the verdicts of those screened, and the tasks a
    stopped worker left unfinished, in ``todo``'s order."""
    from concurrent.futures import wait
    from concurrent.futures.process import BrokenProcessPool

    futures = []
    try:
        for task in todo:
            futures.append(pool.submit(_screen_in_worker, task, opts))
        while wait(futures, timeout=0.25).not_done:  # the bar follows the workers field by field
            follow()
    except BrokenProcessPool:  # a worker died while slides were still being queued: those are left unfinished
        pass
    except KeyboardInterrupt:  # no queued slide starts, and the workers stop (their journals keep what they finished)
        _stop(pool)
        raise
    pool.shutdown()
    results, broken = [], []
    for i, task in enumerate(todo):
        try:
            if i >= len(futures):  # never queued: the pool broke before
                raise BrokenProcessPool
            results.append(futures[i].result())
        except BrokenProcessPool:
            broken.append(task)
        except Exception as e:  # as in turn: one slide's failure ends that slide only
            slide_failed(task.out, e)
    return results, broken


def _stop(pool) -> None:
    """Cancel the slides not started and end the worker processes now (a worker killed mid-field loses that field
    only: the journal is appended field by field)."""
    processes = list((pool._processes or {}).values())  # the executor has no public way to end its workers
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(5)


def not_busy(tasks: list[SlideTask]) -> list[SlideTask]:
    """The tasks whose slide no other run is screening into its folder now (``journal.busy``); each other one gets
    a line and is left out before this run counts its fields or loads a model for it. (Whoever screens a slide
    holds its lock meanwhile, so one taken in between is still found: ``slide_failed`` says so.)"""
    free = []
    for task in tasks:
        if (held := busy(task.out)) is not None:
            error(str(held))
        else:
            free.append(task)
    return free


def slide_failed(folder: Path, e: Exception) -> None:
    """One line for the slide of output folder ``folder`` that an error stopped; the other slides go on."""
    if isinstance(e, SlideBusy):
        error(str(e))
    elif isinstance(e, OSError):
        unwritable(folder, e)
    else:
        error(
            f"slide {shown_name(folder.name)}: stopped by an error ({type(e).__name__}: {one_line(e)}); the fields it "
            "finished are kept: run the same command again to resume"
        )


def unwritable(folder: Path, e: OSError) -> None:
    """One line for the slide whose outputs could not be written in ``folder`` (a full disk, no permission, a file
    in the way); the other slides go on."""
    where = f": {e.filename}" if e.filename else ""
    error(
        f"slide {shown_name(folder.name)}: could not write its outputs under {shown_name(folder)} "
        f"({e.strerror or type(e).__name__}{where})"
    )


def without_repeats(slides: list) -> list:
    """``slides`` less any given again (the same images: one named twice, or as ``.`` and by its path), each
    repeat said in one line; the first stays."""
    seen: dict[tuple[str, ...], Slide] = {}
    for s in slides:
        images = tuple(os.path.realpath(p) for p in s.images)  # (a link loop among them: no error)
        if (first := seen.get(images)) is not None:
            same = (
                f"{shown_name(s.name)} is given twice"
                if s.name == first.name
                else f"{shown_name(first.name)} and {shown_name(s.name)} hold the same images"
            )
            console.print(
                f"[yellow]note:[/] {escape(same)}: screened once, as {escape(shown_name(first.name))} "
                f"({escape(shown_name(s.source))})",
                soft_wrap=True,
            )
            continue
        seen[images] = s
    return list(seen.values())


def slides_given(paths: list[Path]) -> list[Slide]:
    """The slides named (folders, or images as slides of one), each once (``without_repeats``), with one line for
    each slide folder that also holds folders of images: they are not its fields (a slide is the images directly
    in its folder), and each is screened only when named as a slide; and one for each that holds images in a
    format it does not screen (a field saved as ``.gif`` would otherwise be missing without a word)."""
    slides = without_repeats([Slide.from_path(p) for p in paths])
    for s in slides:
        if s.folders_not_screened:
            folders = ", ".join(map(shown_name, s.folders_not_screened))
            console.print(
                f"[yellow]note:[/] {escape(shown_name(s.name))}: its folder(s) {escape(folders)} are not screened with "
                "it (a slide is the images directly in its folder): name each as a slide to screen it",
                soft_wrap=True,
            )
        if s.files_not_screened:
            console.print(
                f"[yellow]note:[/] {escape(shown_name(s.name))}: {len(s.files_not_screened)} image(s) in a format not "
                f"screened (only {', '.join(IMAGE_SUFFIXES)}): {escape(first_names(s.files_not_screened))}",
                soft_wrap=True,
            )
    return slides


def outside_slides(out: Path, tasks: list[SlideTask], given: list[Path]) -> None:
    """A ``ValueError`` when a slide's outputs (its task's folder in ``out``) would be written into a slide folder or
    below it
    (an --out that is the slides' parent, a slide folder itself or a folder in one): they would mix with its
    fields, and a rerun removes files it takes for its own there; inputs are never written to), or when ``out``
    is a file (said before any model loads)."""
    outputs.out_folder(out)
    folders = {Path(p).resolve() for p in given if Path(p).is_dir()}
    for task in tasks:
        target = task.out.resolve()
        if folders & {target, *target.parents}:
            raise ValueError(
                f"--out {out} would write slide {task.name}'s outputs into a slide folder: choose another --out"
            )


def slide_tasks(slides: list[Slide], out: Path) -> list[SlideTask]:
    """Each slide with its output folder in ``out`` (``unique_names``)."""
    return [SlideTask(slide, out / name) for slide, name in zip(slides, unique_names(slides, out))]


def unique_names(slides, out: Path | None = None) -> list[str]:
    """Each slide's output folder name: its own, or ``name-2``, ``name-3``... when that is taken (compared
    ignoring case, as some file systems do), so no two slides ever share a folder; in ``out``, a folder that
    holds another source's slide (its verdict.json's ``source``: another lab's slide of the same name) is taken
    too, so a slide never replaces another's results, and a slide screened before keeps its folder."""
    taken: set[str] = set()
    names = []
    for s in slides:
        name, k = s.name, 1
        while name.casefold() in taken or (out is not None and _holds_another(out / name, getattr(s, "source", ""))):
            k += 1
            name = f"{s.name}-{k}"
        taken.add(name.casefold())
        names.append(name)
    return names


def _holds_another(folder: Path, source: str) -> bool:
    """Whether ``folder`` holds the results of a slide read from elsewhere than ``source`` (verdict.json's
    ``source``; folders of earlier versions record none and are taken as this slide's)."""
    recorded = (read_verdict(folder) or {}).get("source", "")
    return bool(recorded and source and recorded != source)
