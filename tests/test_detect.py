"""Shipped detector: loads offline, finds the cells of a field, tiles large fields without duplicates."""

import json

import numpy as np
import pytest
import supervision as sv
from synth import smear

from leukoscan.config import DETECTOR_WEIGHTS
from leukoscan.detect.predict import Detector


@pytest.fixture(scope="module")
def detector():
    return Detector(DETECTOR_WEIGHTS, device="cpu")


def matched(truth, det, iou=0.5):
    m = sv.box_iou_batch(truth, det.xyxy) if len(det) else np.zeros((len(truth), 0))
    return (m.max(axis=1) >= iou) if m.size else np.zeros(len(truth), bool)


def test_card_describes_the_weights():
    card = json.loads(DETECTOR_WEIGHTS.with_suffix(".json").read_text())
    for key in ("recipe", "train_seconds", "val_metrics", "data", "sha256"):
        assert key in card
    from leukoscan.cards import sha256

    assert card["sha256"] == sha256(DETECTOR_WEIGHTS)
    assert len(card["data"]["manifest_sha256"]) == 64


def test_finds_the_white_cells_of_a_field(detector):
    img, truth = smear((224, 224), n_wbc=3, seed=11)
    det = detector(img)
    assert isinstance(det, sv.Detections) and det.confidence is not None
    assert matched(truth, det).all()
    assert len(det) <= len(truth) + 1


def test_scale_normalisation_handles_a_high_magnification_photo(detector):
    img, truth = smear((1200, 1600), rbc_px=80, wbc_px=136, n_rbc=60, n_wbc=4, seed=12)
    det = detector(img)
    assert matched(truth, det).all()
    assert det.xyxy.max() <= 1600  # boxes in original pixels


def test_cell_cut_by_a_tile_border_is_reported_once(detector):
    # cells at the detector's own scale (no resize), in a field large enough to be tiled (> 1.5 tiles)
    s = detector.geo.train_cell_px
    border = detector.settings.tile  # the first tile ends here; the next starts at tile - overlap
    centres = [(border, 300), (border + 1, 700), (150, border)]
    img, truth = smear((1000, 1000), rbc_px=s / 1.7, wbc_px=s, n_rbc=900, n_wbc=3, seed=13, wbc_centres=centres)
    det = detector(img, cell_size=s)
    assert max(img.shape) > 1.5 * detector.settings.tile
    for box in truth:
        overlapping = (sv.box_iou_batch(box[None], det.xyxy)[0] > 0.1).sum()
        assert overlapping == 1, f"cell at {box} reported {overlapping} times"


@pytest.mark.parametrize("shapes", [[(224, 224)] * 3, [(224, 224), (224, 160), (176, 224)]])
def test_batch_equals_single(detector, shapes):
    """A field's cells do not depend on the fields batched with it, of its shape or of others (Ultralytics pads
    a batch of mixed shapes otherwise than a field alone)."""
    fields = [smear(shape, n_wbc=2, seed=s)[0] for s, shape in zip((30, 31, 32), shapes)]
    batch = detector.detect(fields, cell_size=27)
    for field, b in zip(fields, batch):
        single = detector(field, cell_size=27)
        assert len(single) == len(b)
        assert np.allclose(single.xyxy, b.xyxy, atol=0.01)
        assert np.allclose(single.confidence, b.confidence, atol=1e-4)


@pytest.mark.parametrize("wbc", [27, 68, 136])
def test_slide_scale_search_recovers_cell_size(detector, wbc):
    size = (224, 224) if wbc == 27 else (600, 800) if wbc == 68 else (1200, 1600)
    rbc = wbc / 1.7
    fields = [
        smear(size, rbc_px=rbc, wbc_px=wbc, n_rbc=size[0] * size[1] // int(4 * rbc * rbc), n_wbc=3, seed=s)[0]
        for s in (70, 71)
    ]
    assert detector.estimate_cell_px(fields) == pytest.approx(wbc, rel=0.3)


def test_scale_estimate_never_goes_below_the_smallest_classifiable_cell(detector):
    """Pure noise fakes tiny 'red cells' (an 11 px guess once): the estimate stays at min_cell_px or above."""
    from leukoscan.config import SETTINGS

    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    assert detector.estimate_cell_px([noise]) >= SETTINGS.geometry.min_cell_px


def test_one_box_per_cell_on_the_bundled_photograph(detector):
    # 60d50441...jpg: the neutrophil and the monocyte each used to get a second box inside the first
    from leukoscan.config import REPO_ROOT
    from leukoscan.images import load_rgb
    from leukoscan.overlay import overlap_area

    det = detector(load_rgb(next((REPO_ROOT / "datasets" / "samples").glob("60d50441*.jpg"))))
    area = (det.xyxy[:, 2] - det.xyxy[:, 0]) * (det.xyxy[:, 3] - det.xyxy[:, 1])
    ios = overlap_area(det.xyxy, det.xyxy) / np.minimum(area[:, None], area[None, :])
    np.fill_diagonal(ios, 0)
    assert len(det) == 4 and ios.max() < detector.settings.merge_ios


def test_the_held_out_photographs_stay_held_out_when_more_are_added(tmp_path):
    """The promotion gate scores the label set's val.txt: one photograph in four (every fourth by name at first),
    and photographs added later never move one of them into training (nor a training one out)."""
    from leukoscan.detect.labels import read_list, write_split

    (tmp_path / "images").mkdir()

    def add(*names):
        for name in names:
            (tmp_path / "images" / name).write_bytes(b"")
        write_split(tmp_path)
        return [p.name for p in read_list(tmp_path / "val.txt")], [p.name for p in read_list(tmp_path / "train.txt")]

    val, train = add(*(f"{c}.png" for c in "abcdefgh"))
    assert val == ["d.png", "h.png"] and len(train) == 6
    val2, train2 = add("aa.png", "ab.png", "ac.png", "ad.png")  # sorted among the first ones by name
    assert set(val) <= set(val2) and set(train) <= set(train2) and len(val2) == 3


def test_scoring_leaves_out_unreadable_fields(detector, tmp_path):
    """The promotion gate's recall at the operating confidence: a held-out photograph that cannot be read (here a
    link to nowhere) is left out and named, as Ultralytics' val leaves it out, instead of stopping the gate."""
    import cv2

    from leukoscan.detect.score import score_fields

    img, boxes = smear(seed=3)
    cv2.imwrite(str(tmp_path / "a.png"), img[..., ::-1])
    h, w = img.shape[:2]
    lines = [f"0 {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}" for x1, y1, x2, y2 in boxes]
    (tmp_path / "a.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "gone.txt").write_text("")
    images = [tmp_path / "gone.png", tmp_path / "a.png"]
    score = score_fields(detector, images, [p.with_suffix(".txt") for p in images], 27.0)
    assert score.n_true == len(boxes) and len(score.detections) == 1
    assert len(score.unreadable) == 1 and score.unreadable[0].startswith(f"{tmp_path / 'gone.png'}: a link to")
