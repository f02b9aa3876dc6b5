"""Cell-crop geometry, the single definition used by dataset building, training and inference."""

from __future__ import annotations

import cv2
import numpy as np

from leukoscan.config import SETTINGS


def square_boxes(
    xyxy: np.ndarray, margin: float = SETTINGS.geometry.crop_margin, side: float | None = None
) -> np.ndarray:
    """Square boxes centred on each cell, in float pixels: side = longest side x (1 + 2 x margin) (box-relative),
    or the fixed ``side`` for every cell (a physical window: a cell's size relative to the others survives)."""
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    if side is not None:
        side = np.full(len(xyxy), max(float(side), 2.0), dtype=np.float32)
    else:
        side = np.maximum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]).clip(min=2) * (1 + 2 * margin)
    return np.concatenate([centre - side[:, None] / 2, centre + side[:, None] / 2], axis=1)


def crop_cells(
    image: np.ndarray,
    xyxy: np.ndarray,
    size: int = SETTINGS.geometry.crop_px,
    margin: float = SETTINGS.geometry.crop_margin,
    side: float | None = None,
) -> np.ndarray:
    """N x size x size x 3 crops (box-relative with ``margin``, or a fixed ``side`` in pixels: see
    ``square_boxes``); parts outside the image are filled with the field's median colour.
    Each crop is padded on its own, so a box at a photograph's edge never copies the whole field."""
    if not len(xyxy):
        return np.empty((0, size, size, 3), dtype=np.uint8)
    h, w = image.shape[:2]
    squares = np.round(square_boxes(xyxy, margin, side)).astype(int)
    sides = np.maximum(squares[:, 2] - squares[:, 0], 1)
    fill = None
    out = np.empty((len(squares), size, size, 3), dtype=np.uint8)
    for i, ((x0, y0), side) in enumerate(zip(squares[:, :2], sides)):
        x1, y1 = x0 + side, y0 + side
        crop = image[max(y0, 0) : max(min(y1, h), 0), max(x0, 0) : max(min(x1, w), 0)]
        if crop.shape[:2] != (side, side):  # partly (or wholly) outside the field
            if fill is None:
                fill = np.median(image[:: max(1, h // 64), :: max(1, w // 64)].reshape(-1, 3), axis=0).astype(np.uint8)
            if crop.size:
                pads = (max(0, -y0), max(0, y1 - h), max(0, -x0), max(0, x1 - w))
                crop = cv2.copyMakeBorder(crop, *pads, cv2.BORDER_CONSTANT, value=fill.tolist())
            else:
                crop = np.full((side, side, 3), fill, dtype=np.uint8)
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        out[i] = cv2.resize(crop, (size, size), interpolation=interp)
    return out


def window_px(cell_px: float, geo=SETTINGS.geometry) -> float:
    """Side of the physical crop window for a slide whose white cells are ``cell_px`` wide."""
    return geo.window_cells * float(cell_px)


def contact_sheet(crops: np.ndarray, columns: int) -> np.ndarray:
    """Crops (N x s x s x 3) in a grid of ``columns`` (row-major, blank cells white): crop ``i`` at
    ``(i % columns) * s, (i // columns) * s``, so a page can show each from one image per field."""
    n, s = len(crops), crops.shape[1]
    rows = max(1, -(-n // columns))
    grid = np.full((rows * columns, s, s, 3), 255, np.uint8)
    grid[:n] = crops
    return grid.reshape(rows, columns, s, s, 3).transpose(0, 2, 1, 3, 4).reshape(rows * s, columns * s, 3)
