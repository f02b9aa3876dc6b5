"""End-to-end speed of `leukoscan run` (decode to written outputs) and of the raw models, same images.

    python bench/speed.py [--device auto] [--repeats 3] [--fields 48] [--backends pytorch onnx openvino openvino-int8]

Sets: N 224x224 fields (every 40th Taleqani field when present or the first N of --fields-from, else
synthetic smears), 16 640x480 fields (TXL-PBC test fields of one microscope, 575x575, centre-cropped to
4:3 and resized; else synthetic) and one 2592x1944 photograph (the bundled Ep.jpg resized). Each set: one
warm-up run, then `--repeats` timed runs of the whole slide screening into a fresh folder (median and
spread), per-stage milliseconds (decode, detect, crop, classify, write per field; scale search and
aggregation per slide), peak RSS, and the raw Ultralytics `model.predict` time of both models on the same
inputs, timed before the first run and after each. Overhead = median over repeats of end-to-end / the
mean of the raw timings just before and just after that run; also without the slide's one-off scale
search (which a slide of more fields makes smaller, and `--cell-size` nil). Then, per backend, the
224x224 set screened by `leukoscan run` in a fresh process (imports, model loading and first passes
included: what one slide costs from the command line), against a plain script of Ultralytics calls on the
same weights and fields in a fresh process (``bench/plain_script.py``; each ``--cold-repeats`` times,
interleaved: the owner's measure of speed). Writes bench/results/speed.{json,md}
(speed_cuda.* on a GPU; --name for another name). The models are those of ``leukoscan.config.WEIGHTS_DIR``:
``LEUKOSCAN_WEIGHTS=DIR python bench/speed.py --name …`` times the same code with other models (or other cards:
a before/after of how a model's probabilities are made).
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench.results_io import save  # noqa: E402
from leukoscan import runtime  # noqa: E402
from leukoscan.config import DATA_ROOT, REPO_ROOT, WEIGHTS_DIR  # noqa: E402
from leukoscan.images import load_rgb  # noqa: E402
from leukoscan.models import Models  # noqa: E402
from leukoscan.slide import Options, Slide, screen_slide  # noqa: E402


def make_sets(root: Path, n_fields: int, fields_from: Path | None = None) -> dict[str, Path]:
    fields = root / "fields_224"
    fields.mkdir()
    if fields_from:
        test = sorted(fields_from.rglob("*.jpg"))[:n_fields]
    else:
        test = sorted((DATA_ROOT / "all-taleqani" / "Original").glob("*/*.jpg"))[::40][:n_fields]
    if len(test) >= n_fields:
        for i, p in enumerate(test):
            (fields / f"{i:03d}.jpg").write_bytes(p.read_bytes())
    else:
        from synth import smear

        for i in range(n_fields):
            cv2.imwrite(str(fields / f"{i:03d}.jpg"), smear(seed=i)[0][..., ::-1])
    vga = root / "fields_640x480"
    vga.mkdir()
    square = [
        p for p in sorted((DATA_ROOT / "txl-pbc" / "images" / "test").glob("*.jpg")) if Image.open(p).size == (575, 575)
    ]
    for i in range(16):
        if len(square) >= 16:  # one TXL-PBC microscope: 4:3 centre crop, resized as a 640x480 camera would
            rgb = load_rgb(square[i])[72:503]
        else:
            from synth import smear

            rgb = smear((480, 640), rbc_px=40, wbc_px=68, seed=100 + i)[0]
        cv2.imwrite(str(vga / f"{i:03d}.jpg"), cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_AREA)[..., ::-1])
    big = load_rgb(REPO_ROOT / "datasets" / "samples" / "Ep.jpg")
    photo = root / "photo_2592x1944"
    photo.mkdir()
    cv2.imwrite(str(photo / "Ep_2592x1944.jpg"), cv2.resize(big, (2592, 1944))[..., ::-1])
    return {"224x224 fields": fields, "640x480 fields": vga, "2592x1944 photograph": photo}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def raw_model_seconds(models: Models, images: list[np.ndarray], batch: int, cell_px: float) -> float:
    """Ultralytics predict alone, on the inputs the pipeline gives the models (fields scaled to the
    slide's cell size, cell crops, the blasts' subtype crops)."""
    det, clf = models.detector, models.classifier
    scaled = [bgr for _, bgr in det._model_inputs(images, cell_px)]  # the detector's internals, timed alone
    dets = det.detect(images, cell_px)
    crops = np.concatenate([clf.crops(rgb, d, cell_px) for rgb, d in zip(images, dets)])
    calls = np.split(clf.probs(crops).argmax(1), np.cumsum([len(d) for d in dets])[:-1])
    blast_crops = [models.subtype.crops(rgb, d[c == 0]) for rgb, d, c in zip(images, dets, calls)]
    blast_crops = np.concatenate(blast_crops) if blast_crops else np.zeros((0, 64, 64, 3), np.uint8)
    t = time.perf_counter()
    for i in range(0, len(scaled), batch):
        chunk = scaled[i : i + batch]
        sizes = {max(c.shape[:2]) for c in chunk}
        if max(sizes) <= 1.5 * det.settings.tile:
            det.model.predict(
                chunk, imgsz=max(int(np.ceil(s / 32) * 32) for s in sizes), device=det.device, verbose=False
            )
        else:
            det._tiled(chunk[0])
    if len(crops):
        clf.raw_probs(crops)
    if len(blast_crops):
        models.subtype.raw_probs(blast_crops)
    return time.perf_counter() - t


def fresh_process_seconds(cmd: list[str]) -> float:
    """Wall time of ``cmd`` in a fresh process (start-up included); an error when it fails."""
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--fields", type=int, default=48)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument(
        "--fields-from",
        type=Path,
        help="take the 224x224 fields from this folder (sorted, first --fields) "
        "instead of every 40th Taleqani field; for a machine without ../shared",
    )
    ap.add_argument("--cold-repeats", type=int, default=3, help="fresh-process runs of each (median)")
    ap.add_argument("--name", help="results file name (default speed, or speed_cuda on a GPU)")
    ap.add_argument(
        "--backends",
        nargs="+",
        default=["pytorch"],
        help="pytorch, onnx, openvino, openvino-int8 (the exported ones after `leukoscan export --format …`)",
    )
    args = ap.parse_args()
    w = WEIGHTS_DIR  # LEUKOSCAN_WEIGHTS: another folder of models (the fresh process below reads it too)
    res = {
        "machine": {
            "cpu": cpu_name(),
            "torch_threads": torch.get_num_threads(),
            "device": args.device,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "sets": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        sets = make_sets(Path(tmp), args.fields, args.fields_from)
        for backend, (name, folder) in [(b, s) for b in args.backends for s in sets.items()]:
            models = Models.load(w / "detector.pt", w / "classifier.pt", w / "subtype.pt", args.device, backend)
            res["machine"]["device"] = models.detector.device
            name = f"{name} [{backend}]"
            slide = Slide.from_path(folder)
            opts = Options(batch=args.batch, force=True)
            v = screen_slide(models, slide, Path(tmp) / f"{backend}-{folder.name}-warm", opts)  # warm-up
            images = [load_rgb(p) for p in slide.images]
            cell_px = next(iter(v.scale.by_field_size.values()))
            # the raw models are timed before the first run and after every run, and each run is compared
            # with the mean of the raw timings on either side of it: two timings seconds apart, and a
            # steady drift cancels (this machine's speed drifts by up to +-30 % over minutes)
            walls, stages, raw = [], [], [raw_model_seconds(models, images, args.batch, cell_px)]
            for r in range(args.repeats):
                t = time.perf_counter()
                v = screen_slide(models, slide, Path(tmp) / f"{backend}-{folder.name}-run{r}", opts)
                walls.append(time.perf_counter() - t)
                stages.append(v.seconds)
                raw.append(raw_model_seconds(models, images, args.batch, cell_px))
            around = [(a + b) / 2 for a, b in zip(raw, raw[1:])]  # raw time around each run
            n = len(slide.images)
            med = statistics.median(walls)
            search = [s["scale_search"] for s in stages]
            res["sets"][name] = {
                "images": n,
                "wall_s_median": round(med, 3),
                "wall_s_min": round(min(walls), 3),
                "wall_s_max": round(max(walls), 3),
                "images_per_s": round(n / med, 2),
                "ms_per_image": round(1000 * med / n, 1),
                "stage_ms_per_image": {
                    k.replace("_per_image", ""): round(1000 * statistics.median(s[k] for s in stages), 1)
                    for k in stages[0]
                    if k.endswith("_per_image")
                },
                "slide_stage_s": {
                    k: round(statistics.median(s[k] for s in stages), 3) for k in ("scale_search", "aggregate")
                },
                "raw_models_s_median": round(statistics.median(raw), 3),
                # median over repeats of (pipeline / raw models timed around it)
                "overhead_ratio": round(statistics.median(w / r for w, r in zip(walls, around)), 2),
                # the slide's one-off scale search (a few detector passes on 2 fields) left out: the per-field cost
                "overhead_ratio_without_scale_search": round(
                    statistics.median((w - s) / r for w, s, r in zip(walls, search, around)), 2
                ),
            }
        # one slide from the command line, in a fresh process: start-up included; against a plain script of
        # Ultralytics calls on the same weights and fields, also in a fresh process, the runs interleaved
        fields = sets["224x224 fields"]
        plain = [sys.executable, str(REPO_ROOT / "bench" / "plain_script.py"), str(fields), "--weights", str(w)]
        plain += ["--device", args.device]
        cold: dict[str, list[float]] = {"plain": [], **{b: [] for b in args.backends}}
        for r in range(args.cold_repeats):
            cold["plain"].append(fresh_process_seconds([*plain, "--out", str(Path(tmp) / f"plain-{r}.csv")]))
            for backend in args.backends:
                out = Path(tmp) / f"cold-{backend}-{r}"
                run = [str(REPO_ROOT / "pipeline.py"), "run", str(fields), "--out", str(out), "--backend", backend]
                cold[backend].append(fresh_process_seconds([sys.executable, *run, "--device", args.device]))
        res["plain_script_s"] = round(statistics.median(cold.pop("plain")), 2)
        for backend, walls in cold.items():
            wall = statistics.median(walls)
            warm = res["sets"][f"224x224 fields [{backend}]"]["wall_s_median"]
            res.setdefault("fresh_process", {})[backend] = {
                "wall_s": round(wall, 2),
                "vs_plain_script": round(wall / res["plain_script_s"], 2),
                "warm_wall_s": warm,
            }
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    suffix = "" if res["machine"]["device"] == "cpu" else "_cuda"
    lines = [
        f"Device `{res['machine']['device']}` ({res['machine']['gpu'] or res['machine']['cpu']}), "
        f"{res['machine']['torch_threads']} torch threads, peak RSS {res['peak_rss_mb']} MB.",
        "",
        "| set | images | end-to-end images/s | ms/image (min–max run) | decode / detect / quality / crop / classify / "
        "write ms per image | scale search / aggregate s per slide | raw models s | overhead | "
        "overhead without the scale search |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in res["sets"].items():
        st, sl = s["stage_ms_per_image"], s["slide_stage_s"]
        lines.append(
            f"| {name} | {s['images']} | {s['images_per_s']} | {s['ms_per_image']} "
            f"({1000 * s['wall_s_min'] / s['images']:.0f}–{1000 * s['wall_s_max'] / s['images']:.0f}) | "
            + " / ".join(str(st.get(k, 0)) for k in ("decode", "detect", "quality", "crop", "classify", "write"))
            + f" | {sl['scale_search']} / {sl['aggregate']} | {s['raw_models_s_median']} | {s['overhead_ratio']}x"
            f" | {s['overhead_ratio_without_scale_search']}x |"
        )
    if res.get("fresh_process"):
        lines += [
            "",
            f"`leukoscan run` on the {args.fields} 224x224 fields in a fresh process (one slide from the command "
            "line), against a plain script of Ultralytics calls on the same weights and fields in a fresh process "
            f"(`bench/plain_script.py`: {res['plain_script_s']} s); medians of {args.cold_repeats} runs each, "
            "interleaved:",
            "",
            "| backend | wall s | vs the plain script | the same slide in a warm process s | "
            "start-up and first passes s |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {b} | {f['wall_s']} | {f['vs_plain_script']}x | {f['warm_wall_s']} | "
            f"{f['wall_s'] - f['warm_wall_s']:.1f} |"
            for b, f in res["fresh_process"].items()
        ]
    save(args.name or f"speed{suffix}", res, "\n".join(lines))


if __name__ == "__main__":
    main()
