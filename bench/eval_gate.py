"""What the classifier's promotion gate (``leukoscan classify promote``, ``classify/gate.py``) decides on the
candidates ``bench/eval_lab_finetune.py`` fine-tuned.

Each candidate is a leave-one-lab-out model fine-tuned on N reviewed cells of the single-cell lab it never saw
(``runs/lab-finetune/<name>/weights/last.pt``); the model it started from is the model in use. The gate scores
both as ``classify promote`` does (``gate.score``, ``gate.gate``, tolerance 0.02): the lab's held-out cells are
here the half of the lab no reviewer drew from (every cell labelled, as if a reviewer had confirmed or corrected
each), the regression set the labelled test cells of ``leukoscan data cells`` of the sources other than the lab
(the lab is the one the model never saw; in a real lab the regression set is every source's). Nothing is trained.

    python bench/eval_gate.py   # writes bench/results/lab_gate.{json,md}; ~5 min on 2 CPU cores
    python bench/eval_gate.py --refit-prior --name lab_gate_refit   # the trial: each candidate's class prior
                                # made from the shares of the set it was fine-tuned on, not the model it started from
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_crosslab import eval_cells  # noqa: E402
from eval_lab_finetune import halves  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.config import BUILD_DIR, WEIGHTS_DIR  # noqa: E402
from leukoscan.timing import Stopwatch  # noqa: E402

NAME = re.compile(r"no-(?P<lab>\w+)-n(?P<n>\d+)-s(?P<seed>\d+)(?P<kind>(-normal)?(-mistakes)?)$")
FIGURES = ("accuracy", "blast_recall", "normal_called_blast", "blast_auc")  # what the gate reads
KINDS = {
    "": "any",
    "-normal": "normal only",
    "-mistakes": "the model's mistakes",
    "-normal-mistakes": "normal mistakes",
}


def main() -> None:
    from leukoscan.classify.gate import GateCells, gate, regression_cells, score

    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="cell dataset folder")
    ap.add_argument("--runs", type=Path, default=Path("runs/lab-finetune"), help="eval_lab_finetune's runs")
    ap.add_argument("--tolerance", type=float, default=0.02)
    ap.add_argument("--name", default="lab_gate", help="results file name")
    ap.add_argument(
        "--refit-prior",
        action="store_true",
        help="the trial: each candidate's class prior refitted to its fine-tuning set's shares (not its start's)",
    )
    args = ap.parse_args()
    cells = eval_cells(args.cells)
    candidates = (
        (m, d / "weights" / "last.pt")
        for d in args.runs.iterdir()
        if (m := NAME.match(d.name)) and (d / "weights" / "last.pt").is_file()
    )
    rows, current_scores, seen = [], {}, set()
    for match, candidate in sorted(candidates, key=lambda c: (c[0]["lab"], c[0]["kind"], int(c[0]["n"]), c[0]["seed"])):
        lab = match["lab"]
        name = candidate.parent.parent.name  # the cells drawn: each once in the fine-tuning set (lab0_*)
        n = len(list((args.runs / "data" / name / "train").glob("*/lab0_*"))) or int(match["n"])
        if (
            key := (lab, match["kind"], match["seed"], n)
        ) in seen:  # an earlier run of the same draw (Zheng's "200": 197)
            continue
        seen.add(key)
        if args.refit_prior:
            candidate = refitted(candidate, args.runs / "data" / name / "train")
        start = WEIGHTS_DIR / "lolo" / f"no-{lab}.pt"
        if lab not in current_scores:
            start_card = json.loads(start.with_suffix(".json").read_text())
            known = sorted(start_card["data"]["train_counts"]["train"])
            _, scored = halves(cells, lab, [t for t in known if t != "other"])  # as eval_lab_finetune scores
            held = scored.assign(predicted=scored.type).reset_index(drop=True)
            held.attrs["root"] = cells.attrs["root"]
            regression = regression_cells(args.cells, start_card["geometry"])
            regression = regression[regression.source != lab].reset_index(drop=True)
            regression.attrs["root"] = cells.attrs["root"]
            watch = Stopwatch()  # what `classify promote` does: read the crops, score both models
            with watch("read"):
                cells_of = GateCells.read(held, regression)
            with watch("current"):
                current_scores[lab] = (cells_of, score(start, cells_of), watch)
        cells_of, now, watch = current_scores[lab]
        held, regression = cells_of.lab, cells_of.regression
        scoring = Stopwatch()
        with scoring("candidate"):
            new = score(candidate, cells_of)
        promoted, reason = gate({"current": now, "candidate": new}, args.tolerance)
        row = {
            "lab": lab,
            "reviewed cells": KINDS.get(match["kind"], match["kind"]),
            "reviewed": n,
            "seed": int(match["seed"]),
            "promoted": promoted,
            "failed": [part.split(" (")[0] for part in reason.split("; ") if part.endswith(": failed)")],
            "reason": reason,
            "n_lab": len(held),
            "n_regression": len(regression),
            "current": now,
            "candidate": new,
            "seconds": {stage: round(t, 1) for stage, t in (watch.seconds | scoring.seconds).items()},
        }
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("current", "candidate")}), flush=True)
    results = {"tolerance": args.tolerance, "refit_prior": args.refit_prior, "rows": rows}
    save(args.name, results, markdown(rows, args.tolerance, args.refit_prior))


def refitted(candidate: Path, train: Path) -> Path:
    """A copy of ``candidate`` (beside it, in ``weights-refit/``) whose card's class prior is the shares of the
    fine-tuning set it was last trained on (``train``), the temperature kept (it moves no call)."""
    from leukoscan.classify.train import folder_counts, scores_card

    card = json.loads(candidate.with_suffix(".json").read_text())
    correction = card["prior_correction"]
    scores = scores_card(
        folder_counts(train), card["test_time_views"], correction["strength"], correction["others_strength"]
    )
    out = candidate.parent.parent / "weights-refit" / candidate.name
    out.parent.mkdir(exist_ok=True)
    shutil.copyfile(candidate, out)
    out.with_suffix(".json").write_text(json.dumps(card | scores, indent=2))
    return out


def span(seconds: pd.Series) -> str:
    low, high = f"{seconds.min():.0f}", f"{seconds.max():.0f}"
    return low if low == high else f"{low}-{high}"


def timing(rows: list[dict]) -> str:
    """Per lab: the seconds to read its crops and to score the two models, and their sum (a promote's time)."""
    parts = []
    for lab, group in pd.DataFrame(rows).groupby("lab", sort=False):
        s = pd.DataFrame(list(group.seconds))
        total = s.read + s.current + s.candidate
        parts.append(
            f"{lab} ({group.n_lab.iloc[0]} held-out + {group.n_regression.iloc[0]} regression cells) reading "
            f"{s.read.iloc[0]:.0f} s, the model in use {s.current.iloc[0]:.0f} s, a candidate "
            f"{span(s.candidate)} s: {span(total)} s in all"
        )
    return "; ".join(parts)


def markdown(rows: list[dict], tolerance: float, refit: bool = False) -> str:
    def change(row: dict, where: str, name: str) -> str:  # the model in use -> the candidate
        figures = [row[m][where][name] for m in ("current", "candidate")]
        return " → ".join("–" if v is None else f"{v:.3f}" for v in figures)

    figures = [(f"{w} {n.replace('_', ' ')}", w, n) for w in ("lab", "regression") for n in FIGURES]
    table = pd.DataFrame(
        [
            {"lab": r["lab"], "reviewed cells": r["reviewed cells"], "N": r["reviewed"], "seed": r["seed"]}
            | {title: change(r, w, n) for title, w, n in figures}
            | {"gate": "promoted" if r["promoted"] else "rejected: " + ", ".join(r["failed"])}
            for r in rows
        ]
    )
    return "\n".join(
        [
            "The classifier's promotion gate on the candidates of `bench/eval_lab_finetune.py` (`python "
            f"bench/eval_gate.py`, tolerance {tolerance:g}): each leave-one-lab-out model fine-tuned on N reviewed "
            "cells of the lab it never saw, against the model it started from (before → after); the lab's figures on "
            "the half no reviewer drew from, the regression set's on the labelled test cells of the other sources."
            + (
                " The trial: each candidate's class prior refitted to its fine-tuning set (`--refit-prior`)."
                if refit
                else ""
            ),
            "",
            table.to_markdown(index=False),
            "",
            "The gate's work on 2 CPU cores, as `leukoscan classify promote` does it (reading the held-out and "
            "regression crops, then scoring the model in use and the candidate): " + timing(rows) + ".",
        ]
    )


if __name__ == "__main__":
    main()
