"""The README's walk-through "Retraining the detector on your own lab's photographs", rerun as its commands run it.

    python bench/retrain_walkthrough.py [--work DIR]   # writes bench/results/retrain_walkthrough.{json,md}
                                                        # ~6-10 min on 2 CPU cores (fine-tuning ~4 min of it)

Each step is the real CLI in a subprocess, from the repository's root, timed (wall clock, time.perf_counter),
on the seven bundled photographs (datasets/samples), with the README's arguments; only the output folders move
into ``--work`` (default runs/retrain-walkthrough, deleted and recreated on every run), and the gate is given
``--current`` a copy of weights/detector.pt in ``--work/current``, so that neither weights/detector.pt nor
weights/registry.json is ever written (a promotion replaces the copy; the registry lands beside it):

1. ``leukoscan detect prelabel datasets/samples --out WORK/labset``: detector boxes + segmentation proposals
   (the command's own counts, labset/prelabel.json, and its per-photograph lines);
2. ``leukoscan detect import-labels WORK/labset datasets/samples/cells.coco.json``: the pre-labels (copied aside
   to WORK/prelabels first) against the reviewed boxes, per photograph, matched one to one at IoU >= 0.5
   (greedy, highest IoU first: ``leukoscan.datasets.segment.agreement``, as bench/lab_photos.py; a Hungarian
   matching is computed too, as a check): pre-label boxes no reviewed box matches are "deleted", reviewed boxes
   no pre-label matches are "added";
3. ``leukoscan detect finetune WORK/labset --from weights/detector.pt --out WORK/finetune`` (replay: the default
   data/detect/images/train, built by ``leukoscan data detect``; the run stops at once when it holds none);
4. ``leukoscan detect promote WORK/labset WORK/finetune/candidate.pt --current WORK/current/detector.pt``: the
   gate's JSON (printed on stderr) and its "promoted:" / "rejected:" line.

Every command's output is kept in WORK/logs/<step>.log. Timings depend on the machine's load: the load average
before and after each step is recorded with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.results_io import rel, save  # noqa: E402
from leukoscan import runtime  # noqa: E402
from leukoscan.cards import sha256  # noqa: E402
from leukoscan.config import BUILD_DIR, DETECTOR_WEIGHTS, REPO_ROOT  # noqa: E402

SAMPLES = Path("datasets/samples")  # relative to the repository's root, as the README writes it
REVIEWED = SAMPLES / "cells.coco.json"
MARKER = ".retrain-walkthrough"
REPLAY = BUILD_DIR / "detect" / "images" / "train"  # finetune's default --replay
REGRESSION = BUILD_DIR / "detect" / "data.yaml"  # promote's default --regression
IOU = 0.5
PHOTO_LINE = re.compile(r"^(?P<name>.+): (?P<det>\d+) detected \+ (?P<seg>\d+) proposed by segmentation$")


def cli() -> list[str]:
    """The ``leukoscan`` entry point of this Python environment (``python -m leukoscan`` where it has none)."""
    exe = Path(sys.executable).parent / "leukoscan"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "leukoscan"]


def run_step(name: str, args: list[str], logs: Path) -> dict:
    """Run ``leukoscan <args>`` from the repository's root; its output in ``logs/<name>.log``."""
    shown = "leukoscan " + " ".join(f"'{a}'" if " " in a else a for a in args)
    print(f"[{name}] {shown}", flush=True)
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run([*cli(), *args], cwd=REPO_ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    (logs / f"{name}.log").write_text(
        f"$ {shown}\n# exit code {proc.returncode}, {seconds:.1f} s\n"
        f"--- stdout ---\n{proc.stdout}--- stderr ---\n{proc.stderr}"
    )
    print(f"[{name}] exit code {proc.returncode}, {seconds:.1f} s", flush=True)
    return {
        "command": shown,
        "exit_code": proc.returncode,
        "seconds": round(seconds, 1),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "stderr": proc.stderr,
        "stdout": proc.stdout,
    }


def json_in(text: str) -> dict:
    """The first JSON object a command printed (``show_json``: indented, starting on a line of its own)."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() == "{":
            obj, _ = json.JSONDecoder().raw_decode("".join(lines[i:]))
            return obj
    raise ValueError("no JSON object in the command's output")


def failed(step: dict) -> str:
    tail = "\n".join((step["stderr"] or step["stdout"]).strip().splitlines()[-5:])
    return f"exit code {step['exit_code']}: {tail}"


def step1_counts(step: dict, labset: Path) -> dict:
    counts = json.loads((labset / "prelabel.json").read_text())
    per_photo = {
        m["name"]: {"detector": int(m["det"]), "segmentation": int(m["seg"])}
        for line in step["stderr"].splitlines()
        if (m := PHOTO_LINE.match(line.strip()))
    }
    labels = (labset / "labels").glob("*.txt")
    label_boxes = sum(len([x for x in f.read_text().splitlines() if x.strip()]) for f in labels)
    return {
        "printed": json_in(step["stderr"]),
        "images": counts["images"],
        "detector_boxes": counts["detector_boxes"],
        "segmentation_boxes": counts["segmentation_boxes"],
        "boxes_in_labels": label_boxes,  # labset/labels/*.txt, one line a box: detector + segmentation
        "per_photo": per_photo,
        "train_photos": len((labset / "train.txt").read_text().splitlines()),  # a name may hold a space
        "held_out_photos": [Path(p).name for p in (labset / "val.txt").read_text().splitlines()],
    }


def hungarian_matches(iou: np.ndarray, threshold: float) -> int:
    """Pairs of a one-to-one matching at ``iou >= threshold`` that maximises the summed IoU (a check on greedy)."""
    from scipy.optimize import linear_sum_assignment

    if iou.size == 0:
        return 0
    weight = np.where(iou >= threshold, iou, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    return int((weight[rows, cols] >= threshold).sum())


def step2_counts(labset: Path, prelabels_coco: Path) -> dict:
    """Pre-labels against the reviewed boxes, per photograph, matched one to one at IoU >= ``IOU``."""
    import supervision as sv

    from leukoscan.datasets.segment import agreement
    from leukoscan.detect.labels import read_coco

    files = {p.name: p for p in sorted((labset / "images").iterdir())}
    pre, problems = read_coco(prelabels_coco, files)
    reviewed, more = read_coco(REPO_ROOT / REVIEWED, files)  # the reviewed .jpg names map to the label set's .png
    if problems or more:
        raise SystemExit("cannot read the boxes: " + "; ".join(problems + more))
    rows = {}
    for name in files:
        p, r = pre.get(name), reviewed.get(name)
        n_pre, n_rev = len(p) if p is not None else 0, len(r) if r is not None else 0
        tp = agreement(p, r, IOU)[0] if n_pre and n_rev else 0
        hung = hungarian_matches(sv.box_iou_batch(p.xyxy, r.xyxy), IOU) if n_pre and n_rev else 0
        rows[name] = {
            "prelabels": n_pre,
            "reviewed": n_rev,
            "matched": tp,
            "deleted": n_pre - tp,
            "added": n_rev - tp,
            "matched_hungarian": hung,
        }
    total = {k: sum(r[k] for r in rows.values()) for k in next(iter(rows.values()))}
    return {"iou": IOU, "matching": "one to one, greedy: highest IoU first", "per_photo": rows, "all": total}


def step4_gate(step: dict) -> dict:
    result = json_in(step["stderr"])
    decision = next(
        (line.strip() for line in step["stderr"].splitlines() if re.match(r"^(promoted|rejected):", line.strip())),
        None,
    )
    table = {
        model: {
            "regression_mAP50": result["scores"][model]["regression"]["mAP50"],
            "lab_mAP50": result["scores"][model]["lab"]["mAP50"],
            "lab_recall_at_conf": result["scores"][model]["lab"]["recall_at_conf"],
            "lab_precision_at_conf": result["scores"][model]["lab"].get("precision_at_conf"),
            "operating_conf": result["scores"][model]["lab"].get("operating_conf"),
        }
        for model in ("current", "candidate")
    }
    return {
        "printed": result,
        "decision_line": decision,
        "promoted": result["promoted"],
        "reason": result["reason"],
        "table": table,
    }


def markdown(res: dict) -> str:
    s = res["steps"]
    lines = [
        "# The README's retraining walk-through, rerun (`python bench/retrain_walkthrough.py`)",
        "",
        f"{res['date']}, commit {res['commit']}, {res['cpus']} CPU cores ({res['machine']}); "
        f"weights/detector.pt {res['detector_sha256'][:12]}. Times are wall clock of each command, model loading "
        "included; the 1-minute load average before/after each is in the JSON (the machine may have been shared).",
        "",
        "| step | command | time |",
        "|---|---|---|",
    ]
    for key in ("prelabel", "import_labels", "finetune", "promote"):
        if key in s:
            lines.append(f"| {key} | `{s[key]['command']}` | {s[key]['seconds']:.0f} s |")
    if res.get("error"):
        lines += ["", f"**Stopped:** {res['error']}"]
    if c := res.get("step1"):
        lines += [
            "",
            f"**Step 1** (pre-label): {s['prelabel']['seconds']:.0f} s; {c['detector_boxes']} detector boxes + "
            f"{c['segmentation_boxes']} segmentation proposals on {c['images']} photographs "
            f"({c['boxes_in_labels']} boxes in labset/labels); {c['train_photos']} photographs for training, "
            f"held out for the gate: {', '.join(c['held_out_photos'])}.",
        ]
    if c := res.get("step2"):
        a = c["all"]
        lines += [
            "",
            f"**Step 2** (import-labels, {s['import_labels']['seconds']:.0f} s): today's pre-labels against the "
            f"reviewed boxes of `{REVIEWED}`, matched at IoU >= {c['iou']} ({c['matching']}): "
            f"{a['deleted']} pre-label boxes with no reviewed match (deleted), {a['added']} reviewed boxes with no "
            f"pre-label match (added); {a['reviewed']} reviewed cells in all "
            f"(import-labels: {res['step2_import']['boxes']} boxes). The README's by-eye figures were counted on "
            "an earlier version's pre-labels (at the training scale); these are today's pre-labels against the same "
            "reviewed boxes; a box the reviewer redrew so that it overlaps its pre-label at IoU < 0.5 counts as one "
            "deleted and one added. A Hungarian matching (maximum summed IoU) matches "
            f"{a['matched_hungarian']} pairs, greedy {a['matched']}.",
            "",
            "| photograph | pre-labels (detector + segmentation) | reviewed | matched | deleted | added |",
            "|---|---|---|---|---|---|",
        ]
        per1 = res.get("step1", {}).get("per_photo", {})
        for name, r in c["per_photo"].items():
            src = next((v for k, v in per1.items() if Path(k).stem == Path(name).stem), None)
            split = f" ({src['detector']} + {src['segmentation']})" if src else ""
            cols = (r["reviewed"], r["matched"], r["deleted"], r["added"])
            lines.append(f"| {name} | {r['prelabels']}{split} | " + " | ".join(map(str, cols)) + " |")
        cols = (a["prelabels"], a["reviewed"], a["matched"], a["deleted"], a["added"])
        lines.append("| **all** | " + " | ".join(map(str, cols)) + " |")
    if c := res.get("step3"):
        lines += [
            "",
            f"**Step 3** (fine-tune): {s['finetune']['seconds']:.0f} s ({c['train_seconds']:.0f} s of training: "
            f"{c['epochs']} epochs on {c['lab_train_tiles']} lab tiles of {c['lab_train_photos']} photographs + "
            f"{c['replay_images']} replayed images; validated on {c['lab_val_tiles']} held-out tiles).",
        ]
    if c := res.get("step4"):
        t = c["table"]
        conf = t["current"]["operating_conf"]
        lines += [
            "",
            f"**Step 4** (promote, {s['promote']['seconds']:.0f} s): the gate "
            f"**{'promoted' if c['promoted'] else 'rejected'}** the candidate (`{c['decision_line']}`).",
            "",
            f"| | regression mAP50 | lab held-out mAP50 | lab held-out recall at conf {conf} |",
            "|---|---|---|---|",
            *(
                f"| {label} | {t[m]['regression_mAP50']:.3f} | {t[m]['lab_mAP50']:.3f} | "
                f"{t[m]['lab_recall_at_conf']:.3f} |"
                for m, label in (("current", "current `weights/detector.pt` (a copy)"), ("candidate", "candidate"))
            ),
        ]
    return "\n".join(lines)


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--work",
        type=Path,
        default=Path("runs/retrain-walkthrough"),
        help="work folder (relative to the repository's root; deleted and recreated)",
    )
    ap.add_argument("--name", default="retrain_walkthrough", help="results file name")
    args = ap.parse_args()
    work = args.work if args.work.is_absolute() else REPO_ROOT / args.work
    if not any(REPLAY.glob("*.jpg")) or not REGRESSION.is_file():
        raise SystemExit(
            f"no replay images in {REPLAY} or no regression set {REGRESSION}: run `leukoscan data detect` first "
            "(step 3 replays its training images, step 4 scores its test split)"
        )
    marker = work / MARKER  # only a folder this script made is ever deleted
    if work.exists() and not marker.is_file():
        raise SystemExit(f"--work {work} exists and was not made by this script: give a new folder")
    shutil.rmtree(work, ignore_errors=True)
    logs, current = work / "logs", work / "current" / "detector.pt"
    logs.mkdir(parents=True)
    marker.write_text("made by bench/retrain_walkthrough.py: deleted and made again by each run\n")
    current.parent.mkdir()
    shutil.copyfile(DETECTOR_WEIGHTS, current)
    if DETECTOR_WEIGHTS.with_suffix(".json").is_file():
        shutil.copyfile(DETECTOR_WEIGHTS.with_suffix(".json"), current.with_suffix(".json"))
    shipped_sha, registry = sha256(DETECTOR_WEIGHTS), DETECTOR_WEIGHTS.parent / "registry.json"
    registry_before = registry.read_bytes() if registry.is_file() else None
    labset, finetune_out = work / "labset", work / "finetune"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    res: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit.stdout.strip() + (" (with uncommitted changes)" if dirty else ""),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "work": rel(work),
        "detector_sha256": shipped_sha,
        "steps": {},
    }
    steps = res["steps"]

    def stop(message: str) -> None:
        res["error"] = message
        finish(res, args.name)
        raise SystemExit(message)

    # 1. pre-label
    steps["prelabel"] = run_step("prelabel", ["detect", "prelabel", str(SAMPLES), "--out", rel(labset)], logs)
    if steps["prelabel"]["exit_code"]:
        stop(f"step 1 failed: {failed(steps['prelabel'])}")
    res["step1"] = step1_counts(steps["prelabel"], labset)
    aside = work / "prelabels"
    shutil.copytree(labset / "labels", aside / "labels")
    shutil.copyfile(labset / "annotations.coco.json", aside / "annotations.coco.json")

    # 2. import the reviewed boxes
    steps["import_labels"] = run_step("import_labels", ["detect", "import-labels", rel(labset), str(REVIEWED)], logs)
    if steps["import_labels"]["exit_code"]:
        stop(f"step 2 failed: {failed(steps['import_labels'])}")
    res["step2_import"] = json_in(steps["import_labels"]["stderr"])
    res["step2"] = step2_counts(labset, aside / "annotations.coco.json")

    # 3. fine-tune
    steps["finetune"] = run_step(
        "finetune",
        ["detect", "finetune", rel(labset), "--from", rel(DETECTOR_WEIGHTS), "--out", rel(finetune_out)],
        logs,
    )
    if steps["finetune"]["exit_code"]:
        stop(f"step 3 failed: {failed(steps['finetune'])}")
    card = json.loads((finetune_out / "candidate.json").read_text())
    res["step3"] = {
        "train_seconds": card["train_seconds"],
        "epochs": card["recipe"]["epochs"],
        "lab_train_photos": card["lab_train_photos"],
        "lab_train_tiles": card["lab_train_tiles"],
        "lab_val_tiles": len((labset / "tiles" / "val.txt").read_text().split()),
        "replay_images": card["replay_images"],
        "warnings": [line.strip() for line in steps["finetune"]["stderr"].splitlines() if "warning" in line.lower()],
        "candidate_sha256": card["sha256"],
    }

    # 4. promotion gate, against the copy
    steps["promote"] = run_step(
        "promote",
        ["detect", "promote", rel(labset), rel(finetune_out / "candidate.pt"), "--current", rel(current)],
        logs,
    )
    if steps["promote"]["exit_code"]:
        stop(f"step 4 failed: {failed(steps['promote'])}")
    res["step4"] = step4_gate(steps["promote"])
    res["step4"]["registry"] = [
        {k: e.get(k) for k in ("file", "status", "sha256")}
        for e in json.loads((current.parent / "registry.json").read_text())
    ]

    registry_after = registry.read_bytes() if registry.is_file() else None
    if sha256(DETECTOR_WEIGHTS) != shipped_sha or registry_after != registry_before:
        stop("weights/detector.pt or weights/registry.json changed during the run (not by this script's commands?)")
    finish(res, args.name)


def finish(res: dict, name: str) -> None:
    """Save the results; the commands' full output stays in the work folder's logs, not in the JSON."""
    for step in res["steps"].values():
        step.pop("stdout", None)
        step.pop("stderr", None)
    res.get("step1", {}).pop("printed", None)  # the same counts as labset/prelabel.json's, kept above
    save(name, res, markdown(res))


if __name__ == "__main__":
    main()
