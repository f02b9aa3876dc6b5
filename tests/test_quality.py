"""Field quality control: what is not a usable smear is caught, with its reason; real smears pass."""

import cv2
import numpy as np
import pytest
from synth import smear

from leukoscan.config import DATA_ROOT, REPO_ROOT
from leukoscan.images import list_images, load_rgb
from leukoscan.quality import field_problem


def text_photo():
    img = np.full((600, 800, 3), 245, np.uint8)
    for i in range(12):
        cv2.putText(
            img,
            "The quick brown fox jumps over",
            (20, 40 + 45 * i),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.1,
            (20, 20, 20),
            2,
            cv2.LINE_AA,
        )
    return img


def bad_fields():
    field = smear(seed=1)[0]
    return {
        "noise": (np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8), "noise"),
        "text": (text_photo(), "out of focus"),  # no cell-scale texture at all; also colourless
        "blank": (np.full((224, 224, 3), 230, np.uint8), "blank"),
        "over-exposed": (np.clip(field.astype(int) + 120, 0, 255).astype(np.uint8), "over-exposed"),
        "dark": ((field * 0.08).astype(np.uint8), "too dark"),
        "blurred": (cv2.GaussianBlur(field, (0, 0), 4), "out of focus"),
        "grayscale": (np.repeat(cv2.cvtColor(field, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2), "no stain colour"),
    }


@pytest.mark.parametrize("name", list(bad_fields()))
def test_unusable_fields_say_why(name):
    rgb, reason = bad_fields()[name]
    assert reason in field_problem(rgb, n_cells=3, cell_px=27)


def test_implausible_density():
    assert "implausible cell density" in field_problem(smear(seed=1)[0], n_cells=80, cell_px=27)
    assert field_problem(smear(seed=1)[0], n_cells=40, cell_px=27) == ""  # crowded (a leukemic field), possible


def test_real_smears_are_usable():
    """The demo photographs (an eyepiece photo with its black ring among them) and synthetic smears pass;
    so do Taleqani and TXL-PBC fields when the datasets are at hand."""
    cell_px = {
        "2": 115,
        "38e21132-cb80-4a2c-a71b-b6f04ff15017": 82,
        "60d50441-5c92-4745-91fd-9231cc2fcbb7": 65,
        "EarlyPreb": 30,
        "Ep": 254,
        "Sap_148 Prob": 121,
        "new": 160,
    }  # leukoscan run's estimates
    for path in list_images(REPO_ROOT / "datasets" / "samples"):
        assert field_problem(load_rgb(path), n_cells=10, cell_px=cell_px[path.stem]) == "", path.name
    for seed in range(5):
        assert field_problem(smear(seed=seed)[0], n_cells=3, cell_px=27) == ""
    assert field_problem(smear((480, 640), rbc_px=40, wbc_px=68, seed=3)[0], n_cells=3, cell_px=68) == ""


@pytest.mark.shared_data
def test_public_fields_are_usable():
    tq = sorted((DATA_ROOT / "all-taleqani" / "Original").glob("*/*.jpg"))[::40]
    txl = sorted((DATA_ROOT / "txl-pbc" / "images").glob("*/*.jpg"))[::40]
    if not tq or not txl:
        pytest.skip(f"needs all-taleqani and txl-pbc under {DATA_ROOT}")
    problems = [(p.name, field_problem(load_rgb(p), 8, 30)) for p in tq]
    problems += [(p.name, field_problem(load_rgb(p), 3, 150)) for p in txl]
    assert [p for p in problems if p[1]] == [] and len(problems) > 100


def test_fields_that_overlap_are_found_with_their_shift_and_different_fields_are_not():
    """Two fields cut from one photograph (a bundled lab photograph) sharing 30-80 % of a field, the second saved
    as a JPEG a little brighter (a second capture), overlap: ``overlaps`` gives the shift of the second onto the
    first to within 2 % of the field; windows of the photograph that share nothing, and other photographs' windows
    of that size, do not overlap."""
    from leukoscan.quality import field_look, look_array, overlaps

    photo = load_rgb(REPO_ROOT / "datasets" / "samples" / "Ep.jpg")
    h, w = photo.shape[:2]
    fh, fw = h // 2, w // 2

    def window(x: int, y: int, recapture: bool = False) -> np.ndarray:
        field = photo[y : y + fh, x : x + fw]
        if recapture:
            brighter = np.clip(field.astype(np.int16) + 6, 0, 255).astype(np.uint8)
            field = cv2.imdecode(cv2.imencode(".jpg", brighter, [cv2.IMWRITE_JPEG_QUALITY, 85])[1], cv2.IMREAD_COLOR)
        return look_array(field_look(field))

    for bx, by in ((fw // 5, fh // 6), (fw // 2, 0), (0, fh * 2 // 3), (fw // 3, fh // 3)):
        found = overlaps([window(0, 0), window(bx, by, recapture=True)])
        assert len(found) == 1 and found[0][:2] == (1, 0), (bx, by, found)
        assert abs(found[0][2] - bx / fw) <= 0.02 and abs(found[0][3] - by / fh) <= 0.02, (bx, by, found)
    apart = [window(0, 0), window(fw, fh), window(fw, 0), window(0, fh)]
    others = [
        look_array(field_look(cv2.resize(load_rgb(p), (fw, fh))))
        for p in sorted((REPO_ROOT / "datasets" / "samples").glob("*.jp*g"))
        if p.name != "Ep.jpg"
    ]
    assert overlaps(apart + others) == []


def test_cells_of_an_overlapping_field_are_matched_to_the_earlier_fields_cells():
    """A field's cells moved by the shift onto an earlier field's (both 600 x 400 px) are its cells where a centre
    falls within half a cell of one of them; when the cells well inside the shared part have no partner, the fields
    do not overlap there (None)."""
    from leukoscan.quality import shared_cells

    earlier = np.array([[100, 100, 140, 140], [300, 50, 340, 90], [10, 10, 50, 50]])
    # moved by (-80, +20): the first two are the earlier field's, the third is a new cell, the fourth lands between
    boxes = np.array([[182, 78, 222, 118], [385, 35, 421, 71], [500, 300, 540, 340], [210, 120, 250, 160]])
    size = (600, 400)
    assert shared_cells(boxes[:3], earlier, (-80, 20), size).tolist() == [True, True, False]
    # the fourth, well inside the shared part, has no partner: 2 of 3 still do, the overlap stands
    assert shared_cells(boxes, earlier, (-80, 20), size).tolist() == [True, True, False, False]
    # moved elsewhere, none of the cells inside the shared part meets one of the other field's: no overlap
    assert shared_cells(boxes, earlier, (-150, -20), size) is None
    # no cells on either side: nothing to share, nothing against the overlap
    assert shared_cells(boxes[:0], earlier[:0], (0, 0), size).tolist() == []
    # the earlier field's cells outside the shared part do not count against it
    assert shared_cells(boxes[:2], earlier[:2], (-80, 20), size).tolist() == [True, True]


def test_a_look_journalled_by_an_earlier_version_still_finds_its_repeat():
    """Journals before overlapping fields were looked for hold a look on a 32-point grid: ``look_array`` reads it,
    and ``repeats`` compares it with today's 64-point looks (at 32 points); a look of another side is refused."""
    import base64

    from leukoscan.quality import field_look, look_array, repeats

    field = smear((300, 400), n_rbc=120, n_wbc=4, seed=3)[0]
    grey = cv2.cvtColor(field, cv2.COLOR_RGB2GRAY)
    old = base64.b64encode(cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).tobytes()).decode()
    odd = base64.b64encode(cv2.resize(grey, (40, 40), interpolation=cv2.INTER_AREA).tobytes()).decode()
    assert look_array(old).shape == (32, 32) and look_array(field_look(field)).shape == (64, 64)
    assert look_array(odd) is None
    other = look_array(field_look(smear((300, 400), n_rbc=120, n_wbc=4, seed=4)[0]))
    assert repeats([look_array(field_look(field)), other, look_array(old)]) == [None, None, 0]
