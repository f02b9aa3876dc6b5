"""Splits: deterministic contiguous blocks, duplicates removed before splitting, nothing leaks."""

import pandas as pd
from conftest import TALEQANI, needs_taleqani

from leukoscan.config import Splits
from leukoscan.datasets.splits import assign_splits, build_manifest, leaks


def synthetic(n=100, cls="Benign"):
    # random-looking, well separated 64-bit hashes
    import numpy as np

    rng = np.random.default_rng(0)
    hashes = [f"{int(x):016x}" for x in rng.integers(0, 2**63, n)]
    return pd.DataFrame(
        {
            "file": [f"{cls}/WBC-{cls}-{i:03d}.jpg" for i in range(n)],
            "class_dir": cls,
            "class_key": "benign",
            "number": range(n),
            "sha256": [f"s{i}" for i in range(n)],
            "phash": hashes,
        }
    )


def test_blocks_are_contiguous_and_deterministic():
    df = synthetic()
    a, b = assign_splits(df, Splits()), assign_splits(df.sample(frac=1, random_state=1), Splits())
    assert a.sort_values("number").split.tolist() == b.sort_values("number").split.tolist()
    used = a[a.split != ""].sort_values("number")
    # each split is made of whole runs of consecutive numbers: val and test are single blocks here
    for split in ("val", "test"):
        nums = used[used.split == split].number
        assert nums.max() - nums.min() + 1 == len(nums)
    assert (a.dropped.str.startswith("guard")).sum() > 0


def test_duplicates_dropped_before_split_and_leaks_detected():
    df = synthetic()
    df.loc[50, "sha256"] = df.loc[5, "sha256"]  # exact copy far away
    df.loc[95, "phash"] = f"{int(df.loc[10, 'phash'], 16) ^ 0b101:016x}"  # near copy (2 bits)
    out = assign_splits(df, Splits())
    assert out.loc[50, "dropped"] == "exact duplicate" and out.loc[50, "split"] == ""
    assert out.loc[95, "dropped"].startswith("near duplicate")
    assert leaks(out) == []
    forced = out.copy()
    forced.loc[50, ["split", "dropped"]] = ["test", ""]
    forced.loc[5, "split"] = "train"
    assert any("identical" in p for p in leaks(forced))


@needs_taleqani
def test_taleqani_manifest_is_leak_free(tmp_path):
    df = build_manifest(TALEQANI, tmp_path / "manifest.csv")
    assert leaks(df) == []
    again = pd.read_csv(tmp_path / "manifest.csv", keep_default_na=False, dtype={"phash": str})
    assert again.split.tolist() == df.split.tolist()
    used = df[df.split != ""]
    assert set(used.split) == {"train", "val", "test"}
    assert set(used.class_dir) == {"Benign", "Early", "Pre", "Pro"}
    # Pro holds byte-identical pairs: only one copy of each survives
    assert not used.duplicated("sha256").any()
    assert (df.dropped == "exact duplicate").sum() >= 30
