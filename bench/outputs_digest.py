"""Outputs unchanged? A digest of everything `leukoscan run` writes for the demo photographs and a 48-field
Taleqani slide, timings and run dates aside, compared with the one saved before a refactor.

    python bench/outputs_digest.py --save    # before: writes bench/results/outputs_digest.json
    python bench/outputs_digest.py           # after: the same runs, every file compared (exit 1 on a difference)

Each run is the real command in a fresh process. JSON files are compared without their ``seconds`` and
``screened_at`` keys, the review page without its timestamps; every other file (tables, overlays, gallery
sheets, crops) byte for byte; the journal (``.state/``, timings) is left out. The Taleqani slide is skipped,
with a line, when the dataset is absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leukoscan.config import DATA_ROOT  # noqa: E402

SAVED = ROOT / "bench" / "results" / "outputs_digest.json"
VARYING_KEYS = {"seconds", "screened_at"}
TIMESTAMP = re.compile(rb"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)?")


def without_varying(value):
    if isinstance(value, dict):
        return {k: without_varying(v) for k, v in value.items() if k not in VARYING_KEYS}
    if isinstance(value, list):
        return [without_varying(v) for v in value]
    return value


def file_digest(path: Path, tmp: Path) -> str:
    """``path``'s digest; the run's temporary folder (in a slide's recorded source) reads as ``<tmp>``."""
    data = path.read_bytes().replace(str(tmp).encode(), b"<tmp>")
    if path.suffix == ".json":
        data = json.dumps(without_varying(json.loads(data)), sort_keys=True).encode()
    elif path.suffix == ".html":
        data = TIMESTAMP.sub(b"<time>", data)
    return hashlib.sha256(data).hexdigest()[:16]


def run_digest(slides: list[Path], out: Path) -> dict[str, str]:
    """Screen ``slides`` (none: the demo) into ``out`` with the real command; every output file's digest."""
    subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), "run", *map(str, slides), "--out", str(out), "--device", "cpu"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return {
        str(p.relative_to(out)): file_digest(p, out.parent)
        for p in sorted(out.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)
    }  # not the journal


def taleqani_slide(folder: Path) -> Path | None:
    fields = sorted((DATA_ROOT / "all-taleqani" / "Original").glob("*/*.jpg"))[::23][:48]
    if len(fields) < 48:
        return None
    folder.mkdir()
    for f in fields:
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--save", action="store_true", help="save the digest as the reference")
    args = ap.parse_args()
    digest = {}
    with tempfile.TemporaryDirectory() as tmp:
        digest["demo"] = run_digest([], Path(tmp) / "demo")
        slide = taleqani_slide(Path(tmp) / "taleqani48")
        if slide is None:
            print(f"skipped: the 48-field Taleqani slide (no dataset at {DATA_ROOT})")
        else:
            digest["taleqani48"] = run_digest([slide], Path(tmp) / "out48")
    if args.save:
        SAVED.write_text(json.dumps(digest, indent=1, sort_keys=True) + "\n")
        print(f"saved {sum(map(len, digest.values()))} file digests to {SAVED.relative_to(ROOT)}")
        return
    saved = json.loads(SAVED.read_text())
    differ = [
        f"{run}/{name}: {'missing' if name not in digest.get(run, {}) else 'new' if name not in files else 'differs'}"
        for run in saved.keys() & digest.keys()
        for files in [saved[run]]
        for name in sorted(files.keys() | digest[run].keys())
        if files.get(name) != digest[run].get(name)
    ]
    print("\n".join(differ) if differ else f"unchanged: {sum(map(len, digest.values()))} files identical")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
