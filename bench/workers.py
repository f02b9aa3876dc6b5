"""1 vs N worker processes for `leukoscan run` on several slides (the `--workers` option).

    python bench/workers.py [--slides 4] [--fields 24] [--workers 1 2] [--repeats 2] [--backend pytorch]

Each slide is `--fields` 224x224 Taleqani fields (synthetic smears when the dataset is absent). Every
configuration runs the real CLI in a fresh process (model loading and process start-up included) into a
fresh output folder, `--repeats` times; the median wall time is reported. Writes bench/results/workers.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import cv2  # noqa: E402

from bench.results_io import save  # noqa: E402
from leukoscan import runtime  # noqa: E402
from leukoscan.config import DATA_ROOT  # noqa: E402


def make_slides(root: Path, n_slides: int, n_fields: int) -> list[Path]:
    fields = sorted((DATA_ROOT / "all-taleqani" / "Original").glob("*/*.jpg"))[::11]
    slides = []
    for s in range(n_slides):
        folder = root / f"slide{s}"
        folder.mkdir()
        for i in range(n_fields):
            k = s * n_fields + i
            if k < len(fields):
                (folder / f"{i:03d}.jpg").write_bytes(fields[k].read_bytes())
            else:
                from synth import smear

                cv2.imwrite(str(folder / f"{i:03d}.jpg"), smear(seed=k)[0][..., ::-1])
        slides.append(folder)
    return slides


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slides", type=int, default=4)
    ap.add_argument("--fields", type=int, default=24)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--backend", default="pytorch")
    args = ap.parse_args()
    res = {
        "cpu_count": os.cpu_count(),
        "slides": args.slides,
        "fields_per_slide": args.fields,
        "backend": args.backend,
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        slides = make_slides(Path(tmp), args.slides, args.fields)
        for r in range(args.repeats):
            for w in args.workers:  # interleaved, so drift in machine load hits every configuration alike
                cmd = [
                    sys.executable,
                    str(ROOT / "pipeline.py"),
                    "run",
                    *map(str, slides),
                    "--out",
                    str(Path(tmp) / f"out-w{w}-r{r}"),
                    "--workers",
                    str(w),
                    "--backend",
                    args.backend,
                    "--device",
                    "cpu",
                ]
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                res["runs"].setdefault(str(w), []).append(round(time.perf_counter() - t, 2))
    n = args.slides * args.fields
    rows = ["| workers | threads per worker | wall s (median of runs) | runs | fields/s |", "|---|---|---|---|---|"]
    for w, walls in res["runs"].items():
        med = statistics.median(walls)
        rows.append(f"| {w} | {max(1, (os.cpu_count() or 1) // int(w))} | {med:.1f} | {walls} | {n / med:.1f} |")
    save(
        "workers",
        res,
        f"{args.slides} slides x {args.fields} fields, backend {args.backend}, {os.cpu_count()} cores.\n\n"
        + "\n".join(rows),
    )


if __name__ == "__main__":
    main()
