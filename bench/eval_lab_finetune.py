"""A lab's own reviewed cells (``leukoscan classify finetune``): how many does a model need to read a lab it
never saw?

Each leave-one-lab-out model on the single-cell source it never saw (Munich, PBC, Zheng; Taleqani has no
per-cell labels), that source taken as a new laboratory whose hematologist reviews ``N`` of its cells: the
source's cells (the types the model knows) split in two halves by position, ``N`` drawn at random from the
first (the reviewed cells, with their dataset types), the figures measured on the second, which the
fine-tuned model never saw. ``N`` = 0 is the model as shipped. Beside them, the same models' figures on
the test splits of the sources they were trained on (``eval_seen.FIGURES``): what fine-tuning costs on the
labs a model knew. "ref": the scored cells with a lab reference (``leukoscan lab-reference``) made from the
normal cells of the reviewer's half, the blast call placed at 2 % of them: the lab's two tools together.
Fine-tuning as ``classify finetune`` does it (``classify/finetune.py``: the reviewed cells repeated to a
quarter of the set, 3,000 of the model's own training crops replayed, 4 epochs, the last epoch's weights);
the models' training folders are rebuilt as ``bench/train_crosslab.py`` builds them
(``model_training_folder``). ``--replay own-hard`` / ``own-soft``: the trial of what a lab without ../shared
could replay instead, the lab's other cells of the reviewer's half trained towards the model's calls or its
probabilities (``own_cells``); ``--replay training-soft``: the training crops replayed towards the model's
probabilities (distillation), not their types; ``--blast-weight 2``: the training blasts replayed at twice
their share.

    python bench/eval_lab_finetune.py [--n 25 --n 100 --n 200] [--seed 0] [--lab munich --normal-only]
    python bench/eval_lab_finetune.py --mistakes-only --name lab_finetune_mistakes  # the cells it calls wrong
    python bench/eval_lab_finetune.py --n 25 --replay own-soft --name lab_finetune_own_soft  # ~6 min
    # writes bench/results/lab_finetune.{json,md}; ~15 min on 2 CPU cores (about 1.5 min a fine-tuning)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_crosslab import NORMAL, eval_cells, flat_source_figures, held_out_row, predict  # noqa: E402
from eval_lab_reference import reference_margins  # noqa: E402
from eval_seen import FIGURES  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan import runtime  # noqa: E402
from leukoscan.cells import BLAST, CELL_TYPES  # noqa: E402
from leukoscan.classify.predict import CellClassifier  # noqa: E402
from leukoscan.classify.train import folder_crops  # noqa: E402
from leukoscan.config import BUILD_DIR, SETTINGS, WEIGHTS_DIR  # noqa: E402
from leukoscan.datasets.cells import read_crops  # noqa: E402
from leukoscan.lab import fit_offset, shift_blast  # noqa: E402

LABS = ("munich", "pbc", "zheng")
HEADLINE = {  # the held-out figures of eval_crosslab's table, and the blasts found
    "munich": ("auc_blast_vs_neutrophil", "blast_recall", "neutrophils_called_blast"),
    "pbc": ("normal_called_blast", "accuracy"),
    "zheng": ("normal_called_blast", "accuracy"),
}


def halves(cells: pd.DataFrame, source: str, types: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``source``'s cells of ``types``: the pool a lab's reviewer draws from (even positions) and the rest."""
    subset = cells[(cells.source == source) & cells.type.isin(types)]
    even = np.arange(len(subset)) % 2 == 0
    return subset[even], subset[~even]


OWN_VAL_EVERY = 10  # one of the lab's own cells in 10 is a validation crop, not replayed


def own_cells(calls: pd.DataFrame, classes: list[str], soft: bool, min_p: float = 0.0):
    """A ``Replay`` of the lab's own unreviewed cells as the model sees them (``calls``: ``crop`` and ``p_<type>``,
    the model's softmax, for each of its ``classes``), each in the pool of its most likely type, one in
    ``OWN_VAL_EVERY`` kept for validation (its labels the model's calls: the temperature is kept). With ``soft``
    each is trained towards those probabilities (distillation: the model asked to say of the lab's other cells
    what it said before); else towards its most likely type, where that is at least ``min_p`` likely. The trial
    of what a lab without the training data (../shared) could replay; not what ``classify finetune`` does."""
    from leukoscan.classify.finetune import Replay

    kinds = sorted(classes)
    probs = calls[[f"p_{kind}" for kind in kinds]].to_numpy(np.float32)
    keep = probs.max(1) >= min_p
    crops, probs = [Path(c) for c in calls.crop[keep]], probs[keep] / probs[keep].sum(1, keepdims=True)
    called = np.asarray(kinds)[probs.argmax(1)]
    val = np.arange(len(crops)) % OWN_VAL_EVERY == OWN_VAL_EVERY - 1
    pools, vals = (
        {kind: [c for c, k, v in zip(crops, called, val) if k == kind and v == part] for kind in kinds}
        for part in (False, True)
    )
    source = "own cells, " + ("soft" if soft else f"called at p >= {min_p:g}")
    return Replay(pools, vals, calibrate=False, source=source, soft=dict(zip(crops, probs)) if soft else None)


def training_teacher(start: Path, training: Path, classes: list[str]) -> dict[Path, np.ndarray]:
    """The model's softmax (``view_probs``, its ``classes`` in sorted order) on every crop of its training folder's
    ``train/``: the targets of the training crops replayed with ``--replay training-soft``."""
    crops, _, files = folder_crops(training / "train", sorted(classes))
    plain = CellClassifier(start, device="cpu", strict=False).view_probs(crops)
    plain = plain[:, [CELL_TYPES.index(kind) for kind in sorted(classes)]]
    return dict(zip(files, plain / plain.sum(1, keepdims=True)))


def with_reference(probs: np.ndarray, scored: pd.DataFrame, reference: np.ndarray) -> dict:
    """The scored cells with a lab reference (``leukoscan lab-reference``) made from ``reference``, the
    probabilities of the lab's normal cells of the reviewer's half: its blast call placed at 2 % of them."""
    offset = fit_offset(reference_margins(reference), SETTINGS.lab.normal_called_blast)
    shifted = shift_blast(probs, offset).argmax(1) == BLAST
    blast = (scored.type == "blast").to_numpy()
    return {
        "ref normal_called_blast": round(float(shifted[~blast].mean()), 4),
        "ref blast_recall": round(float(shifted[blast].mean()), 4) if blast.any() else None,
    }


def main() -> None:
    from leukoscan.classify.finetune import (
        FinetuneRecipe,
        Replay,
        finetune_cells,
        finetune_folder,
        model_training_folder,
    )

    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells", help="cell dataset folder")
    ap.add_argument("--n", type=int, action="append", help="reviewed cells (repeatable; default 25, 100, 200)")
    ap.add_argument("--lab", action="append", choices=LABS, help="labs to run (repeatable; default all)")
    ap.add_argument("--seed", type=int, default=0, help="which cells are reviewed, and the fine-tuning's seed")
    ap.add_argument(
        "--normal-only", action="store_true", help="the reviewer draws normal cells only (a lab of normal slides)"
    )
    ap.add_argument(
        "--mistakes-only",
        action="store_true",
        help="the reviewer draws the cells the model calls wrong (what the review page's corrections hold)",
    )
    ap.add_argument(
        "--replay",
        choices=("training", "training-soft", "own-soft", "own-hard"),
        default="training",
        help="what fine-tuning replays: the model's training crops (../shared), or the lab's unreviewed cells of "
        "the reviewer's half (what a lab without ../shared has) trained towards the model's probabilities "
        "(own-soft) or its calls (own-hard); training-soft: the training crops, trained towards the model's "
        "probabilities rather than their types (distillation)",
    )
    ap.add_argument(
        "--blast-weight",
        type=int,
        default=1,
        help="replayed training blasts this many times their share (the trial: a lab of normal cells teaching the "
        "model fewer blasts)",
    )
    ap.add_argument("--min-p", type=float, default=0.9, help="own-hard: the least probability of a call replayed")
    ap.add_argument("--runs", type=Path, default=Path("runs/lab-finetune"), help="fine-tuning runs")
    ap.add_argument("--name", default="lab_finetune", help="results file name")
    args = ap.parse_args()
    sizes = args.n or [25, 100, 200]
    cells = eval_cells(args.cells)
    test = cells[cells.split == "test"]
    rows = []
    for source in args.lab or LABS:
        start = WEIGHTS_DIR / "lolo" / f"no-{source}.pt"
        training = model_training_folder(start, args.cells)
        known = sorted(d.name for d in (training / "train").iterdir())
        pool, scored = halves(cells, source, [t for t in known if t in (*NORMAL, "blast")])
        reference = pool[pool.type != "blast"]  # the lab's normal cells, as its normal slides give them
        seen = {s: names for s, names in FIGURES.items() if s != source}
        seen_cells = test[test.source.isin(seen)]
        drawn = reference if args.normal_only else pool
        own = None
        if args.replay.startswith("own"):  # the lab's cells as the model sees them: its softmax (``view_probs``)
            plain = CellClassifier(start, device="cpu", strict=False).view_probs(read_crops(pool))
            own = pd.DataFrame(plain, columns=[f"p_{t}" for t in CELL_TYPES], index=pool.index)
            own.insert(0, "crop", [str(args.cells / c) for c in pool.crop])
        teacher = training_teacher(start, training, known) if args.replay == "training-soft" else None
        if args.mistakes_only:  # the model's calls on the pool (its argmax, as the review page shows)
            drawn = drawn[np.asarray(CELL_TYPES)[predict(start, drawn, cells).argmax(1)] != drawn.type.to_numpy()]
        for n in sorted({0, *(min(size, len(drawn)) for size in sizes)}):  # a pool of fewer: all of it, once
            weights, seconds = start, None
            if n:
                reviewed = drawn.sample(n, random_state=args.seed)
                lab = pd.DataFrame({"crop": [str(args.cells / c) for c in reviewed.crop], "type": reviewed.type})
                name = f"no-{source}-n{n}-s{args.seed}" + ("-normal" if args.normal_only else "")
                name += "-mistakes" if args.mistakes_only else ""
                replay = Replay.training(training)
                if args.blast_weight != 1:  # the blast pool listed as many times over (a pool drawn again)
                    name += f"-blasts{args.blast_weight:g}"
                    pools = replay.pools | {"blast": replay.pools["blast"] * args.blast_weight}
                    replay = dataclasses.replace(
                        replay, pools=pools, source=f"training crops, blasts x{args.blast_weight:g}"
                    )
                if teacher is not None:
                    name += "-soft-replay"
                    replay = dataclasses.replace(replay, soft=teacher, source="training crops, soft")
                if own is not None:  # the lab's other cells, as the model saw them
                    hard = args.replay == "own-hard"
                    name += f"-own-hard{args.min_p:g}" if hard else "-own-soft"
                    calls = own[~own.index.isin(reviewed.index)]
                    replay = own_cells(calls, known, soft=not hard, min_p=args.min_p if hard else 0.0)
                finetune_folder(lab, replay, args.runs / "data" / name, seed=args.seed)
                recipe = FinetuneRecipe(seed=args.seed)
                weights, card = finetune_cells(
                    start, args.runs / "data" / name, args.runs, name, recipe, "cpu", calibrate=replay.calibrate
                )
                weights.with_suffix(".json").write_text(json.dumps(card, indent=2))
                seconds = card["finetune"]["train_seconds"]
            probs = predict(weights, scored, cells)
            figures = held_out_row(source, scored, probs)
            row = {"lab": source, "reviewed": n, "seed": args.seed, "n_scored": len(scored), "train_seconds": seconds}
            row["reviewed cells"] = ("normal only" if args.normal_only else "any") + (
                ", the model's mistakes" if args.mistakes_only else ""
            )
            row["replayed"] = replay.source if n else "–"
            row |= {name: figures[name] for name in HEADLINE[source]}
            row |= with_reference(probs, scored, predict(weights, reference, cells))
            row |= flat_source_figures(seen_cells, predict(weights, seen_cells, cells), seen)
            rows.append(row)
            print(json.dumps(row), flush=True)
    save(args.name, {"rows": rows, "sizes": sizes}, markdown(rows, args))


def markdown(rows: list[dict], args) -> str:
    command = "python bench/eval_lab_finetune.py " + " ".join(
        [
            *(f"--n {n}" for n in args.n or []),
            *(f"--lab {lab}" for lab in args.lab or []),
            f"--seed {args.seed}",
            *(["--normal-only"] if args.normal_only else []),
            *(["--mistakes-only"] if args.mistakes_only else []),
            *([f"--replay {args.replay}"] if args.replay != "training" else []),
            *([f"--min-p {args.min_p:g}"] if args.replay == "own-hard" else []),
            *([f"--blast-weight {args.blast_weight:g}"] if args.blast_weight != 1 else []),
            *([f"--name {args.name}"] if args.name != "lab_finetune" else []),
        ]
    )
    lines = [
        f"A lab's reviewed cells, fine-tuned on (`{command}`): each leave-one-lab-out model on the half of the lab it "
        "never saw that no reviewer drew from; then its figures on the test splits of the sources it was trained on.",
        "",
    ]
    for source, group in pd.DataFrame(rows).groupby("lab", sort=False):
        table = group.dropna(axis=1, how="all").drop(columns=["lab"])
        table = table.map(lambda x: "–" if pd.isna(x) else f"{x:.3f}" if isinstance(x, float) else x)
        lines += [f"no-{source} on {source}:", "", table.to_markdown(index=False, disable_numparse=True), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
