"""A slide's scale: how many pixels wide its white cells are, the one number every stage after detection
depends on (the detector's input size, the classifier's physical crop window)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def size_key(width: int, height: int) -> str:
    """The key of a field size in a ``Scale`` (``WxH``)."""
    return f"{width}x{height}"


def shape_key(rgb: np.ndarray) -> str:
    return size_key(rgb.shape[1], rgb.shape[0])


@dataclass
class Scale:
    """White-cell diameter in pixels of a slide's fields, in one shape whether given or estimated: the user's
    for every field (``--cell-size``, ``--um-per-px``) in ``given_px``, or estimated once per field size in
    ``by_field_size`` (``WxH`` -> px: fields of one size come from one camera and magnification); ``source``
    says which, in words. An empty scale (nothing known yet) has neither."""

    source: str = ""
    given_px: float | None = None  # px, every field's
    by_field_size: dict[str, float] = field(default_factory=dict)  # px per field size, rounded to 0.01

    def cell_px(self, rgb: np.ndarray, detector) -> float:
        """The white-cell diameter (px) in field ``rgb``; a field size first met here is estimated on this
        field by ``detector`` (and kept for the slide's other fields of that size)."""
        if self.given_px:
            return self.given_px
        key = shape_key(rgb)
        if key not in self.by_field_size:  # e.g. its size's sample fields were unreadable
            self.by_field_size[key] = round(detector.estimate_cell_px([rgb]), 2)
        return self.by_field_size[key]

    def record(self) -> dict:
        """The scale as verdict.json holds it: ``{"cell_px", "source"}`` when given, ``{"cell_px_by_field_size",
        "source"}`` when estimated, ``{}`` when nothing is known."""
        if self.given_px is not None:
            return {"cell_px": self.given_px, "source": self.source}
        if not self.source and not self.by_field_size:
            return {}
        return {"cell_px_by_field_size": self.by_field_size, "source": self.source}

    @classmethod
    def from_record(cls, record: dict | None) -> Scale:
        """The scale an earlier run recorded in verdict.json (``record``; None: nothing known)."""
        record = record or {}
        return cls(record.get("source", ""), record.get("cell_px"), dict(record.get("cell_px_by_field_size", {})))
