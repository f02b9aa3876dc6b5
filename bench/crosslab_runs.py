"""Leave-one-lab-out figures over several training runs of one recipe: each run's value, their mean and range.

One training run is one draw: the seed and the weak-label cleaning move the held-out figures (README, "How
much a second training run moves these figures"). Each argument is a results name that
``bench/eval_crosslab.py`` wrote (``bench/results/<name>.json``), one per training run of the same recipe:

    python bench/train_crosslab.py --self-train txl-575x575 --zoom 0.5 --quarter-turns 0.5 --seed 1 \
        --only munich --only pbc --only zheng --only taleqani --ship-dir runs/seed1
    python bench/eval_crosslab.py --weights runs/seed1 --name crosslab_seed1
    python bench/crosslab_runs.py crosslab_one_correction crosslab_seed1   # bench/results/crosslab_runs.{json,md}

A run whose models were scored in more than one results file is named by joining them with ``+`` (each source
from the first file that holds it out): ``crosslab_seed1_scores+crosslab_seed1_munich``.

``crosslab_one_correction`` is ``crosslab`` as eval_crosslab.py wrote it for the seed-0 models with the scores
of before 2026-12-06 (one class-prior correction for every type; ``git show e07c264:bench/results/crosslab.json``),
the scores the seed-1 run was measured with; ``crosslab crosslab_seed1_scores --name crosslab_runs_scores``
compares the two runs with today's scores (the seed-1 model blind to Munich was not scored again: its AUC is the
same, the correction moving only the types other than blast). Three runs, the README's table (the seed-1 model
blind to Munich trained again and scored on its own, ``crosslab_seed1_munich``):

    python bench/crosslab_runs.py crosslab crosslab_seed1_scores+crosslab_seed1_munich crosslab_seed2 \
        --name crosslab_runs_3
"""

from __future__ import annotations

import argparse
import json

import pandas as pd
from eval_crosslab import HEADLINE, RESULTS

FIGURES = {  # held-out source -> the figures beside its headline metric
    "munich": ("blast_recall",),
    "taleqani": ("cell_blast_recall_all_fields", "benign_cells_called_blast"),
    "pbc": ("accuracy",),
    "zheng": ("accuracy",),
}


def figure_rows(source: str) -> list[dict]:
    """The start of a table row for each figure reported on a held-out ``source``: the headline one with its
    target, then those beside it."""
    headline, target, higher = HEADLINE[source]
    return [{"held out": source, "figure": headline, "target": f"{'>=' if higher else '<='} {target}"}] + [
        {"held out": source, "figure": figure, "target": ""} for figure in FIGURES[source]
    ]


def runs_table(results: dict[str, dict]) -> pd.DataFrame:
    """One row per held-out source and figure: each run's value (columns named by run), mean, min, max, and
    the target where the figure is the headline one. Sources a run did not hold out are left empty."""
    rows = []
    for source in HEADLINE:
        for row in figure_rows(source):
            for name, result in results.items():
                held = result["leave_one_lab_out"].get(source)
                row[name] = held["model"].get(row["figure"]) if held else None
            rows.append(row)
    table = pd.DataFrame(rows)
    values = table[list(results)].astype(float)
    return table.assign(
        mean=values.mean(axis=1), min=values.min(axis=1), max=values.max(axis=1), runs=values.count(axis=1)
    )


def read_run(name: str) -> dict:
    """The results of one training run: ``bench/results/<name>.json``, or for ``a+b`` those files' held-out
    sources together (each source from the first file that holds it out)."""
    parts = [json.loads((RESULTS / f"{part}.json").read_text()) for part in name.split("+")]
    held = {}
    for part in parts:
        held = {**part["leave_one_lab_out"], **held}
    return {**parts[0], "leave_one_lab_out": held}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "names",
        nargs="+",
        help="results names of eval_crosslab.py, one per training run (a+b: one run scored in two files)",
    )
    ap.add_argument("--name", default="crosslab_runs", help="results file name")
    args = ap.parse_args()
    results = {name: read_run(name) for name in args.names}
    table = runs_table(results)
    (RESULTS / f"{args.name}.json").write_text(table.to_json(orient="records", indent=2) + "\n")
    md = (
        f"Leave one lab out over {len(results)} training runs of one recipe ({', '.join(args.names)}; "
        "`bench/results/<name>.md` each): every run's figure on the held-out source, mean and range.\n\n"
        + table.astype(object).where(table.notna(), None).to_markdown(index=False, floatfmt=".3f", missingval="–")
        + "\n"
    )
    (RESULTS / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
