"""Leak-free, deterministic train/val/test split of the Taleqani set.

No patient ids exist and neighbouring file numbers are usually the same patient, so each class is cut
into contiguous file-number blocks (never a random split); exact and perceptual-hash near duplicates are
removed *before* splitting, and the training images next to a val/test block are dropped as a guard band.
The result is written to a manifest CSV that every later metric names.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from leukoscan.cells import CLASSES, TALEQANI_CLASS
from leukoscan.config import SETTINGS, Splits

MANIFEST_COLUMNS = ["file", "class_dir", "class_key", "number", "sha256", "phash", "block", "split", "dropped"]


def file_number(name: str) -> int:
    m = re.search(r"(\d+)\D*$", Path(name).stem)
    if not m:
        raise ValueError(f"no file number in {name!r}")
    return int(m.group(1))


def hash_images(root: Path, progress=None) -> pd.DataFrame:
    """One row per ``Original/<class>/*.jpg`` with its sha256 and 64-bit perceptual hash."""
    rows = []
    files = sorted((root / "Original").glob("*/*.jpg"))
    if not files:
        raise ValueError(f"no images in {root / 'Original'} (<class>/*.jpg)")
    for path in files if progress is None else progress(files, "hashing images"):
        data = path.read_bytes()
        try:
            with Image.open(path) as im:
                ph = str(imagehash.phash(im))
        except (OSError, SyntaxError, ValueError) as e:  # not an image, truncated: named, not a traceback
            raise ValueError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
        rows.append(
            {
                "file": f"{path.parent.name}/{path.name}",
                "class_dir": path.parent.name,
                "class_key": CLASSES[TALEQANI_CLASS[path.parent.name]],
                "number": file_number(path.name),
                "sha256": hashlib.sha256(data).hexdigest(),
                "phash": ph,
            }
        )
    return pd.DataFrame(rows).sort_values(["class_dir", "number"], ignore_index=True)


def phash_matrix(hashes: pd.Series) -> np.ndarray:
    """Pairwise Hamming distances of hex perceptual hashes (N x N)."""
    bits = np.array([[int(c) for c in f"{int(h, 16):064b}"] for h in hashes], dtype=np.uint8)
    return (bits[:, None, :] != bits[None, :, :]).sum(axis=2)


def mark_duplicates(df: pd.DataFrame, near_bits: int) -> pd.Series:
    """Reason each image is dropped as a duplicate ('' if kept); the lowest-numbered copy is kept."""
    reason = pd.Series("", index=df.index)
    exact = df.duplicated("sha256", keep="first")
    reason[exact] = "exact duplicate"
    kept = df.index[~exact]
    dist = phash_matrix(df.loc[kept, "phash"])
    seen_drop = set()
    for i in range(len(kept)):
        if kept[i] in seen_drop:
            continue
        for j in np.nonzero(dist[i, i + 1 :] <= near_bits)[0] + i + 1:
            if kept[j] not in seen_drop:
                seen_drop.add(kept[j])
                reason[kept[j]] = f"near duplicate of {df.loc[kept[i], 'file']}"
    return reason


def assign_splits(df: pd.DataFrame, cfg: Splits = SETTINGS.splits) -> pd.DataFrame:
    """Add block, split and dropped columns (deterministic: depends only on file numbers and hashes)."""
    df = df.copy()
    df["dropped"] = mark_duplicates(df, cfg.near_dup_bits)
    df["block"] = -1
    df["split"] = ""
    for _, group in df[df["dropped"] == ""].groupby("class_dir"):
        order = group.sort_values("number").index
        blocks = np.minimum(np.arange(len(order)) * cfg.blocks // len(order), cfg.blocks - 1)
        df.loc[order, "block"] = blocks
        split = np.where(
            np.isin(blocks, cfg.val_blocks), "val", np.where(np.isin(blocks, cfg.test_blocks), "test", "train")
        )
        # guard band: drop the training images next to a border with val/test (likely the same patient)
        for k in np.nonzero(split[1:] != split[:-1])[0]:
            lo, hi = (max(0, k + 1 - cfg.guard), k + 1) if split[k] == "train" else (k + 1, k + 1 + cfg.guard)
            df.loc[order[lo:hi], "dropped"] = "guard band at a split border"
        df.loc[order, "split"] = split
    df.loc[df["dropped"] != "", "split"] = ""
    return df[MANIFEST_COLUMNS]


def leaks(df: pd.DataFrame, near_bits: int = SETTINGS.splits.near_dup_bits) -> list[str]:
    """Every exact or near duplicate that sits in two different splits (empty list = leak-free)."""
    used = df[df["split"] != ""].reset_index(drop=True)
    problems = []
    for sha, group in used.groupby("sha256"):
        if group["split"].nunique() > 1:
            problems.append(f"identical image in {sorted(group['split'].unique())}: {list(group['file'])}")
    dist = phash_matrix(used["phash"])
    split = used["split"].to_numpy()
    i, j = np.nonzero((dist <= near_bits) & (split[:, None] != split[None, :]))
    for a, b in zip(i, j):
        if a < b:
            problems.append(f"near duplicates across splits: {used.file[a]} ({split[a]}) ~ {used.file[b]} ({split[b]})")
    return problems


def build_manifest(root: Path, out_csv: Path, progress=None, cfg: Splits = SETTINGS.splits) -> pd.DataFrame:
    df = assign_splits(hash_images(root, progress), cfg)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out_csv, index=False)
    return df


def manifest_hash(csv: Path) -> str:
    return hashlib.sha256(Path(csv).read_bytes()).hexdigest()
