"""Train the leave-one-lab-out cell-type models and the shipped one, with the weak-label cleaning, in order.

For each held-out source X (munich, pbc, zheng), Taleqani's weak labels are cleaned by a model that saw
neither Taleqani nor X, so nothing of X reaches its leave-X-out model; the Taleqani-out model needs no
cleaning, and the shipped model's cleaning model is trained on every labelled source but Taleqani.
With ``--normalise`` the models (not the cleaning models) are trained on a colour-normalised copy of the
crops (``datasets.cells.normalised_copy``: each lab, or Taleqani block, mapped onto one reference colour;
``leukoscan run`` then maps each slide the same way): the trial in the README, not the shipped recipe.

    python bench/train_crosslab.py --normalise --ship-dir runs/normalised-weights   # then
    python bench/eval_crosslab.py --weights runs/normalised-weights --name crosslab_normalised

    python bench/train_crosslab.py --normalise --region surround --only munich --only pbc --only zheng \
        --only taleqani --ship-dir runs/surround-weights      # then
    python bench/eval_crosslab.py --weights runs/surround-weights --name crosslab_surround

    python bench/train_crosslab.py --normalise --region surround --channels L --only munich --only pbc \
        --only zheng --only taleqani --ship-dir runs/surround-L-weights      # then
    python bench/eval_crosslab.py --weights runs/surround-L-weights --name crosslab_surround_L

    python bench/train_crosslab.py --stain-transfer 0.5 --only munich --only pbc --only zheng --only taleqani \
        --ship-dir runs/transfer-weights      # then
    python bench/eval_crosslab.py --weights runs/transfer-weights --name crosslab_transfer

    python bench/train_crosslab.py --colour gray --ship-dir runs/gray-weights --only munich --only pbc   # then
    python bench/eval_crosslab.py --weights runs/gray-weights --name crosslab_gray

The shipped recipe (self-training on Raabin-WBC's white cells, its labels from weights/pseudo/, zoom and
quarter-turn augmentation):

    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --quarter-turns 0.5   # ~2 h: weights/
    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --quarter-turns 0.5 --only munich
    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --ship-dir runs/zoom-weights  # no turns
    python bench/train_crosslab.py --self-train txl-575x575 --ship-dir runs/self-weights   # without zoom
    python bench/train_crosslab.py --only munich --ship-dir runs/plain-weights   # the plain recipe before both

Trials on top of it: MixStyle (``--mixstyle 0.5``, README), lightness contrast (``--contrast 0.5``), sharpening
(``--sharpen 0.3``), as many
training blasts from each blast source (``--equal-blast-sources``), each source's blasts a class of their own
(``--blast-parts``), as few training lymphocytes from each Taleqani Benign field as blasts from an ALL field
(``--benign-per-field 2``), mixup (``--mixup 0.5``), and the same recipe with another seed (how much a
figure moves from one training run to the next):

    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --quarter-turns 0.5 --mixstyle 0.5 \
        --only zheng --only pbc --ship-dir runs/trial-mix   # then
    python bench/eval_crosslab.py --weights runs/trial-mix --name crosslab_mixstyle
    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --quarter-turns 0.5 --contrast 0.5 \
        --only munich --only pbc --ship-dir runs/trial-contrast   # then
    python bench/eval_crosslab.py --weights runs/trial-contrast --name crosslab_contrast
    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --quarter-turns 0.5 --equal-blast-sources \
        --only zheng --only pbc --ship-dir runs/eqblasts   # then eval_crosslab.py and eval_seen.py
    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --quarter-turns 0.5 --blast-parts \
        --only zheng --only pbc --ship-dir runs/parts   # then eval_crosslab.py and eval_seen.py
    python bench/train_crosslab.py --self-train txl-575x575 --self-train txl-416x416 --zoom 0.5 --quarter-turns 0.5 \
        --only munich --only zheng --ship-dir runs/self416   # a second lab of normal donors; then
    python bench/eval_crosslab.py --weights runs/self416 --name crosslab_self416
    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --quarter-turns 0.5 --save-period 1 \
        --only zheng --only munich --ship-dir runs/best0   # each epoch kept; then, on the same runs:
    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --quarter-turns 0.5 --save-period 1 \
        --only zheng --only munich --resume --average-last 10 --ship-dir runs/swa0   # (or 1: the last epoch)
    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --quarter-turns 0.5 --benign-per-field 2 \
        --only zheng --only pbc --ship-dir runs/benign2   # Taleqani's Benign fields capped as its ALL fields; then
    python bench/eval_crosslab.py --weights runs/benign2 --name crosslab_benign2
    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --quarter-turns 0.5 --only pbc --seed 1 \
        --ship-dir runs/seed1   # then
    python bench/eval_crosslab.py --weights runs/seed1 --name crosslab_seed1
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from leukoscan.classify.stain import CHANNELS, REGIONS  # noqa: E402
from leukoscan.classify.train import CellRecipe  # noqa: E402
from leukoscan.config import BUILD_DIR, WEIGHTS_DIR  # noqa: E402

HELD_OUT = ("taleqani", "munich", "pbc", "zheng")


def leukoscan(*args: str) -> None:
    print("$ leukoscan", " ".join(args), flush=True)
    subprocess.run([sys.executable, str(ROOT / "pipeline.py"), *args], check=True)


def reuse(run: Path, epochs: int) -> list[str]:
    """``--reuse`` for a training run whose every epoch is done: it is finished, not trained again (always for a
    cleaning model, whose run name says what it is blind to; for the models, with ``--resume``)."""
    results = run / "results.csv"
    done = (run / "weights" / "best.pt").exists() and results.exists()
    return ["--reuse"] if done and len(results.read_text().splitlines()) == epochs + 1 else []


CLEANING = WEIGHTS_DIR / "cleaning"  # the weak-label cleanings of the shipped models' labels (relabelled crops)


def cleaned_labels(cells: Path, runs: Path, source: str | None, epochs: int, device: str) -> Path:
    """cells.csv with Taleqani's labels cleaned by a model blind to Taleqani and to ``source``: redone from
    the committed table of what that cleaning relabelled (weights/cleaning/, ``classify.weak.relabel_table``)
    when there is one, else by training that model (``epochs``) and cleaning with it, its table written there."""
    import pandas as pd

    from leukoscan.classify.weak import redo_cleaning, relabel_table

    name = "clean" + (f"-no-{source}" if source else "")
    out = cells / "cleaned" / f"{name}.csv"
    if not out.exists() and (CLEANING / f"{name}.csv").exists():
        redo_cleaning(cells, CLEANING / f"{name}.csv")
    if not out.exists():
        excluded = ["--exclude", "taleqani"] + (["--exclude", source] if source else [])
        leukoscan(
            "classify",
            "train-cells",
            "--cells",
            str(cells),
            *excluded,
            "--name",
            name,
            "--epochs",
            str(epochs),
            "--device",
            device,
            "--project",
            str(runs),
            *reuse(runs / name, epochs),
            # one view, no prior correction: the scores whose confident calls cleaned the shipped models' labels
            "--test-time-views",
            "1",
            "--prior-correction",
            "0",
        )
        leukoscan(
            "classify",
            "clean",
            "--cells",
            str(cells),
            "--weights",
            str(runs / name / "weights" / "best.pt"),
            "--out",
            str(out),
            "--device",
            device,
        )
        CLEANING.mkdir(exist_ok=True)
        relabel_table(pd.read_csv(out, keep_default_na=False)).to_csv(CLEANING / f"{name}.csv", index=False)
    return out


def capped_benign(clean: Path, per_field: int, seed: int) -> Path:
    """``clean`` with each Taleqani Benign field giving at most ``per_field`` training cells of its weak type,
    lymphocyte, as an ALL field gives at most 2 blasts (``datasets.cells.training_folder``); the others typed
    ``drop``. Why (the trial): Benign fields give all their cells, hematogones among them, and so most of the
    training lymphocytes are one hospital's, not the mature lymphocytes of other labs."""
    df = pd.read_csv(clean, keep_default_na=False)
    benign = df[(df.source == "taleqani") & (df.subtype == "") & (df.type == "lymphocyte")]
    order = benign.sample(frac=1, random_state=seed).groupby("file").cumcount()
    df.loc[order.index[order >= per_field], "type"] = "drop"
    out = clean.with_name(f"{clean.stem}-benign{per_field}.csv")
    df.to_csv(out, index=False)
    print(f"{out}: {int((order >= per_field).sum())} of Taleqani's {len(benign)} Benign-field lymphocytes left out")
    return out


PSEUDO = WEIGHTS_DIR / "pseudo"  # the shipped models' pseudo labels (their cards hold these files' sha256)


def pseudo_labelled(cells: Path, labs: list[str], teacher: Path, device: str) -> Path:
    """The white cells of ``labs`` (normal donors) with ``teacher``'s best normal type (self-training), one
    table: each lab's the committed table in weights/pseudo/ when there is one (the shipped models were taught
    by the models before them, no longer in weights/), else labelled now by ``teacher``."""
    if len(labs) > 1:
        out = cells / "pseudo" / f"{'+'.join(labs)}-by-{teacher.stem}.csv"
        tables = [pd.read_csv(pseudo_labelled(cells, [lab], teacher, device)) for lab in labs]
        out.parent.mkdir(parents=True, exist_ok=True)
        pd.concat(tables, ignore_index=True).to_csv(out, index=False)
        return out
    name = f"{labs[0]}-by-{teacher.stem}.csv"
    if (PSEUDO / name).exists():
        return PSEUDO / name
    out = cells / "pseudo" / name
    if not out.exists():
        leukoscan(
            "classify",
            "pseudo-label",
            "--cells",
            str(cells),
            "--weights",
            str(teacher),
            "--lab",
            labs[0],
            "--known-normal",
            "--confident",
            "0.6",
            "--out",
            str(out),
            "--device",
            device,
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=Path, default=BUILD_DIR / "cells")
    ap.add_argument("--normalise", action="store_true", help="train on the colour-normalised copy (the trial)")
    ap.add_argument(
        "--colour", choices=("rgb", "gray"), default="rgb", help="the models' input colour (gray: the trial)"
    )
    ap.add_argument(
        "--region",
        choices=REGIONS,
        default="cells",
        help="--normalise with the colour of the whole crops, or of what surrounds each white cell",
    )
    ap.add_argument(
        "--channels", choices=CHANNELS, default="Lab", help="--normalise all of CIE Lab, or the lightness alone"
    )
    ap.add_argument(
        "--stain-transfer",
        type=float,
        default=0.0,
        help="share of training crops recoloured with a training lab's colour statistics (the trial)",
    )
    ap.add_argument("--zoom", type=float, default=0.0, help="share of training crops whose cell is zoomed (the trial)")
    ap.add_argument(
        "--quarter-turns", type=float, default=0.0, help="share of training crops turned a quarter (the trial)"
    )
    ap.add_argument(
        "--contrast",
        type=float,
        default=0.0,
        help="share of training crops whose lightness contrast and brightness are changed (the trial)",
    )
    ap.add_argument(
        "--sharpen", type=float, default=0.0, help="share of training crops sharpened by an unsharp mask (the trial)"
    )
    ap.add_argument(
        "--white-balance",
        type=float,
        default=0.0,
        help="share of training crops given another lamp's colour cast (the trial)",
    )
    ap.add_argument(
        "--mixstyle", type=float, default=0.0, help="share of training batches re-styled by MixStyle (the trial)"
    )
    ap.add_argument(
        "--mixup", type=float, default=0.0, help="share of training crops blended with another (mixup; the trial)"
    )
    ap.add_argument(
        "--equal-blast-sources",
        action="store_true",
        help="as many training blasts from each source, as many in all (the trial; changes the models that see two)",
    )
    ap.add_argument(
        "--blast-parts",
        action="store_true",
        help="each source's blasts a class of their own, added up into P(blast) (the trial; the models that see two)",
    )
    ap.add_argument(
        "--self-train",
        metavar="LAB",
        action="append",
        default=[],
        help="self-training on a TXL-PBC lab of normal donors' white cells (txl-575x575, Raabin-WBC), labelled "
        "by the teacher that never saw the held-out source (--teachers) with its best normal type; repeatable "
        "(a second lab: txl-416x416, the trial)",
    )
    ap.add_argument(
        "--teachers", type=Path, default=WEIGHTS_DIR, help="--self-train: lolo/no-<source>.pt, classifier.pt"
    )
    ap.add_argument(
        "--normalised",
        type=Path,
        default=None,
        help="colour-normalised copy (default data/cells-reinhard[-surround][-L])",
    )
    ap.add_argument(
        "--runs",
        type=Path,
        default=None,
        help="training runs (default runs/cells[-<trials>], or runs/cells-reinhard)",
    )
    ap.add_argument("--clean-runs", type=Path, default=ROOT / "runs" / "cells", help="the cleaning models' runs")
    ap.add_argument("--ship-dir", type=Path, default=WEIGHTS_DIR, help="where classifier.pt and lolo/ go")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument(
        "--model",
        default=CellRecipe.model,
        help="the network, an Ultralytics classification yaml (a larger: the trial)",
    )
    ap.add_argument("--seed", type=int, default=0, help="the models' training seed (not the cleaning models')")
    ap.add_argument(
        "--save-period", type=int, default=-1, help="keep every this many epochs' weights in the runs (-1: off)"
    )
    ap.add_argument(
        "--average-last",
        type=int,
        default=0,
        help="ship the average of the last this many epochs' weights (needs --save-period 1; the trial)",
    )
    ap.add_argument(
        "--remeasure-batchnorm", action="store_true", help="--average-last: batch norm measured again, not averaged"
    )
    ap.add_argument(
        "--benign-per-field",
        type=int,
        default=0,
        help="at most this many training lymphocytes from each Taleqani Benign field, as 2 blasts from an ALL field "
        "(0: all of them, the recipe; the trial)",
    )
    ap.add_argument("--clean-epochs", type=int, default=20)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--only", choices=[*HELD_OUT, "shipped"], action="append")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="a model whose run in --runs has every epoch done is finished (calibrated, shipped), not trained "
        "again: after a crash past training, with the same options and data (nothing checks that they are)",
    )
    args = ap.parse_args()
    if not (args.cells / "cells.csv").exists():
        leukoscan("data", "cells", "--out", str(args.cells))
    reinhard = (
        "cells-reinhard" + ("-surround" if args.region == "surround" else "") + ("-L" if args.channels == "L" else "")
    )
    args.normalised = args.normalised or BUILD_DIR / reinhard
    if args.normalise and not (args.normalised / "normalisation.json").exists():
        from leukoscan.datasets.cells import normalised_copy, read_cells

        normalised_copy(read_cells(args.cells), args.normalised, region=args.region, channels=args.channels)
    trials = {
        "-transfer": args.stain_transfer,
        "-zoom": args.zoom,
        "-self" + "".join(f"+{lab.removeprefix('txl-')}" for lab in args.self_train[1:]): args.self_train,
        "-turns": args.quarter_turns,
        "-mix": args.mixstyle,
        "-mixup": args.mixup,
        "-contrast": args.contrast,
        "-sharpen": args.sharpen,
        "-wb": args.white_balance,
        "-eqblasts": args.equal_blast_sources,
        "-parts": args.blast_parts,
        f"-benign{args.benign_per_field}": args.benign_per_field,
        f"-seed{args.seed}": args.seed,
        f"-{Path(args.model).stem}": args.model != CellRecipe.model,
    }
    runs = args.runs or ROOT / "runs" / (
        reinhard
        if args.normalise
        else f"cells-{args.colour}"
        if args.colour != "rgb"
        else "cells" + "".join(suffix for suffix, on in trials.items() if on)
    )
    for target in args.only or ["shipped", *HELD_OUT]:
        common = [
            "--cells",
            str(args.normalised if args.normalise else args.cells),
            "--epochs",
            str(args.epochs),
            "--model",
            args.model,
            "--device",
            args.device,
            "--project",
            str(runs),
            "--colour",
            args.colour,
            "--stain-transfer",
            str(args.stain_transfer),
            "--zoom",
            str(args.zoom),
            "--quarter-turns",
            str(args.quarter_turns),
            "--mixstyle",
            str(args.mixstyle),
            "--mixup",
            str(args.mixup),
            "--contrast",
            str(args.contrast),
            "--sharpen",
            str(args.sharpen),
            "--white-balance",
            str(args.white_balance),
            "--seed",
            str(args.seed),
            "--save-period",
            str(args.save_period),
            "--average-last",
            str(args.average_last),
            *(["--remeasure-batchnorm"] if args.remeasure_batchnorm else []),
            *(["--equal-blast-sources"] if args.equal_blast_sources else []),
            *(["--blast-parts"] if args.blast_parts else []),
        ]
        if args.self_train:
            teacher = args.teachers / ("classifier.pt" if target == "shipped" else f"lolo/no-{target}.pt")
            common += ["--pseudo", str(pseudo_labelled(args.cells, args.self_train, teacher, args.device))]
        if target == "shipped":
            clean = cleaned_labels(args.cells, args.clean_runs, None, args.clean_epochs, args.device)
            if args.benign_per_field:
                clean = capped_benign(clean, args.benign_per_field, args.seed)
            leukoscan(
                "classify",
                "train-cells",
                *common,
                "--cleaned",
                str(clean),
                "--name",
                "all",
                *(reuse(runs / "all", args.epochs) if args.resume else []),
                "--ship-to",
                str(args.ship_dir / "classifier.pt"),
            )
        elif target == "taleqani":
            leukoscan(
                "classify",
                "train-cells",
                *common,
                "--exclude",
                "taleqani",
                "--name",
                "no-taleqani",
                *(reuse(runs / "no-taleqani", args.epochs) if args.resume else []),
                "--ship-to",
                str(args.ship_dir / "lolo" / "no-taleqani.pt"),
            )
        else:
            clean = cleaned_labels(args.cells, args.clean_runs, target, args.clean_epochs, args.device)
            if args.benign_per_field:
                clean = capped_benign(clean, args.benign_per_field, args.seed)
            leukoscan(
                "classify",
                "train-cells",
                *common,
                "--exclude",
                target,
                "--cleaned",
                str(clean),
                "--name",
                f"no-{target}",
                *(reuse(runs / f"no-{target}", args.epochs) if args.resume else []),
                "--ship-to",
                str(args.ship_dir / "lolo" / f"no-{target}.pt"),
            )


if __name__ == "__main__":
    main()
