"""Every kind of bad input becomes a one-line ImageError; odd-but-valid inputs load as 8-bit RGB."""

import numpy as np
import pytest
from PIL import Image

from leukoscan.images import MAX_PIXELS, ImageError, header_size, load_rgb


def save(path, arr, **kw):
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.fixture
def rgb():
    return (np.random.default_rng(0).random((40, 50, 3)) * 255).astype(np.uint8)


def one_line_error(path):
    with pytest.raises(ImageError) as e:
        load_rgb(path)
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def test_valid_formats(tmp_path, rgb):
    for ext in ("jpg", "png", "tif", "bmp"):
        out = load_rgb(save(tmp_path / f"a.{ext}", rgb))
        assert out.shape == (40, 50, 3) and out.dtype == np.uint8


def test_grayscale_rgba_16bit_palette(tmp_path, rgb):
    gray = load_rgb(save(tmp_path / "g.png", rgb[..., 0]))
    assert gray.shape == (40, 50, 3) and (gray[..., 0] == gray[..., 1]).all()
    rgba = np.dstack([rgb, np.full((40, 50), 0, np.uint8)])  # fully transparent -> white
    assert (load_rgb(save(tmp_path / "a.png", rgba)) == 255).all()
    deep = rgb[..., 0].astype(np.uint16) * 257
    out = load_rgb(save(tmp_path / "d.png", deep))
    assert out.dtype == np.uint8 and abs(int(out[..., 0].max()) - int(rgb[..., 0].max())) <= 1
    tif16 = tmp_path / "d.tif"
    Image.fromarray(deep).save(tif16)
    assert load_rgb(tif16).shape == (40, 50, 3)
    pal = Image.fromarray(rgb).convert("P")
    pal.save(tmp_path / "p.png")
    assert load_rgb(tmp_path / "p.png").shape == (40, 50, 3)


def test_float_and_tiny_deep_images(tmp_path, rgb):
    unit = rgb[..., 0].astype(np.float32) / 255  # floating point in 0-1: scaled as such, not read as near-black
    Image.fromarray(unit, mode="F").save(tmp_path / "f.tif")
    assert abs(int(load_rgb(tmp_path / "f.tif")[..., 0].max()) - int(rgb[..., 0].max())) <= 1
    for name, arr in {"t16.png": np.full((3, 3), 40000, np.uint16), "t8.png": np.full((3, 3, 3), 9, np.uint8)}.items():
        assert "too small" in one_line_error(save(tmp_path / name, arr))  # every mode is checked alike


def test_exif_orientation_applied(tmp_path, rgb):
    im = Image.fromarray(rgb)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 on display
    im.save(tmp_path / "r.jpg", exif=exif)
    assert load_rgb(tmp_path / "r.jpg").shape == (50, 40, 3)
    assert header_size(tmp_path / "r.jpg") == (40, 50)  # the batches' size, as loaded, from the header alone
    assert header_size(save(tmp_path / "s.jpg", rgb)) == (50, 40)


def test_odd_paths(tmp_path, rgb):
    folder = tmp_path / "slide [1] ünïcödé (copy)"
    folder.mkdir()
    assert load_rgb(save(folder / "field #1 – µm.jpg", rgb)).shape == (40, 50, 3)


def test_bad_inputs_are_one_line_errors(tmp_path, rgb):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert "empty" in one_line_error(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("this is not an image\n" * 10)
    assert "not an image" in one_line_error(tmp_path / "text.jpg")
    good = save(tmp_path / "good.jpg", (np.random.default_rng(1).random((400, 400, 3)) * 255).astype(np.uint8))
    data = good.read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    assert one_line_error(tmp_path / "trunc.jpg").endswith(
        "corrupt or truncated image (the file ends before the image does)"
    )
    corrupt = bytearray(data)
    corrupt[200:4000] = b"\x00" * 3800
    (tmp_path / "corrupt.jpg").write_bytes(bytes(corrupt[:3000]) + b"garbage")
    one_line_error(tmp_path / "corrupt.jpg")
    damaged = bytearray(data)  # bytes overwritten inside the compressed data: Pillow decodes it into noise
    damaged[len(data) // 2 : len(data) // 2 + 300] = np.random.default_rng(2).integers(0, 255, 300, np.uint8).tobytes()
    (tmp_path / "damaged.jpg").write_bytes(bytes(damaged))
    with Image.open(tmp_path / "damaged.jpg") as im:
        im.load()  # no complaint from Pillow
    assert "Corrupt JPEG data" in one_line_error(tmp_path / "damaged.jpg")
    assert "not found" in one_line_error(tmp_path / "missing.jpg")
    one_line_error(tmp_path)  # a folder is not a file


def test_decompression_bomb(tmp_path):
    side = int(MAX_PIXELS**0.5) + 100
    Image.new("1", (side, side)).save(tmp_path / "bomb.png")  # tiny file, huge canvas
    assert (tmp_path / "bomb.png").stat().st_size < 5_000_000
    assert one_line_error(tmp_path / "bomb.png") == (
        f"image over 80 megapixels: {side}x{side} ({side * side / 1e6:.1f} "
        "megapixels); use --max-megapixels to raise it"
    )
    assert load_rgb(tmp_path / "bomb.png", max_megapixels=side * side / 1e6).shape == (
        side,
        side,
        3,
    )  # the limit raised


def test_a_huge_image_is_refused_in_one_line_without_the_runtime_set_up(tmp_path):
    """A library user who never called ``runtime.setup()`` keeps Pillow's guard: past it, the refusal is
    still the project's one line (not Pillow's decompression-bomb text)."""
    import subprocess
    import sys

    from PIL import Image

    Image.new("1", (20000, 10000)).save(tmp_path / "huge.png")  # 200 megapixels, over twice Pillow's limit
    code = (
        "from leukoscan.images import ImageError, load_rgb\ntry:\n    load_rgb('huge.png')\n"
        "except ImageError as e:\n    print(e)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True)
    assert out.stdout.strip() == "image over 80 megapixels and over Pillow's limit; use --max-megapixels to raise it"


def test_a_link_to_nowhere_is_listed_and_said_unreadable_not_left_out(tmp_path):
    """A field on a mount that has gone, or links that point at each other, count as fields that cannot be read
    (a row of images.csv and a `skipped` line), never as no field at all; hidden files stay out."""
    from leukoscan.images import ImageError, list_images, load_rgb

    (tmp_path / "gone.jpg").symlink_to(tmp_path / "mount" / "f.jpg")
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    (tmp_path / ".hidden.jpg").symlink_to(tmp_path / "nowhere.jpg")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.png", "gone.jpg"]
    for p in list_images(tmp_path):
        with pytest.raises(ImageError, match="a link to .*, which is not there"):
            load_rgb(p)
    # and a run gets through them: its journal and the slides' de-duplication name them without resolving
    from leukoscan.engine import without_repeats
    from leukoscan.journal import fingerprint
    from leukoscan.slide import Slide

    assert fingerprint(tmp_path / "a.png")["size"] is None
    assert len(without_repeats([Slide.from_path(tmp_path)])) == 1


def test_a_field_that_cannot_be_opened_for_permission_says_so(tmp_path, monkeypatch):
    """Not "corrupt or truncated": the file may be fine, its permissions are not (root reads anything, so the
    refusal is simulated)."""
    import cv2
    from PIL import Image as PILImage

    cv2.imwrite(str(tmp_path / "f.png"), np.zeros((10, 10, 3), np.uint8))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(PILImage, "open", refuse)
    with pytest.raises(ImageError, match="^no permission to read it$"):
        load_rgb(tmp_path / "f.png")
