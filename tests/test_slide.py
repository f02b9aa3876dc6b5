"""A slide's screening (leukoscan/slide.py): the seam an engine that screens fields elsewhere uses (plan_slide,
screen_batch in any order and grouping, then screen_slide aggregating) gives the outputs of one screen_slide."""

import json

import numpy as np
import pandas as pd
from stubs import StubDetector, stub_models
from synth import write_slide

from leukoscan.models import Models
from leukoscan.slide import Options, Slide, plan_slide, screen_batch, screen_slide


def without_timings(verdict: dict) -> dict:
    return {k: v for k, v in verdict.items() if k not in ("seconds", "screened_at")}


def test_fields_screened_in_batches_out_of_order_then_aggregated_match_one_run(tmp_path):
    folder = tmp_path / "slide"
    write_slide(folder, 4, seed=120)
    slide, opts, models = Slide.from_path(folder), Options(), Models.load(device="cpu")
    at_once = screen_slide(models, slide, tmp_path / "a" / "slide", opts)

    plan = plan_slide(models, slide, tmp_path / "b" / "slide", opts)
    assert plan.todo == slide.images and plan.scale == at_once.scale
    for fields in (plan.todo[3:], plan.todo[:2], plan.todo[2:3]):  # as workers elsewhere might finish them
        screen_batch(models, tmp_path / "b" / "slide", opts, plan, fields)
    assert plan_slide(models, slide, tmp_path / "b" / "slide", opts).todo == []  # all journalled
    lazy = Models.load(device="cpu", lazy=True)
    aggregated = screen_slide(lazy, slide, tmp_path / "b" / "slide", opts, plan=plan)
    assert lazy.detector._model is None  # aggregating loads no model
    assert without_timings(aggregated.record()) == without_timings(at_once.record())
    for table in ("cells.csv", "images.csv"):
        a, b = (pd.read_csv(tmp_path / d / "slide" / table) for d in ("a", "b"))
        pd.testing.assert_frame_equal(
            a.drop(columns=["seconds"], errors="ignore"), b.drop(columns=["seconds"], errors="ignore")
        )
    saved = json.loads((tmp_path / "b" / "slide" / "verdict.json").read_text())
    assert without_timings(saved) == without_timings(
        json.loads((tmp_path / "a" / "slide" / "verdict.json").read_text())
    )


def test_screen_slide_with_a_stub_model_bundle_counts_what_the_models_say(tmp_path):
    """The slide logic without weights: fixed detections and calls go through screening, tables and verdict."""
    folder = tmp_path / "slide"
    write_slide(folder, 6, seed=140)
    (folder / "broken.png").write_bytes(b"not an image")
    models = stub_models()
    verdict = screen_slide(models, Slide.from_path(folder), tmp_path / "out", Options())
    cells = pd.read_csv(tmp_path / "out" / "cells.csv")
    images = pd.read_csv(tmp_path / "out" / "images.csv", keep_default_na=False)
    assert (images.status == "error").sum() == 1 and verdict.n_failed == 1
    usable, call = images.status == "ok", verdict.call
    assert call.n_cells == len(cells) == 2 * usable.sum() and call.n_blasts == usable.sum()
    assert call.blast_fraction == 0.5 and verdict.scale.by_field_size == {"224x224": 30.0}
    assert set(cells.subtype.dropna()) == {"pre_b"} and verdict.screened_with == {"models": "stub"}


def test_the_scale_search_fields_are_screened_from_the_arrays_it_decoded(tmp_path):
    """Each field is decoded once: the fields the scale search decoded (two per field size) reach the detector
    again as the same arrays, not decoded a second time; the others are decoded when their batch comes."""

    class Watching(StubDetector):
        def __init__(self):
            self.sampled, self.detected = [], []

        def estimate_cell_px(self, images):
            self.sampled += images
            return super().estimate_cell_px(images)

        def detect(self, images, cell_px):
            self.detected += images
            return super().detect(images, cell_px)

    folder = tmp_path / "slide"
    write_slide(folder, 5, seed=150)
    detector = Watching()
    models = stub_models(detector)
    screen_slide(models, Slide.from_path(folder), tmp_path / "out", Options(batch=2))
    assert len(detector.sampled) == 2 and len(detector.detected) == 5
    assert all(any(s is d for d in detector.detected) for s in detector.sampled)


def test_exports_keep_each_fields_size_as_screened_after_its_file_is_gone(tmp_path):
    """A field's size is recorded as it is screened, so the slide's COCO export (which needs every image's size)
    still has a field whose file went away between its screening and the slide's aggregation."""
    from stubs import StubSubtype

    from leukoscan.config import Export

    folder = tmp_path / "slide"
    write_slide(folder, 3, seed=160)
    slide = Slide.from_path(folder)

    class Deleting(StubSubtype):
        def subtype_fields(self, fields, dets):
            slide.images[0].unlink(missing_ok=True)  # the file goes once the field is decoded
            return super().subtype_fields(fields, dets)

    models = stub_models()
    models.subtype = Deleting()
    screen_slide(models, slide, tmp_path / "out", Options(exports=(Export.coco,)))
    coco = json.loads((tmp_path / "out" / "cells.coco.json").read_text())
    assert not slide.images[0].exists() and len(coco["images"]) == 3 and len(coco["annotations"]) == 6
    assert {(im["width"], im["height"]) for im in coco["images"]} == {(224, 224)}


def test_a_normalising_classifier_gets_the_slides_colour_and_a_resumed_slide_the_same(tmp_path):
    """A classifier trained on colour-normalised crops gets every crop of a slide with the slide's colour
    (``SlideColour``, measured on its first fields), which verdict.json keeps; fields added to the slide later
    are mapped with that same colour, not one measured again."""
    import shutil

    from stubs import StubClassifier

    from leukoscan.classify.stain import SlideColour

    class Normalising(StubClassifier):
        stain_normalisation = {"mean": [70.0, 10.0, -10.0], "sd": [10.0, 10.0, 10.0], "region": "cells"}

        def __init__(self):
            self.colours = []

        def crops(self, rgb, det, cell_px):
            return np.stack([rgb[y0:y1, x0:x1][:8, :8] for x0, y0, x1, y1 in det.xyxy.astype(int)])

        def normalise(self, crops, colour):
            self.colours.append(colour)
            return crops

    folder = write_slide(tmp_path / "slide", 3, seed=170)
    models = stub_models()
    models.classifier = Normalising()
    screen_slide(models, Slide.from_path(folder), tmp_path / "out", Options())
    saved = json.loads((tmp_path / "out" / "verdict.json").read_text())["stain_normalisation"]
    colour = SlideColour.from_record(saved)
    assert colour.n_cells == 6 and colour.n_fields == 3 and len(colour.mean) == len(colour.sd) == 3
    assert 0 < colour.mean[0] < 100 and models.classifier.colours == [colour]  # one batch of fields
    shutil.copyfile(folder / "f0.png", folder / "f3.png")  # a field added later

    class Inverted(Normalising):  # crops whose colour measured again would not be the colour of before
        def crops(self, rgb, det, cell_px):
            return 255 - super().crops(rgb, det, cell_px)

    again = Inverted()
    models.classifier = again
    screen_slide(models, Slide.from_path(folder), tmp_path / "out", Options())
    assert again.colours == [colour]  # only the new field screened, with the colour of before
    assert json.loads((tmp_path / "out" / "verdict.json").read_text())["stain_normalisation"] == saved
