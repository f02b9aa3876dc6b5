"""Do hand-measured cell shapes transfer across labs better than the network? A leave-one-lab-out trial.

What makes a blast a blast to a hematologist (a large nucleus for the cell, round and unlobed, fine
chromatin, scant cytoplasm) can be measured on the same fixed-physical-scale crops the classifier sees:
each crop's nucleus is segmented with scikit-image (Otsu on darkness below the crop's background and
blueness, the components near the centre kept) and described by 14 numbers (``FEATURES``), all relative to
the crop's own background and contrast so that no lab's brightness enters. For each source held out, a
logistic regression (scikit-learn, which comes with nncf) learns blast vs non-blast from the other sources'
training splits (each source and class weighted alike) and is scored on the held-out source as
``eval_crosslab`` scores the network: its operating threshold flags 2 % of the training sources' normal
validation cells. Taleqani's training split is sampled (``--taleqani-train``), its labels the field
diagnoses as built.

    python bench/eval_morphometry.py     # writes bench/results/crosslab_morphometry.{json,md}
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from skimage import color, filters, measure, morphology

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from crosslab_runs import figure_rows  # noqa: E402
from eval_crosslab import RESULTS, eval_cells, held_out_row, held_out_sets, trial_parser  # noqa: E402
from results_io import save  # noqa: E402

from leukoscan.config import SETTINGS  # noqa: E402
from leukoscan.datasets.cells import read_crops  # noqa: E402

FEATURES = (
    "nucleus area",  # in slide cell diameters squared (the crop is a fixed physical window)
    "nucleus solidity",  # area over convex hull: lobed and indented nuclei are low
    "nucleus pieces",
    "nucleus eccentricity",
    "nucleus darkness",  # background lightness minus the nucleus', over the crop's lightness range
    "chromatin texture",  # lightness SD within the nucleus, same unit
    "rim darkness",  # a 3 px ring around the nucleus (cytoplasm, or background where there is none)
    "rim minus nucleus b*",
    "rim minus nucleus a*",
    "nucleus irregularity",  # perimeter^2 / (4 pi area)
    "nucleus major axis",  # in slide cell diameters
    "nucleus minor axis",
    "nucleus edges",  # mean Sobel magnitude within the nucleus, over the lightness range
    "nucleus distance from centre",
)
VAL_FALSE_SHARE = 0.02  # the operating threshold flags this share of the training sources' normal val cells
NETWORK_RUNS = ("crosslab", "crosslab_seed1")  # the shipped recipe's leave-one-lab-out results, for comparison


def features(crop: np.ndarray) -> np.ndarray:
    """``FEATURES`` of the white cell in the middle of one RGB crop (NaN where no nucleus is found)."""
    lab = color.rgb2lab(crop.astype(np.float32) / 255)
    lightness = lab[..., 0]
    side = crop.shape[1] / SETTINGS.geometry.window_cells  # a slide cell diameter, in crop pixels
    yy, xx = np.mgrid[: crop.shape[0], : crop.shape[1]]
    radius = np.hypot(yy - (crop.shape[0] - 1) / 2, xx - (crop.shape[1] - 1) / 2) / side
    background = np.percentile(lightness, 90)
    nuclear = (background - lightness) - 0.5 * lab[..., 2]  # dark and blue (b* < 0)
    labels = measure.label(morphology.remove_small_objects(nuclear > filters.threshold_otsu(nuclear), max_size=4))
    central = [p.label for p in measure.regionprops(labels) if radius[tuple(np.round(p.centroid).astype(int))] < 0.35]
    if not central:
        return np.full(len(FEATURES), np.nan, np.float32)
    nucleus = np.isin(labels, central)
    shape = measure.regionprops(nucleus.astype(int))[0]
    rim = morphology.dilation(nucleus, morphology.disk(3)) & ~nucleus
    spread = max(background - np.percentile(lightness, 5), 1.0)
    return np.array(
        [
            nucleus.sum() / side**2,
            shape.solidity,
            len(central),
            shape.eccentricity,
            (background - lightness[nucleus].mean()) / spread,
            lightness[nucleus].std() / spread,
            (background - lightness[rim].mean()) / spread,
            lab[..., 2][rim].mean() - lab[..., 2][nucleus].mean(),
            lab[..., 1][rim].mean() - lab[..., 1][nucleus].mean(),
            shape.perimeter**2 / nucleus.sum() / (4 * np.pi),
            shape.axis_major_length / side,
            shape.axis_minor_length / side,
            filters.sobel(lightness)[nucleus].mean() / spread,
            radius[nucleus].mean(),
        ],
        np.float32,
    )


def feature_table(cells: pd.DataFrame, workers: int = 2) -> pd.DataFrame:
    """``FEATURES`` of every crop of ``cells`` (NaN filled with the table's medians), on its index."""
    crops = read_crops(cells)
    with ProcessPoolExecutor(workers) as pool:
        rows = list(pool.map(features, crops, chunksize=256))
    table = pd.DataFrame(np.stack(rows), columns=list(FEATURES), index=cells.index)
    return table.fillna(table.median())


def fit(train: pd.DataFrame, x: pd.DataFrame):
    """Blast vs non-blast, each (source, class) weighted alike."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = (train.type == "blast").astype(int)
    weight = 1.0 / train.groupby([train.source, y]).type.transform("size")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return model.fit(x.loc[train.index], y, logisticregression__sample_weight=weight.to_numpy())


def held_out_figures(source: str, subset: pd.DataFrame, score: np.ndarray, threshold: float) -> dict:
    """``eval_crosslab``'s held-out figures of a blast score: a two-column matrix (score, threshold) whose
    argmax is 0, ``blast``, where the score reaches the threshold (no cell types: PBC's and Zheng's accuracy
    is left out)."""
    figures = held_out_row(source, subset, np.c_[score, np.full(len(score), threshold)])
    return figures if source in ("munich", "taleqani") else {"normal_called_blast": figures["normal_called_blast"]}


def comparison(held_out: dict[str, dict]) -> pd.DataFrame:
    """Each held-out figure of this trial beside the network's (``NETWORK_RUNS``)."""
    runs = {name: json.loads((RESULTS / f"{name}.json").read_text())["leave_one_lab_out"] for name in NETWORK_RUNS}
    rows = []
    for source, figures in held_out.items():
        for row in figure_rows(source):
            row["morphometry"] = figures.get(row["figure"])
            row |= {f"network, {name}": run[source]["model"].get(row["figure"]) for name, run in runs.items()}
            rows.append(row)
    return pd.DataFrame(rows)


def main() -> None:
    ap = trial_parser(__doc__, "crosslab_morphometry")
    ap.add_argument("--taleqani-train", type=int, default=6000, help="Taleqani training cells sampled")
    args = ap.parse_args()
    cells = eval_cells(args.cells)
    cells = cells[cells.source.isin(["munich", "pbc", "zheng", "taleqani"]) & (cells.type != "other")]
    tq_train = cells[(cells.source == "taleqani") & (cells.split == "train")]
    cells = cells.drop(tq_train.index.difference(tq_train.sample(args.taleqani_train, random_state=0).index))
    x = feature_table(cells)
    result = {"features": list(FEATURES), "n_cells": int(len(cells)), "held_out": {}}
    for source, subset in held_out_sets(cells).items():
        others = cells[cells.source != source]
        model = fit(others[others.split == "train"], x)
        val = others[(others.split == "val") & (others.type != "blast")]
        threshold = float(np.quantile(model.predict_proba(x.loc[val.index])[:, 1], 1 - VAL_FALSE_SHARE))
        score = model.predict_proba(x.loc[subset.index])[:, 1]
        result["held_out"][source] = held_out_figures(source, subset, score, threshold) | {
            "threshold": round(threshold, 4)
        }
        print(source, result["held_out"][source], flush=True)
    md = (
        "Hand-measured nucleus shape, a logistic regression per held-out source "
        f"(`python bench/eval_morphometry.py`; {len(cells):,} cells, Taleqani's training split sampled): "
        "beside the network's two training runs of the shipped recipe (`crosslab_runs.md`).\n\n"
        + comparison(result["held_out"]).to_markdown(index=False, floatfmt=".3f")
    )
    save(args.name, result, md)


if __name__ == "__main__":
    main()
