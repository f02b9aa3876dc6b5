"""What a change of input shape costs each backend: the cell-type classifier's ``predict`` on batches of crops
whose size alternates (16, 7, 16, 7, ...: as a slide's fields give batches of different numbers of cells)
against the same batch size repeated, after one warm-up pass of each size. A backend that compiles its model
again for every new shape pays on each switch; one that keeps what it compiled does not.

    python bench/shape_switch.py [--rounds 5]    # after `leukoscan export --format onnx --format openvino ...`
    # writes bench/results/shape_switch.{json,md}
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_io import save  # noqa: E402
from speed import cpu_name  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.cards import BACKENDS, backend_file, load_model  # noqa: E402
from leukoscan.config import CLASSIFIER_WEIGHTS  # noqa: E402

SIZES = (16, 7)


def ms(model, crops: list[np.ndarray]) -> float:
    t = time.perf_counter()
    model.predict(crops, imgsz=64, verbose=False)
    return 1000 * (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    runtime.setup()
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (64, 64, 3), np.uint8) for _ in range(max(SIZES))]
    rows = []
    for backend in BACKENDS:
        try:
            model = load_model(backend_file(CLASSIFIER_WEIGHTS, backend), "classify")
        except FileNotFoundError as e:
            print(f"{backend}: {e}, left out")
            continue
        for n in SIZES:  # warm-up: each shape once
            ms(model, crops[:n])
        same = [ms(model, crops[: SIZES[0]]) for _ in range(2 * args.rounds)]
        switched = [ms(model, crops[: SIZES[r % 2]]) for r in range(2 * args.rounds)]
        rows.append(
            {
                "backend": backend,
                "same size ms (median)": round(statistics.median(same), 1),
                "size switched ms (median)": round(statistics.median(switched), 1),
            }
        )
    table = "\n".join(
        [
            "| backend | batch of 16 repeated, ms | batches of 16 and 7 in turn, ms |",
            "|---|---|---|",
            *(f"| {r['backend']} | {r['same size ms (median)']} | {r['size switched ms (median)']} |" for r in rows),
        ]
    )
    md = (
        f"The cell-type classifier's predict on 64 px crops (`python bench/shape_switch.py`; {cpu_name()}; medians of "
        f"{2 * args.rounds} calls after one warm-up call of each size):\n\n{table}"
    )
    save("shape_switch", {"cpu": cpu_name(), "rounds": args.rounds, "rows": rows}, md)


if __name__ == "__main__":
    main()
