"""Robust image loading: any readable file becomes 8-bit RGB, anything else a one-line ``ImageError``."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from leukoscan.config import IMAGE_SUFFIXES, MAX_MEGAPIXELS

MAX_PIXELS = int(MAX_MEGAPIXELS * 1e6)  # the default limit of ``load_rgb``
# (Pillow's own guard, which warns on stderr above its limit and refuses with its own text at twice, is
# switched off by ``runtime.setup()``: the project's limit, checked from the header, replaces it)
_limit = {"megapixels": MAX_MEGAPIXELS}  # what ``load_rgb`` refuses above, unless told otherwise


class ImageError(ValueError):
    """A file that cannot be used as a smear field; the message is one line for the user."""


def limit_megapixels(megapixels: float) -> float:
    """From now on ``load_rgb`` refuses images over ``megapixels`` (a command's ``--max-megapixels``), in this
    process (a worker process sets its own); returns the limit before."""
    before, _limit["megapixels"] = _limit["megapixels"], megapixels
    return before


@contextmanager
def pixel_limit(megapixels: float) -> Iterator[None]:
    """``limit_megapixels`` within the block; the limit before is restored after it."""
    before = limit_megapixels(megapixels)
    try:
        yield
    finally:
        limit_megapixels(before)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (sorted; hidden files skipped), links to nowhere included (a field on
    a mount that has gone: listed, so that it is reported unreadable rather than missing from the count)."""
    return sorted(
        p
        for p in Path(folder).iterdir()
        if (p.is_file() or (p.is_symlink() and not p.exists()))
        and not p.name.startswith(".")
        and p.suffix.lower() in IMAGE_SUFFIXES
    )


def expand_images(paths: list[Path]) -> list[Path]:
    """Image files named directly, plus the images directly inside named folders; a ``ValueError`` for a
    named folder that holds none."""
    files = []
    for p in map(Path, paths):
        found = list_images(p) if p.is_dir() else [p]
        if not found:
            raise ValueError(f"no images in {p} (looked for {', '.join(IMAGE_SUFFIXES)})")
        files += found
    return files


TOO_LARGE = "image over"  # how the error of a field refused for its size starts (a rerun tries it again)


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1: as stored; 5-8: turned a quarter, width and height swapped once applied)."""
    return im.getexif().get(0x0112, 1)


def header_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of ``path`` as ``load_rgb`` returns it (EXIF orientation applied), from its header alone;
    raises what ``Image.open`` raises for a file that is not an image."""
    with Image.open(path) as im:
        w, h = im.size
        return (h, w) if _orientation(im) in (5, 6, 7, 8) else (w, h)


def load_rgb(path: str | Path, max_megapixels: float | None = None) -> np.ndarray:
    """Read ``path`` as an H x W x 3 uint8 RGB array, EXIF orientation applied. Images over ``max_megapixels``
    (default: the ``pixel_limit`` in force, 80) are refused from their header, undecoded."""
    path = Path(path)
    limit = _limit["megapixels"] if max_megapixels is None else max_megapixels
    if not path.is_file():
        if path.is_symlink():
            raise ImageError(f"a link to {os.readlink(path)}, which is not there (or links back to itself)")
        raise ImageError("file not found")
    if path.stat().st_size == 0:
        raise ImageError("empty file")
    try:
        with Image.open(path) as im:
            if im.width * im.height > limit * 1e6:
                raise ImageError(
                    f"{TOO_LARGE} {limit:g} megapixels: {im.width}x{im.height} "
                    f"({im.width * im.height / 1e6:.1f} megapixels); use --max-megapixels to raise it"
                )
            jpeg = im.format == "JPEG"
            if _orientation(im) != 1:
                im = ImageOps.exif_transpose(im)
            im.load()
            if jpeg and (problem := corrupt_jpeg(path.read_bytes())):
                raise ImageError(f"corrupt or truncated image ({problem})")
            return to_rgb8(im)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image file or unsupported format") from None
    except Image.DecompressionBombError:  # Pillow's guard on (no ``runtime.setup()`` in this process)
        raise ImageError(
            f"{TOO_LARGE} {limit:g} megapixels and over Pillow's limit; use --max-megapixels to raise it"
        ) from None
    except PermissionError:
        raise ImageError("no permission to read it") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"corrupt or truncated image ({_decode_problem(e)})") from None


def _decode_problem(e: Exception) -> str:
    """What Pillow said of a file it could not decode, in one line (its "image file is truncated (N bytes not
    processed)" counts its decoder's leftover bytes, not the file's: said plainly)."""
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    return "the file ends before the image does" if reason.startswith("image file is truncated") else reason


def read_crop(path: str | Path) -> np.ndarray:
    """An RGB cell crop of a built dataset (OpenCV: fast, no checks beyond being readable); an ``ImageError``
    naming it when it cannot be read (missing, not an image)."""
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise ImageError(f"{path}: missing or not an image (rebuild the dataset)")
    return bgr[..., ::-1]


def rescale(image: np.ndarray, f: float) -> np.ndarray:
    """``image`` scaled by ``f`` (sides rounded, at least 1 px): bilinear when enlarging, area-averaged when
    shrinking, halved first while it is at least twice too big (OpenCV's exact 2x area path averages the
    same pixels many times faster than an arbitrary ratio: 5 MP photographs shrink in a few ms)."""
    h, w = image.shape[:2]
    size = (max(1, round(w * f)), max(1, round(h * f)))
    if size == (w, h):
        return image
    if f > 1:
        return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    while image.shape[1] >= 2 * size[0] and image.shape[0] >= 2 * size[1]:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def to_bgr(rgb: np.ndarray) -> np.ndarray:
    """The BGR array OpenCV and Ultralytics take (a contiguous copy; ~30x faster than ``rgb[..., ::-1]``
    made contiguous)."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def corrupt_jpeg(data: bytes) -> str | None:
    """What libjpeg says is wrong with a JPEG's compressed data (bytes overwritten or lost), or None. Pillow decodes
    past such damage without a word, into noise and smeared blocks that the detector still boxes; libjpeg's
    warnings, made errors (simplejpeg's strict mode, at the smallest DCT scale: every coefficient is read, few are
    transformed), catch it. None of the 15,568 JPEGs of the public datasets has one."""
    import simplejpeg

    try:
        simplejpeg.decode_jpeg(data, strict=True, min_width=1, min_height=1)
    except Exception as e:  # anything else it cannot do (CMYK, an odd process) is Pillow's to judge
        message = str(e).strip()
        if message.startswith(("Corrupt JPEG data", "Premature end of JPEG file")):
            return message
    return None


def to_rgb8(im: Image.Image) -> np.ndarray:
    """Convert any PIL mode (grayscale, 16-bit, float, palette, alpha) to 8-bit RGB."""
    if im.width < 8 or im.height < 8:
        raise ImageError(f"image too small ({im.width}x{im.height})")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    if im.mode.startswith(("I", "F")):
        arr = np.asarray(im).astype(np.float64)
        if im.mode.startswith("F") and arr.max() <= 1.0:  # floating point in 0-1
            top = 1.0
        else:
            top = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / top * 255.0, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([arr] * 3, axis=-1))
    return np.ascontiguousarray(np.asarray(im if im.mode == "RGB" else im.convert("RGB")))


def output_stems(images: list[Path]) -> dict[Path, str]:
    """The name of each image's outputs (overlay, crops): its file's stem, or stem_extension where images share
    a stem (``f0.png`` and ``f0.jpg``), then ``_2``, ``_3``... where that is still taken (the same name in two
    folders); compared ignoring case, as some filesystems do."""
    count = Counter(p.stem.casefold() for p in images)
    taken, stems = set(), {}
    for p in images:
        stem = p.stem if count[p.stem.casefold()] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        base, k = stem, 1
        while stem.casefold() in taken:
            k += 1
            stem = f"{base}_{k}"
        taken.add(stem.casefold())
        stems[p] = stem
    return stems
