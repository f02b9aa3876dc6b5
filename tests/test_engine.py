"""The local engine (leukoscan/engine.py): slides screened in turn with a stub model bundle (no weights), each
into its own output folder under a unique name, one progress bar per slide and one over all, and a slide whose
outputs cannot be written reported in one line while the others go on."""

import errno
import json
from pathlib import Path
from types import SimpleNamespace

from stubs import stub_models
from synth import write_slide

from leukoscan.engine import screen_slides, slide_tasks, slides_given, unique_names, unwritable, without_repeats
from leukoscan.slide import Options, Slide


class Bar:
    """A progress bar stand-in that keeps each task's description, total and fields advanced."""

    def __init__(self):
        self.tasks = []

    def add_task(self, description, total):
        self.tasks.append({"description": description, "total": total, "done": 0})
        return len(self.tasks) - 1

    def advance(self, task, n=1):
        self.tasks[task]["done"] += n


def slides_sharing_a_name(root: Path) -> list[Slide]:
    """Three slides: ``a/slide`` (2 fields), ``b/slide`` (1 field, the same folder name) and ``other`` (3)."""
    folders = [write_slide(root / "a" / "slide", 2), write_slide(root / "b" / "slide", 1, seed=5)]
    folders.append(write_slide(root / "other", 3, seed=9))
    return [Slide.from_path(f) for f in folders]


def test_unique_names_keep_the_first_and_number_the_repeats_in_order():
    """Each slide keeps its name, except a repeat, which gets ``-2``, ``-3``, ... in the order given; the list
    is as long as the slides and in their order."""
    slides = [SimpleNamespace(name=n) for n in ("s", "t", "s", "u", "s", "t")]
    assert unique_names(slides) == ["s", "t", "s-2", "u", "s-3", "t-2"]
    assert unique_names([]) == []


def test_a_slide_given_twice_is_screened_once_and_dot_is_named_as_its_folder(tmp_path, monkeypatch, capsys):
    folder = write_slide(tmp_path / "patient 7", 1)
    monkeypatch.chdir(folder)
    dot = Slide.from_path(Path("."))
    assert dot.name == "patient 7"
    kept = without_repeats([dot, Slide.from_path(folder), Slide.from_path(tmp_path / "patient 7" / ".")])
    assert kept == [dot] and capsys.readouterr().err.count("is given twice: screened once") == 2


def test_slides_given_name_a_link_to_another_and_the_folders_left_out(tmp_path, capsys):
    """A link to a slide already named is that slide again, said with both names; a slide folder's own folders
    of images are not its fields, and a line says so; a file that is not an image is no slide."""
    import pytest

    folder = write_slide(tmp_path / "a" / "s", 1)
    write_slide(folder / "day 2", 1)
    (tmp_path / "link").symlink_to(folder)
    kept = slides_given([folder, tmp_path / "link"])
    err = capsys.readouterr().err
    assert [s.name for s in kept] == ["s"] and kept[0].folders_not_screened == ("day 2",)
    assert "s and link hold the same images: screened once, as s" in err
    assert "s: its folder(s) day 2 are not screened with it" in err.replace("\n", " ")
    assert err.count("are not screened with it") == 1  # said once, the repeat removed first
    (tmp_path / "noext").symlink_to(folder / next(p.name for p in folder.iterdir() if p.is_file()))
    assert slides_given([tmp_path / "noext"])[0].images == [tmp_path / "noext"]  # a link named otherwise: its target
    (tmp_path / "notes.txt").write_text("not a field")
    with pytest.raises(ValueError, match="not an image file: .*notes.txt"):
        slides_given([tmp_path / "notes.txt"])


def test_images_in_a_format_not_screened_are_named_in_one_line_and_webp_fields_are_screened(tmp_path, capsys):
    """A slide folder's images in a format leukoscan does not screen (a field saved as .gif) are said in one line,
    the first three by name; its notes are not; a folder of nothing else is refused with the reason; .webp fields
    are screened like any other."""
    import pytest
    from PIL import Image

    from leukoscan.images import load_rgb

    folder = write_slide(tmp_path / "s", 1)
    field = Image.open(next(folder.iterdir()))
    field.save(folder / "f9.webp")
    for name in ("a.gif", "b.gif", "c.jp2", "d.gif"):
        field.save(folder / name)
    (folder / "notes.txt").write_text("patient 7")
    (slide,) = slides_given([folder])
    assert [p.name for p in slide.images] == ["f0.png", "f9.webp"] and load_rgb(folder / "f9.webp").shape[2] == 3
    assert slide.files_not_screened == ("a.gif", "b.gif", "c.jp2", "d.gif")
    err = capsys.readouterr().err.replace("\n", " ")
    assert "s: 4 image(s) in a format not screened" in err and "a.gif, b.gif, c.jp2 and 1 more" in err
    assert "notes.txt" not in err
    only = tmp_path / "gifs"
    only.mkdir()
    field.save(only / "x.gif")
    with pytest.raises(ValueError, match=r"no images in slide folder .*gifs.*1 image\(s\) in another format \(x.gif"):
        slides_given([only])


def test_unique_names_never_repeat_even_when_a_slide_is_already_called_like_a_numbered_repeat():
    """Slides ``s-2``, ``s``, ``s``: the second ``s`` must not be given ``s-2`` (two slides would share an
    output folder); names differing in case only are told apart too (one folder on some file systems)."""
    assert unique_names([SimpleNamespace(name=n) for n in ("s-2", "s", "s")]) == ["s-2", "s", "s-3"]
    assert unique_names([SimpleNamespace(name=n) for n in ("Slide", "slide")]) == ["Slide", "slide-2"]


def test_slides_are_screened_in_order_each_into_its_unique_folder_with_progress(tmp_path):
    """Verdicts come back in the slides' order, each named as its folder, two slides of one name in folders of their
    own; each slide's verdict counts its own fields' cells (the stub finds two per field); the bar has one
    task over all fields and one per slide, each advanced to its total."""
    slides = slides_sharing_a_name(tmp_path / "in")
    bar, out = Bar(), tmp_path / "out"
    tasks = slide_tasks(slides, out)
    names = [t.name for t in tasks]
    assert names == ["slide", "slide-2", "other"] and [t.slide for t in tasks] == slides
    results = screen_slides(stub_models(), tasks, Options(), bar)
    assert [v.slide for v in results] == names
    for name, verdict, slide in zip(names, results, slides):
        assert verdict.slide == name and verdict.n_images == len(slide.images)  # summary and report say which
        assert verdict.call.n_cells == 2 * len(slide.images)
        saved = json.loads((out / name / "verdict.json").read_text())
        assert saved["n_images"] == len(slide.images) and saved["models"] == "stub"
    assert sorted(p.name for p in out.iterdir()) == ["other", "slide", "slide-2"]
    assert bar.tasks[0] == {"description": "all slides", "total": 6, "done": 6}
    assert [(t["description"], t["total"], t["done"]) for t in bar.tasks[1:]] == [
        ("slide", 2, 2),
        ("slide", 1, 1),
        ("other", 3, 3),
    ]


def test_a_slide_whose_folder_cannot_be_written_gets_one_error_line_and_the_others_go_on(tmp_path, capsys):
    """A file where a slide's output folder goes: that slide is left out of the results with one ``error:`` line
    on stderr naming it, and the slides before and after it are screened as usual."""
    slides = slides_sharing_a_name(tmp_path / "in")
    out = tmp_path / "out"
    out.mkdir()
    (out / "slide-2").write_text("a file where the second slide's folder goes")
    results = screen_slides(stub_models(), slide_tasks(slides, out), Options(), Bar())
    assert [v.slide for v in results] == ["slide", "other"]
    assert (out / "slide" / "verdict.json").is_file() and (out / "other" / "verdict.json").is_file()
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: slide slide-2: could not write its outputs under {out / 'slide-2'} ("
    )
    assert "Traceback" not in captured.err and "error:" not in captured.out


def test_a_slide_stopped_by_any_error_gets_one_line_and_the_others_are_kept(tmp_path, capsys, monkeypatch):
    """An error that is not about writing (a bug, the GPU out of memory) stops its slide only: one line naming it
    and the error, no traceback, and the slides before and after it screened as usual."""
    import leukoscan.slide

    screen = leukoscan.slide.screen_slide

    def fails_on_the_second(models, slide, out, *args, **kwargs):
        if out.name == "slide-2":
            raise RuntimeError("CUDA out of memory.\nTried to allocate 2.00 GiB")
        return screen(models, slide, out, *args, **kwargs)

    monkeypatch.setattr(leukoscan.slide, "screen_slide", fails_on_the_second)
    slides = slides_sharing_a_name(tmp_path / "in")
    results = screen_slides(stub_models(), slide_tasks(slides, tmp_path / "out"), Options(), Bar())
    assert [v.slide for v in results] == ["slide", "other"]
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "error: slide slide-2: stopped by an error (RuntimeError: CUDA out of memory.); the fields it finished are "
        "kept: run the same command again to resume"
    ]


def test_unwritable_says_why_and_where_in_one_line_showing_the_name_as_it_is(capsys):
    """The line gives the slide, its output folder and the system's reason with the file concerned (when the
    error names one, else the error's kind); a name with brackets is shown as it is, not read as markup."""
    out = Path("results")
    unwritable(out / "[bold]s", OSError(errno.ENOSPC, "No space left on device"))
    unwritable(out / "t", PermissionError(errno.EACCES, "Permission denied", "results/t/cells.csv"))
    unwritable(out / "u", FileExistsError())
    assert capsys.readouterr().err.splitlines() == [
        f"error: slide [bold]s: could not write its outputs under {out / '[bold]s'} (No space left on device)",
        f"error: slide t: could not write its outputs under {out / 't'} (Permission denied: results/t/cells.csv)",
        f"error: slide u: could not write its outputs under {out / 'u'} (FileExistsError)",
    ]


def test_a_slide_never_takes_over_another_sources_folder_and_keeps_its_own(tmp_path):
    """Two labs' slides called alike, screened in two runs (or one, in either order) into one --out: each keeps
    its own folder (verdict.json records its source), never replacing the other's results."""
    import pytest

    from leukoscan.engine import outside_slides

    a, b = slides_sharing_a_name(tmp_path)[:2]
    assert (a.source, b.source) == (
        str((tmp_path / "a" / "slide").resolve()),
        str((tmp_path / "b" / "slide").resolve()),
    )
    out = tmp_path / "out"
    (out / "slide").mkdir(parents=True)
    (out / "slide" / "verdict.json").write_text(json.dumps({"source": a.source}))
    assert unique_names([b], out) == ["slide-2"] and unique_names([a], out) == ["slide"]
    assert unique_names([b, a], out) == ["slide-2", "slide"] == unique_names([a, b], out)[::-1]
    (out / "slide" / "verdict.json").write_text(json.dumps({"slide": "slide"}))  # an earlier version's: no source
    assert unique_names([b], out) == ["slide"]
    # a link to a slide folder is named as the link (an accession number), not as its target
    (tmp_path / "patient_0417").symlink_to(tmp_path / "other")
    assert Slide.from_path(tmp_path / "patient_0417").name == "patient_0417"
    # an --out that is the slides' parent would write into their own folders
    with pytest.raises(ValueError, match="into a slide folder"):
        outside_slides(tmp_path / "a", slide_tasks([a], tmp_path / "a"), [tmp_path / "a" / "slide"])
    for inside in (tmp_path / "a" / "slide", tmp_path / "a" / "slide" / "results"):  # the slide folder, or in it
        with pytest.raises(ValueError, match="into a slide folder"):
            outside_slides(inside, slide_tasks([a], inside), [tmp_path / "a" / "slide"])
    outside_slides(out, slide_tasks([a], out), [tmp_path / "a" / "slide"])
    beside = tmp_path / "a" / "results"
    outside_slides(beside, slide_tasks([a], beside), [tmp_path / "a" / "slide"])  # beside it: fine


def test_a_slide_another_run_is_screening_is_left_out_with_one_line(tmp_path, capsys, lock_holder):
    """Two runs into one --out (the same command started twice): a slide another process is screening is left out
    with a line naming that process, both before the run counts it (``not_busy``) and when its screening starts
    (the lock is taken by whoever screens a slide, one at a time: no file kept open per slide); the others go on,
    and the slide is free again once that process has gone."""
    from leukoscan.engine import not_busy
    from leukoscan.journal import lock_path

    slides = slides_sharing_a_name(tmp_path / "in")
    out = tmp_path / "out"
    tasks = slide_tasks(slides, out)
    assert not_busy(tasks) == tasks and not (out / "slide").exists()  # nothing written to find that out
    lock = lock_path(out / "slide-2")
    lock.parent.mkdir(parents=True)
    holder = lock_holder(lock)
    line = (
        f"error: slide slide-2: another leukoscan run (pid {holder.pid}) is screening it into {out / 'slide-2'}: "
        "left out of this run (run this command again when that one has finished)"
    )
    assert [t.name for t in not_busy(tasks)] == ["slide", "other"]
    assert capsys.readouterr().err.splitlines() == [line]
    results = screen_slides(stub_models(), tasks, Options(), Bar())  # taken after the run counted it
    assert [v.slide for v in results] == ["slide", "other"] and not (out / "slide-2" / "verdict.json").exists()
    assert capsys.readouterr().err.splitlines() == [line]
    holder.kill()
    holder.wait()
    assert not_busy(tasks) == tasks
    assert [v.slide for v in screen_slides(stub_models(), tasks, Options(), Bar())] == ["slide", "slide-2", "other"]


def test_a_subfolder_that_cannot_be_read_does_not_stop_the_slide(tmp_path, monkeypatch):
    """``lost+found`` on a card: a folder in a slide that cannot be listed is passed over, the slide screened."""
    import leukoscan.slide

    folder = write_slide(tmp_path / "s", 1)
    (folder / "private").mkdir()
    listed = leukoscan.slide.list_images

    def list_images(path):
        if path.name == "private":
            raise PermissionError(13, "Permission denied", str(path))
        return listed(path)

    monkeypatch.setattr(leukoscan.slide, "list_images", list_images)
    slide = Slide.from_path(folder)
    assert len(slide.images) == 1 and slide.folders_not_screened == ()
