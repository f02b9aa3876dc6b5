"""A small registry of a model's weights: every decision about them, and the weights they replaced.

The registry (``weights/registry.json`` for the detector, ``weights/classifier-registry.json`` for the cell-type
classifier) is a log, one entry per decision: file, sha256, parent, date, metrics and ``status`` ("initial": the
weights in use when the registry began; "promoted", "rejected" by a promotion gate; "rolled back"). The weights
in use are the last promoted or rolled back ones (or the initial ones). Replaced weights are kept in
``weights/archive/`` (``<kind>-<sha256[:12]>.pt`` and its card); ``rollback`` restores any of them.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from leukoscan.cards import sha256


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class WeightsRegistry:
    """The registry of the weights in use at ``current``, a ``kind`` of model ("detector", "classifier")."""

    current: Path
    kind: str = "detector"

    @property
    def path(self) -> Path:
        name = "registry.json" if self.kind == "detector" else f"{self.kind}-registry.json"
        return self.current.parent / name

    def entries(self) -> list[dict]:
        """Its entries ([] when there is none); a ``ValueError`` (one line) for a file that is not a registry."""
        try:
            entries = json.loads(self.path.read_text()) if self.path.is_file() else []
        except ValueError as e:
            raise ValueError(f"{self.path} is not a readable registry ({e}): repair or move it") from None
        if not isinstance(entries, list):
            raise ValueError(f"{self.path} is not a registry (a JSON list of entries): repair or move it")
        return entries

    def record(self, *entries: dict) -> None:
        """Add ``entries`` to the log (written whole: a temporary file, then renamed)."""
        self._write(self._staged(*entries))

    def _staged(self, *entries: dict) -> Path:
        """The log with ``entries`` added, written beside it (not yet in its place): a folder that cannot be
        written fails here, before anything is installed."""
        staged = self.path.with_suffix(".json.tmp")
        staged.write_text(json.dumps([*self.entries(), *entries], indent=2) + "\n")
        return staged

    def _write(self, staged: Path) -> None:
        staged.replace(self.path)

    def decide(self, candidate: Path, promoted: bool, reason: str, scores: dict) -> None:
        """Record a promotion gate's decision on ``candidate`` (``scores``: "current" and "candidate", each
        model's metrics) and, when ``promoted``, install it as ``current`` (the weights it replaces archived).
        The first decision records the weights in use until then too (an event, as every entry). The log is
        written before the weights are installed and put in place after, so no promotion goes unlogged."""
        date = now()
        entries = []
        if not self.entries():
            initial = {"file": self.current.name, "sha256": sha256(self.current), "parent": None, "date": date}
            entries.append({**initial, "status": "initial", "metrics": scores["current"]})
        entries.append(
            {
                "file": candidate.name,
                "sha256": sha256(candidate),
                "parent": sha256(self.current),
                "date": date,
                "status": "promoted" if promoted else "rejected",
                "reason": reason,
                "metrics": scores["candidate"],
            }
        )
        staged = self._staged(*entries)
        if promoted:
            self._replace(candidate, {"date": date, "reason": reason, "scores": scores}, entries[-1]["sha256"])
        self._write(staged)

    def _replace(self, candidate: Path, promotion: dict, sha: str) -> None:
        """Archive ``current`` and install ``candidate`` in its place, with its card saying how it was promoted."""
        card = self.current.with_suffix(".json")
        self.archive(self.current, card)
        candidate_card = candidate.with_suffix(".json")
        new_card = {
            **(json.loads(candidate_card.read_text()) if candidate_card.is_file() else {}),
            "file": self.current.name,
            "sha256": sha,
            "promotion": promotion,
        }
        install(candidate, self.current)
        card.write_text(json.dumps(new_card, indent=2) + "\n")
        self.archive(self.current, card)

    def archived(self) -> dict[str, Path]:
        """sha256 -> archived weights of this kind."""
        return {sha256(f): f for f in sorted((self.current.parent / "archive").glob(f"{self.kind}-*.pt"))}

    def archive(self, weights: Path, card: Path) -> None:
        """Keep a copy of ``weights`` (and its card) in ``archive/`` named by its sha256."""
        archive = weights.parent / "archive"
        archive.mkdir(exist_ok=True)
        stem = f"{self.kind}-{sha256(weights)[:12]}"
        shutil.copyfile(weights, archive / f"{stem}.pt")
        if card.is_file():
            shutil.copyfile(card, archive / f"{stem}.json")

    def rollback(self, sha: str) -> Path:
        """Restore the archived weights whose sha256 starts with ``sha`` (at least 6 hex digits, one archive only)
        as ``current``; a ``ValueError`` (one line) otherwise, naming the archived ones."""
        archived = self.archived()
        choices = ", ".join(h[:12] for h in archived) or "none"
        sha = sha.strip().lower()
        if len(sha) < 6 or any(c not in "0123456789abcdef" for c in sha):
            raise ValueError(f"give at least 6 hex digits of an archived {self.kind}'s sha256 (archived: {choices})")
        matches = [f for h, f in archived.items() if h.startswith(sha)]
        if len(matches) != 1:
            what = f"no archived {self.kind}" if not matches else f"{len(matches)} archived {self.kind}s match"
            raise ValueError(f"{what} {sha!r} (archived: {choices})")
        restored = {
            "file": matches[0].name,
            "sha256": sha256(matches[0]),
            "parent": sha256(self.current) if self.current.is_file() else None,  # the weights it replaces
            "date": now(),
        }
        staged = self._staged({**restored, "status": "rolled back"})
        install(matches[0], self.current)
        card, current_card = matches[0].with_suffix(".json"), self.current.with_suffix(".json")
        if card.is_file():
            shutil.copyfile(card, current_card)
        else:  # archived without a card: the replaced weights' card would describe other weights
            note = {
                "file": self.current.name,
                "sha256": sha256(self.current),
                "note": f"restored from {matches[0].name}, no card",
            }
            current_card.write_text(json.dumps(note, indent=2) + "\n")
        self._write(staged)
        return self.current


def install(src: Path, current: Path) -> None:
    """Copy ``src`` to ``current``, whole or not at all (a Ctrl-C during the copy)."""
    tmp = current.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(current)
