"""Screening one slide: fields are loaded, detected, cropped and classified in batches; each field's
overlay and uncertain-cell crops are written (on a thread pool), then its record is appended to the
slide's journal (so an interrupted run resumes); then the slide's tables and verdict are written. Bad
files become ``status=error`` rows and never stop the slide."""

from __future__ import annotations

import copy
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from functools import cache, partial
from pathlib import Path

import numpy as np
import pandas as pd
import supervision as sv
from PIL import Image

from leukoscan import outputs
from leukoscan.cells import CELL_TYPES, PROBS, with_probs
from leukoscan.classify.stain import SlideColour, crop_colour, stain_distance
from leukoscan.config import IMAGE_SUFFIXES, SETTINGS, Export, VerdictRules
from leukoscan.crops import contact_sheet, crop_cells
from leukoscan.exports import formats_kept, write_exports
from leukoscan.images import ImageError, header_size, list_images, load_rgb, output_stems, to_bgr
from leukoscan.journal import Journal, slide_lock
from leukoscan.lab import LabReference
from leukoscan.overlay import overlay
from leukoscan.quality import field_look, field_problem, look_array, overlaps, repeats, shared_cells
from leukoscan.records import (
    CELL_COLUMNS,
    IMAGE_COLUMNS,
    VERDICT_FILE,
    FieldResult,
    FieldStatus,
    SlideVerdict,
    cell_records,
    read_verdict,
)
from leukoscan.scale import Scale, size_key
from leukoscan.timing import Stopwatch
from leukoscan.verdict import image_calls, slide_verdict


@dataclass
class Slide:
    name: str
    images: list[Path]
    source: str = ""  # the folder (or single image) it was read from, resolved: recorded in verdict.json
    folders_not_screened: tuple[str, ...] = ()  # folders in it that hold images: a slide is its own fields only
    files_not_screened: tuple[str, ...] = ()  # files in it in an image format leukoscan does not screen (.gif...)

    @classmethod
    def from_path(cls, path: Path) -> Slide:
        """A folder of fields, or one image file as a slide of one image."""
        path = Path(path)
        if path.is_dir():
            images = list_images(path)
            folders = tuple(sorted(d.name for d in path.iterdir() if _holds_images(d)))
            others = _other_images(path)
            if not images:
                hint = (
                    f"; it holds {len(folders)} folder(s) that do: name each as a slide ({path}/*)" if folders else ""
                )
                if others:
                    hint += f"; it holds {len(others)} image(s) in another format ({others[0]}...): convert them"
                raise ValueError(f"no images in slide folder {path} (looked for {', '.join(IMAGE_SUFFIXES)}){hint}")
            # named as given (a link keeps its own name, as an accession number would be), `.` as its folder is
            name = path.absolute().name if path.name not in ("", ".", "..") else path.resolve().name or "slide"
            return cls(name, images, str(path.resolve()), folders, others)
        if path.is_file():
            if path.suffix.lower() not in IMAGE_SUFFIXES and path.resolve().suffix.lower() not in IMAGE_SUFFIXES:
                raise ValueError(
                    f"not an image file: {path} (a slide is a folder of fields or one image: "
                    f"{', '.join(IMAGE_SUFFIXES)})"
                )
            return cls(path.stem, [path], str(path.resolve()))
        raise FileNotFoundError(f"no such slide folder or image: {path}")


def _other_images(folder: Path) -> tuple[str, ...]:
    """The names of the files (not hidden) directly in ``folder`` in an image format that ``list_images`` leaves
    out (``.gif``, ``.jp2``, ``.pdf``...: one Pillow knows, not a field format leukoscan screens); a lab's notes
    and a scanner's metadata are not named."""
    known = Image.registered_extensions()
    return tuple(
        sorted(
            p.name
            for p in folder.iterdir()
            if p.suffix.lower() in known
            and p.suffix.lower() not in IMAGE_SUFFIXES
            and p.is_file()
            and not p.name.startswith(".")
        )
    )


def _holds_images(folder: Path) -> bool:
    """A folder (not hidden) with images directly in it; one that cannot be read (``lost+found`` on a card) holds
    none as far as a slide is concerned."""
    try:
        return folder.is_dir() and not folder.name.startswith(".") and bool(list_images(folder))
    except OSError:
        return False


@dataclass
class SlideTask:
    """A slide of a run and the folder its outputs go to (``--out/<name>``, ``engine.slide_tasks``): what the
    engines screen."""

    slide: Slide
    out: Path

    @property
    def name(self) -> str:
        """Its output folder's name (the slide's own, or ``name-2``...): ``SlideVerdict.slide``, the error lines'."""
        return self.out.name


@dataclass
class Options:
    cell_size: float | None = None
    um_per_px: float | None = None
    batch: int = SETTINGS.run.batch
    batch_megapixels: float = SETTINGS.run.batch_megapixels  # large photographs go fewer at a time
    force: bool = False
    rules: VerdictRules = field(default_factory=lambda: SETTINGS.verdict)
    exports: tuple[Export, ...] = ()  # cell exports for other tools (leukoscan/exports.py)
    lab: LabReference | None = None  # the lab's own blast reference (--lab-reference), None: the model's calls
    key: str = ""  # how the fields are screened (screening_key): a field journalled under another is screened again


def screening_key(models, opts: Options) -> str:
    """What a field's results depend on besides its file, as a short hash: the models (their sha256, scores
    and backend, and the version; not their paths, nor the device: CPU and CUDA answer alike), the scale the
    user gave (``--cell-size``, ``--um-per-px``), the lab reference's offset and the uncertain-cell threshold
    (the verdict rules are applied to the journalled cells afresh each run). Models are only read from their
    files and cards (lazy ones stay unloaded)."""
    described = models.description
    what = {
        "version": described["version"],
        "backend": described["backend"],
        # (not the .pt an export came from: its own sha256 says which model it is)
        "models": {
            name: {k: v for k, v in m.items() if k not in ("file", "weights_sha256")}
            for name, m in described["models"].items()
        },
        "scale": [opts.cell_size, opts.um_per_px],
        "lab_offset": opts.lab.offset if opts.lab else None,
        "uncertain_p": opts.rules.uncertain_p,  # which cells' crops a field's uncertain/ folder holds
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _Field:
    """One field through a batch's stages: decoded, its white-cell size, its cells found and checked
    (``problem``: why it is not a usable smear, its cells then dropped), cut (``crops``) and classified."""

    path: Path
    stem: str  # its output files' name
    rgb: np.ndarray
    cell_px: float = 0.0
    det: sv.Detections | None = None
    problem: str = ""
    crops: np.ndarray | None = None


def _screen_fields(
    models,
    out: Path,
    journal: Journal,
    images: list[Path],
    scale: Scale,
    opts: Options,
    decoded: dict[Path, np.ndarray],
    stems: dict[Path, str],
    stain: SlideColour | None = None,
) -> dict[Path, FieldResult]:
    """Process a batch of fields end to end; records (in ``journal``) and returns one result per field.
    Fields in ``decoded`` (the scale search's samples) are taken from there instead of being decoded again;
    ``stems`` names each field's output files; ``stain``: the slide's colour (``_slide_stain``)."""
    pool, states, batch, watch = _field_pool(), {}, [], Stopwatch()
    with watch("decode"):  # one field after another (a field that cannot be read is journalled as an error at once)
        for path, rgb in zip(images, map(_load_or_error, images, [decoded.pop(path, None) for path in images])):
            if isinstance(rgb, ImageError):
                states[path] = journal.record(path, FieldResult(FieldStatus.ERROR, str(rgb)))
            else:
                batch.append(_Field(path, stems[path], rgb))
    if not batch:
        return states
    with watch("detect"):
        for f in batch:
            f.cell_px = scale.cell_px(f.rgb, models.detector)
        for f, det in zip(batch, models.detector.detect([f.rgb for f in batch], [f.cell_px for f in batch])):
            f.det = det
    with watch("quality"):  # a field that is not a usable smear keeps its overlay and says why; its cells do not count
        for f, problem in zip(batch, pool.map(lambda f: field_problem(f.rgb, len(f.det), f.cell_px), batch)):
            f.problem, f.det = problem, f.det[np.zeros(0, dtype=int)] if problem else f.det
    with watch("crop"):
        for f, crops in zip(batch, pool.map(lambda f: models.classifier.crops(f.rgb, f.det, f.cell_px), batch)):
            f.crops = crops
    with watch("classify"):
        _classify_fields(models, batch, stain, opts.lab)
    with watch("write"):  # the fields' outputs on every core, then recorded
        done = list(pool.map(partial(_write_field, out, opts.rules), batch))
    seconds = watch.per(len(batch))
    for f, state in zip(batch, done):
        states[f.path] = journal.record(f.path, replace(state, seconds=seconds))
    return states


def _classify_fields(models, batch: list[_Field], stain: SlideColour | None, lab: LabReference | None) -> None:
    """Every cell of a batch of fields classified in one batch (its type probabilities, ``stain``: the slide's
    colour for a model trained on normalised crops; ``lab``: the lab reference's blast offset), then the blasts
    subtyped; each field's ``det`` in place."""
    crops = [f.crops for f in batch]
    probs = (
        models.classifier.probs(models.classifier.normalise(np.concatenate(crops), stain))
        if sum(map(len, crops))
        else np.zeros((0, len(CELL_TYPES)))
    )
    if lab is not None:
        probs = lab.apply(probs)
    dets = [with_probs(f.det, p) for f, p in zip(batch, np.split(probs, np.cumsum([len(f.det) for f in batch])[:-1]))]
    for f, det in zip(batch, models.subtype.subtype_fields([f.rgb for f in batch], dets)):
        f.det = det


def _write_field(out: Path, rules: VerdictRules, f: _Field) -> FieldResult:
    """Write a classified field's overlay and uncertain-cell crops (named from its stem); its result
    (``unusable`` with the problem when the field is not a usable smear).

    The files are written in place, not atomically: the journal line written after them is what marks
    the field done, so a field cut short is screened again (and its files rewritten) on resume."""
    rgb, det, stem = f.rgb, f.det, f.stem
    outputs.write_jpeg(out / _overlay_name(stem), overlay(to_bgr(rgb), det), atomic=False)
    if len(det):  # every cell's picture for the review page's gallery, in one sheet (see gallery_name)
        geo = SETTINGS.geometry
        pictures = crop_cells(rgb, det.xyxy, size=geo.gallery_px, margin=2 * geo.crop_margin)
        outputs.write_jpeg(out / gallery_name(stem), to_bgr(contact_sheet(pictures, geo.gallery_columns)), atomic=False)
    uncertain = np.nonzero(det.data[PROBS].max(axis=1) < rules.uncertain_p)[0] if len(det) else []
    for i, crop in zip(
        uncertain,
        crop_cells(
            rgb, det.xyxy[uncertain], size=SETTINGS.geometry.uncertain_px, margin=SETTINGS.geometry.uncertain_margin
        ),
    ):
        outputs.write_jpeg(out / "uncertain" / f"{stem}_{i:03d}.jpg", to_bgr(crop), atomic=False)  # see _crop_field
    colour = np.median(crop_colour(f.crops), axis=0).tolist() if len(f.crops) else None
    return FieldResult(
        FieldStatus.UNUSABLE if f.problem else FieldStatus.OK,
        f.problem,
        cells=cell_records(f.path.name, det),
        overlay=_overlay_name(stem),
        stain_lab=colour,
        size=[rgb.shape[1], rgb.shape[0]],
        look=field_look(rgb),
    )


def _overlay_name(stem: str) -> str:
    """A field's overlay, relative to its slide's output folder (as images.csv gives it)."""
    return f"overlays/{stem}.jpg"


def gallery_name(stem: str) -> str:
    """A field's gallery sheet, relative to its slide's output folder: cell ``i`` of the field (cells.csv's
    ``cell``) is the ``gallery_px`` square at column ``i % gallery_columns``, row ``i // gallery_columns``."""
    return f"gallery/{stem}.jpg"


def _clear_crops(folder: Path, stems: set[str]) -> None:
    """Remove the uncertain-cell crops an earlier run wrote for the fields about to be screened again
    (``<stem>_<cell>.jpg``; one listing of the folder), so the review gallery never shows a stale one."""
    if stems and folder.is_dir():
        for crop in folder.glob("*.jpg"):
            if _crop_field(crop) in stems:
                crop.unlink(missing_ok=True)


def _remove_stale(out: Path, stems: set[str]) -> None:
    """Remove the per-field outputs (overlay, gallery sheet, uncertain-cell crops, QuPath file) of fields an
    earlier run screened that are no longer in the slide (``stems``: its fields' output stems), so the slide's
    folder holds what images.csv lists and nothing a reviewer could take for this run's."""
    for folder, pattern, field_of in (
        ("overlays", "*.jpg", lambda f: f.stem),
        ("gallery", "*.jpg", lambda f: f.stem),
        ("uncertain", "*.jpg", _crop_field),
        ("geojson", "*.geojson", lambda f: f.stem),
    ):
        for file in (out / folder).glob(pattern) if (out / folder).is_dir() else ():
            if field_of(file) not in stems:
                file.unlink(missing_ok=True)


def _crop_field(crop: Path) -> str:
    """The output stem of the field an uncertain-cell crop (``<stem>_<cell>.jpg``) belongs to."""
    return crop.stem.rsplit("_", 1)[0]


@cache
def _field_pool() -> ThreadPoolExecutor:
    """Threads for the per-field work around the models (cropping, drawing, encoding and writing
    release the GIL for much of their time): one per core this process may use (a ``--workers``
    process is pinned to its share), kept for the process's life (a new thread's first OpenCV calls are slow)."""
    from leukoscan.runtime import cores

    return ThreadPoolExecutor(cores())


def screen_slide(
    models, slide: Slide, out: Path, opts: Options, advance=lambda n: None, plan: SlidePlan | None = None
) -> SlideVerdict:
    """Screen ``slide`` into ``out``: its fields (``_screen_unfinished``), then its tables (``_slide_tables``)
    and verdict (``_verdict_record``); returns the verdict record (also written to verdict.json). ``plan``: the
    slide's plan when its fields were screened elsewhere (``plan_slide``, ``screen_batch``): its scale and
    colour are the slide's. A ``SlideBusy`` when another run is screening into ``out`` (``journal.slide_lock``)."""
    with slide_lock(out):
        return _screen_slide(models, slide, out, opts, advance, plan)


def _screen_slide(models, slide: Slide, out: Path, opts: Options, advance, plan: SlidePlan | None) -> SlideVerdict:
    watch = Stopwatch()
    with watch("total"):
        states, plan = _screen_unfinished(models, slide, out, opts, advance, watch, plan)
        with watch("aggregate"):
            states = _counted_once(states)
            states, shared = _shared_counted_once(states)
            cells, images = _slide_tables(states, plan.stems, shared)
            verdict = _verdict_record(models, slide, out.name, opts, cells, images, states, plan.scale, plan.stain)
            outputs.write_csv(out / "cells.csv", cells)
            outputs.write_csv(out / "images.csv", images)
            _remove_stale(out, {*plan.stems.values(), *(Path(s.overlay).stem for s in states.values() if s.overlay)})
            if exports := formats_kept(out, opts.exports):
                read = [p for p in slide.images if states[p].status != FieldStatus.ERROR]
                # each field's size as screened (journals of earlier versions: from its file's header now)
                headers = _field_sizes([p for p in read if not states[p].size])
                shapes = {p.name: tuple(states[p].size) if states[p].size else headers[p] for p in read}
                names = {p.name: plan.stems[p] for p in read}
                write_exports(out, cells, names, shapes, exports)
    verdict.seconds = {**watch.per(1, digits=3), **_mean_seconds(states.values())}
    outputs.write_json(out / VERDICT_FILE, verdict.record())
    return verdict


def _screen_unfinished(
    models, slide: Slide, out: Path, opts: Options, advance, watch: Stopwatch, plan: SlidePlan | None = None
) -> tuple[dict[Path, FieldResult], SlidePlan]:
    """Screen the fields of ``slide`` that the journal in ``out`` does not hold finished (all of them with
    ``opts.force``), in batches, after the slide's scale and colour are found on sample fields (``plan_slide``,
    unless a ``plan`` is given). Returns every field's state (journalled or new) and the plan; ``watch``
    times the scale search and the fields."""
    decoded: dict[Path, np.ndarray] = {}  # the scale search's sample fields, screened without a second decode
    # the journal is read once: the plan's fields and the states
    with Journal(out, fresh=opts.force and plan is None, key=opts.key) as journal:
        states = {p: journal.finished(p) for p in slide.images}
        with watch("scale_search"):
            plan = plan or _plan(models, slide, out, opts, states, decoded)
        todo = [p for p in plan.todo if states[p] is None]  # (a plan's fields may have been screened elsewhere)
        advance(len(slide.images) - len(todo))
        with watch("fields"):
            for chunk in batches(todo, plan.sizes, opts.batch, opts.batch_megapixels * 1e6):
                states.update(
                    _screen_fields(models, out, journal, chunk, plan.scale, opts, decoded, plan.stems, plan.stain)
                )
                advance(len(chunk))
    states = {p: s or FieldResult(FieldStatus.ERROR, "not processed") for p, s in states.items()}
    return states, plan


@dataclass
class SlidePlan:
    """What screening a slide's remaining fields takes (``plan_slide``), for ``screen_slide`` or for an engine
    that screens them elsewhere (``screen_batch`` on any machine, then ``screen_slide`` with the plan to
    aggregate): the fields left, the slide's scale and colour (found on its sample fields, or an earlier run's
    when nothing is left), each field's output name and size."""

    todo: list[Path]
    scale: Scale
    stain: SlideColour | None
    stems: dict[Path, str]
    sizes: dict[Path, tuple[int, int] | None] = field(default_factory=dict)


def plan_slide(
    models, slide: Slide, out: Path, opts: Options, decoded: dict[Path, np.ndarray] | None = None
) -> SlidePlan:
    """The fields of ``slide`` the journal in ``out`` does not hold finished (all with ``opts.force``, whose
    journal is started afresh here), and the slide's scale and colour; the sample fields decoded to find them
    are added to ``decoded``."""
    with Journal(out, fresh=opts.force, key=opts.key) as journal:
        return _plan(models, slide, out, opts, {p: journal.finished(p) for p in slide.images}, decoded)


def _plan(
    models, slide: Slide, out: Path, opts: Options, finished: dict[Path, FieldResult | None], decoded: dict | None
) -> SlidePlan:
    """``plan_slide`` given what the slide's journal holds ``finished`` (None: a field to screen)."""
    todo = [p for p in slide.images if finished[p] is None]
    stems = output_stems(slide.images)
    previous = (read_verdict(out) or {}) if len(todo) < len(slide.images) else {}
    if "scale" in previous and not todo:  # nothing left to screen: the scale and colour the fields were screened at
        stain = SlideColour.from_record(previous.get("stain_normalisation"))
        return SlidePlan([], Scale.from_record(previous["scale"]), stain, stems)
    decoded = {} if decoded is None else decoded
    sizes = _field_sizes(slide.images)
    if previous.get("scale") and previous.get("screening_key") == opts.key:  # fields added to a screened slide:
        # at the scale and colour of those screened before (the key holds a scale the user gave, not an estimate)
        scale, stain = (
            Scale.from_record(previous["scale"]),
            SlideColour.from_record(previous.get("stain_normalisation")),
        )
    else:
        scale = _slide_scale(models.detector, slide, opts, decoded, sizes)
        stain = _slide_stain(models, slide, scale, decoded, sizes)
    _clear_crops(out / "uncertain", {stems[p] for p in todo})
    return SlidePlan(todo, scale, stain, stems, sizes)


def screen_batch(models, out: Path, opts: Options, plan: SlidePlan, fields: list[Path]) -> dict[Path, FieldResult]:
    """Screen ``fields`` (some of ``plan.todo``) of the slide whose outputs go to ``out``, each recorded in its
    journal as it finishes (appended: batches of one slide may run at once, in several processes)."""
    with Journal(out, key=opts.key) as journal:
        scale = copy.deepcopy(plan.scale)  # a field size first met here is added to this batch's copy
        return _screen_fields(models, out, journal, fields, scale, opts, {}, plan.stems, plan.stain)


def _counted_once(states: dict[Path, FieldResult]) -> dict[Path, FieldResult]:
    """``states`` with each usable field that is the same picture as another usable field of the slide (a copy,
    the same field saved again in another format or size, or captured twice: ``quality.repeats``) marked
    ``duplicate`` and its cells left out: a cell is counted once, in the largest of the copies (the first in the
    slide's order among those of one size). Decided when the slide's tables are made, from every field's look, so
    the same in every engine and on resume; a field journalled without a look (an earlier version, or a damaged
    one) is kept."""
    fields = []
    for path, state in states.items():
        look = look_array(state.look) if state.status == FieldStatus.OK and state.look and state.size else None
        if look is not None:
            fields.append((path, look, *state.size))
    fields.sort(key=lambda f: -f[2] * f[3])  # the largest first (stable: in the slide's order within a size)
    paths = [path for path, *_ in fields]
    kept = dict(states)
    for path, first in zip(paths, repeats([look for _, look, *_ in fields], [w / h for *_, w, h in fields])):
        if first is not None:
            why = f"the same picture as {paths[first].name}"
            kept[path] = replace(states[path], status=FieldStatus.DUPLICATE, error=why, cells=[])
    return kept


def _shared_counted_once(
    states: dict[Path, FieldResult],
) -> tuple[dict[Path, FieldResult], dict[Path, dict[str, int]]]:
    """``states`` with the cells that a usable field shares with an earlier usable field of the same size showing
    part of the same smear (the stage moved by less than a field between them: ``quality.overlaps``) left out of
    it: a cell is counted once, in the first field it is in (in the slide's order), where the two fields' cells
    bear the overlap out (``quality.shared_cells``). Also, for each field that shares cells, how many with which
    earlier field. Decided when the slide's tables are made, as repeats are; a field journalled without a look of
    ``look_side`` (an earlier version) is compared with none."""
    side = SETTINGS.quality.look_side
    by_size: dict[tuple[int, int], list[tuple[Path, np.ndarray]]] = {}
    for path, state in states.items():
        look = look_array(state.look) if state.status == FieldStatus.OK and state.look and state.size else None
        if look is not None and look.shape[0] == side:
            by_size.setdefault(tuple(state.size), []).append((path, look))
    kept, shared = dict(states), {}
    for (width, height), fields in by_size.items():
        paths = [path for path, _ in fields]
        for i, j, dx, dy in overlaps([look for _, look in fields]):
            mine, theirs = states[paths[i]].cells, states[paths[j]].cells  # (every cell of each, as screened)
            same = shared_cells(_boxes(mine), _boxes(theirs), (dx * width, dy * height), (width, height))
            if same is None:  # the cells do not bear the overlap out
                continue
            left = kept[paths[i]].cells  # (less those an earlier overlap of the field took already)
            taken = {id(c) for c, s in zip(mine, same) if s} & {id(c) for c in left}
            if taken:
                kept[paths[i]] = replace(kept[paths[i]], cells=[c for c in left if id(c) not in taken])
                shared.setdefault(paths[i], {})[paths[j].name] = len(taken)
    return kept, shared


def _boxes(cells: list[dict]) -> np.ndarray:
    """The boxes (N x 4 xyxy) of a field's cell records."""
    return np.array([[c["x1"], c["y1"], c["x2"], c["y2"]] for c in cells], float).reshape(-1, 4)


def _slide_tables(
    states: dict[Path, FieldResult], stems: dict[Path, str], shared: dict[Path, dict[str, int]] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The slide's cells.csv and images.csv tables from its fields' results (``shared``: the cells each field
    shares with earlier overlapping fields, counted there: ``_shared_counted_once``)."""
    shared = shared or {}
    cells = pd.DataFrame([c for s in states.values() for c in s.cells], columns=CELL_COLUMNS)
    images = pd.DataFrame(
        {
            "image": [p.name for p in states],
            "status": [s.status for s in states.values()],
            "error": [s.error for s in states.values()],
            # journals of earlier versions have no overlay entry: their overlays are named by stem
            "overlay": [
                s.overlay or (_overlay_name(stems[p]) if s.status != FieldStatus.ERROR else "")
                for p, s in states.items()
            ],
        },
        dtype=object,
    )
    images["n_cells"] = images.image.map(cells.image.value_counts()).fillna(0).astype(int)
    images["n_shared"] = [sum(shared.get(p, {}).values()) for p in states]
    images["overlaps"] = ["; ".join(f"{name} ({n})" for name, n in shared.get(p, {}).items()) for p in states]
    # no cells (or an error): empty label, NaN probabilities
    images = images.join(image_calls(cells), on="image").fillna({"label": "", "n_blasts": 0, "n_white_cells": 0})
    return cells, images.astype({"n_blasts": int, "n_white_cells": int})[IMAGE_COLUMNS]


def _verdict_record(
    models,
    slide: Slide,
    name: str,
    opts: Options,
    cells: pd.DataFrame,
    images: pd.DataFrame,
    states: dict[Path, FieldResult],
    scale: Scale,
    stain: dict | None,
) -> SlideVerdict:
    """The slide's verdict (``slide_verdict``) under ``name`` (its output folder's: unique in the run, where two
    slides' folders share a name) with what it was screened with, needing review when too many fields are
    unreadable or not usable smears."""
    colours = [s.stain_lab for s in states.values() if s.stain_lab]
    stain_z = stain_distance(np.median(colours, axis=0) if colours else None, models.classifier.stain_reference)
    unusable, unreadable, duplicates = (
        int((images.status == status).sum())
        for status in (FieldStatus.UNUSABLE, FieldStatus.ERROR, FieldStatus.DUPLICATE)
    )
    call = slide_verdict(cells, opts.rules, stain_z, usable_fields=int((images.status == FieldStatus.OK).sum()))
    if unusable + unreadable > opts.rules.review_unusable_fraction * len(slide.images):
        what = [f"{n} {kind}" for n, kind in ((unreadable, "unreadable"), (unusable, "not usable smears")) if n]
        call.review_reasons.append(f"{' and '.join(what)} of {len(slide.images)} fields (images.csv says why)")
    return SlideVerdict(
        slide=name,
        n_images=len(slide.images),
        n_failed=unreadable,
        n_unusable=unusable,
        call=call,
        scale=scale,
        stain_normalisation=stain,
        stain_z=stain_z,
        thresholds=opts.rules,
        screened_with=models.description,
        lab_reference=opts.lab.record() if opts.lab else None,
        screened_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        source=slide.source,
        key=opts.key,
        n_duplicates=duplicates,
        n_shared_cells=int(images.n_shared.sum()),
    )


def _field_sizes(paths: list[Path]) -> dict[Path, tuple[int, int] | None]:
    """(width, height) of each image as it will be loaded (EXIF rotation applied), from its header alone;
    None when it cannot be read (reported when the field is screened)."""
    sizes: dict[Path, tuple[int, int] | None] = {}
    for path in paths:
        try:
            sizes[path] = header_size(path)
        except Exception:
            sizes[path] = None
    return sizes


def batches(paths: list[Path], sizes: dict, n: int, max_pixels: float):
    """``paths`` in batches of at most ``n`` fields and (unless one field alone is larger) ``max_pixels``."""
    chunk, pixels = [], 0
    for path in paths:
        w, h = sizes.get(path) or (0, 0)
        if chunk and (len(chunk) == n or pixels + w * h > max_pixels):
            yield chunk
            chunk, pixels = [], 0
        chunk.append(path)
        pixels += w * h
    if chunk:
        yield chunk


def _slide_scale(
    detector,
    slide: Slide,
    opts: Options,
    decoded: dict[Path, np.ndarray],
    sizes: dict,
    n_fields: int = SETTINGS.detection.scale_fields,
) -> Scale:
    """White-cell size in pixels for the slide's fields: the user's, or estimated once per field size
    (``sizes``: fields of one size come from one camera and magnification) from the first readable
    fields, which are added to ``decoded``."""
    if opts.cell_size:
        return Scale("--cell-size", given_px=opts.cell_size)
    if opts.um_per_px:
        return Scale("--um-per-px", given_px=SETTINGS.geometry.wbc_um / opts.um_per_px)
    samples: dict[str, list[Path]] = {}
    for path in slide.images:
        if sizes.get(path) is None:  # unreadable: reported when the field is screened
            continue
        group = samples.setdefault(size_key(*sizes[path]), [])
        if len(group) < n_fields:
            group.append(path)
    estimates = {}
    for key, paths in samples.items():
        fields = {p: rgb for p, rgb in zip(paths, map(_load_or_error, paths)) if not isinstance(rgb, ImageError)}
        decoded.update(fields)
        if fields:
            estimates[key] = round(detector.estimate_cell_px(list(fields.values())), 2)
    return Scale(f"estimated from up to {n_fields} field(s) per field size", by_field_size=estimates)


def _slide_stain(
    models,
    slide: Slide,
    scale: Scale,
    decoded: dict[Path, np.ndarray],
    sizes: dict,
    min_cells: int = SETTINGS.detection.stain_cells,
    max_fields: int = SETTINGS.detection.stain_fields,
) -> SlideColour | None:
    """The colour of the slide's cells, for a classifier trained on colour-normalised crops (None for one
    trained without, or when no cell is found): ``SlideColour.of`` the classifier's crops (the pixels of its
    card's ``region``) of the usable ones of its first fields (until ``min_cells`` cells or ``max_fields`` fields
    looked at, usable or not: a slide of unusable fields is not decoded twice over; the same fields on every run
    and resume), which are added to ``decoded``."""
    if not models.classifier.stain_normalisation:
        return None
    crops, fields = [], 0
    for path in slide.images:
        if fields >= max_fields or sum(map(len, crops)) >= min_cells:
            break
        rgb = decoded.get(path) if path in decoded else _load_or_error(path) if sizes.get(path) else None
        if rgb is None or isinstance(rgb, ImageError):
            continue
        decoded[path] = rgb
        fields += 1
        cell_px = scale.cell_px(rgb, models.detector)
        det = models.detector.detect([rgb], [cell_px])[0]
        if field_problem(rgb, len(det), cell_px):  # not a usable smear: its colour says nothing of the slide's
            continue
        crops.append(models.classifier.crops(rgb, det, cell_px))
    if not sum(map(len, crops)):
        return None
    return SlideColour.of(np.concatenate(crops), models.classifier.stain_normalisation.get("region", "cells"), fields)


def _load_or_error(path: Path, known: np.ndarray | None = None) -> np.ndarray | ImageError:
    """The field (``known`` if already decoded), or the ImageError that says why it cannot be read."""
    try:
        return load_rgb(path) if known is None else known
    except ImageError as e:
        return e


def _mean_seconds(states) -> dict:
    per = [s.seconds for s in states if s.seconds]
    return {f"{k}_per_image": round(float(np.mean([p[k] for p in per])), 4) for k in (per[0] if per else {})}
