"""`--engine local`, `--workers 2` and `--engine ray` on the same slides (fields/s on this machine), the
per-field cost of each stage, and on paper the slides per hour of N machines.

    python bench/ray.py [--slides 4] [--fields 24] [--repeats 2] [--machines 1 4 16 64] [--device cpu]

The slides are bench/workers.py's: `--fields` 224x224 Taleqani fields each (synthetic smears when the dataset
is absent). Every configuration runs the real CLI in a fresh process (Python, model loading and, for Ray, the
start of a local Ray and its actors included) into a fresh output folder, `--repeats` times, interleaved; the
median wall time is reported. The per-field stage costs are the verdicts' own (`seconds` in verdict.json: the
means over the slide's fields of the process that screened them, a Ray actor's for `--engine ray`; from each
configuration's fastest run). The
slides-per-hour figures are arithmetic on those measurements, not measured; the GPU ones use the H100
per-field stage costs of bench/results/speed_cuda.json (bench/speed.py on a GPU machine, another session).
Writes bench/results/ray.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.results_io import RESULTS, save  # noqa: E402
from bench.workers import make_slides  # noqa: E402
from leukoscan import runtime  # noqa: E402

CONFIGS = {"--engine local": [], "--workers 2": ["--workers", "2"], "--engine ray": ["--engine", "ray"]}
STAGES = ("decode", "detect", "quality", "crop", "classify", "write")


def verdict_seconds(out: Path, slides: list[Path]) -> dict[str, float]:
    """Per-field stage seconds (mean over the slides) and per-slide scale search and aggregation (median: the
    first slide of a process pays the models' first passes), from each slide's verdict.json."""
    seconds = [json.loads((out / s.name / "verdict.json").read_text())["seconds"] for s in slides]
    per_field = {k: statistics.mean(s.get(f"{k}_per_image", 0.0) for s in seconds) for k in STAGES}
    per_slide = {k: statistics.median(s.get(k, 0.0) for s in seconds) for k in ("scale_search", "aggregate")}
    return {**per_field, **per_slide}


def paper(res: dict, fields: int, machines: list[int]) -> tuple[dict, list[str]]:
    """Slides per hour of N machines from the measured per-field and per-slide costs (arithmetic, assuming the
    machines share only the filesystem, so N machines screen N times the fields; the driver aggregates each
    slide, serially, which bounds the whole)."""
    local = res["stages"]["--engine local"]
    cpu_field_s = sum(local[k] for k in STAGES)
    cpu_slide_s = fields * cpu_field_s + local["scale_search"]
    gpu = json.loads((RESULTS / "speed_cuda.json").read_text())["sets"]["224x224 fields [pytorch]"]
    gpu_ms = gpu["stage_ms_per_image"]
    gpu_field_s = gpu["ms_per_image"] / 1000  # one process doing every stage of its batches, as a Ray actor does
    gpu_slide_s = fields * gpu_field_s + gpu["slide_stage_s"]["scale_search"]
    models_ms = gpu_ms["detect"] + gpu_ms["classify"]
    host_ms = sum(v for k, v in gpu_ms.items() if k not in ("detect", "classify"))
    aggregate_s = res["stages"]["--engine ray"]["aggregate"]
    cap = 3600 / aggregate_s if aggregate_s else float("inf")  # one driver aggregates every slide in turn
    est = {
        "cpu_machine_s_per_field": round(cpu_field_s, 4),
        "cpu_machine_s_per_slide": round(cpu_slide_s, 2),
        "gpu_actor_fields_per_s": round(1 / gpu_field_s, 1),
        "gpu_models_ms_per_field": round(models_ms, 1),
        "gpu_host_ms_per_field": round(host_ms, 1),
        "gpu_bound_fields_per_s": round(1000 / models_ms, 1),
        "host_over_model_time": round(host_ms / models_ms, 1),
        "driver_aggregate_s_per_slide": aggregate_s,
        "driver_slides_per_hour_cap": _sig(cap) if aggregate_s else None,
        "slides_per_hour": {
            str(n): {
                "cpu_2core": _sig(min(n * 3600 / cpu_slide_s, cap)),
                "gpu_h100": _sig(min(n * 3600 / gpu_slide_s, cap)),
            }
            for n in machines
        },
    }
    rows = ["| machines | 2-core CPU machines: slides/h | one-H100 machines: slides/h |"]
    rows.append("|---|---|---|")
    rows += [f"| {n} | {v['cpu_2core']} | {v['gpu_h100']} |" for n, v in est["slides_per_hour"].items()]
    return est, rows


def _sig(x: float, digits: int = 2) -> int:
    """``x`` to ``digits`` significant digits (an estimate claims no more)."""
    return int(float(f"{x:.{digits - 1}e}"))


def main() -> None:
    runtime.setup()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slides", type=int, default=4)
    ap.add_argument("--fields", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--machines", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--device", default="cpu", help="auto on a GPU machine: the Ray configuration gets a GPU actor")
    args = ap.parse_args()
    res = {"cpu_count": os.cpu_count(), "slides": args.slides, "fields_per_slide": args.fields, "device": args.device}
    res.update(runs={}, stages={}, load_average_before=os.getloadavg()[0])
    with tempfile.TemporaryDirectory() as tmp:
        slides = make_slides(Path(tmp), args.slides, args.fields)
        for r in range(args.repeats):
            for name, extra in CONFIGS.items():  # interleaved, so drift in machine load hits every configuration alike
                out = Path(tmp) / f"out-{name.strip('-').replace(' ', '-')}-r{r}"
                cmd = [sys.executable, str(ROOT / "pipeline.py"), "run", *map(str, slides), "--out", str(out)]
                t = time.perf_counter()
                done = subprocess.run([*cmd, "--device", args.device, *extra], capture_output=True, text=True)
                if done.returncode:
                    sys.exit(f"{name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
                wall = round(time.perf_counter() - t, 2)
                if wall < min(res["runs"].get(name, [float("inf")])):  # the stage costs of the fastest run
                    res["stages"][name] = verdict_seconds(out, slides)
                res["runs"].setdefault(name, []).append(wall)
    res["load_average_after"] = os.getloadavg()[0]  # other work on the machine slows every configuration
    n = args.slides * args.fields
    rows = [
        "| configuration | wall s (median) | runs | fields/s | "
        + " / ".join(STAGES)
        + " ms per field | scale search / aggregate s per slide |",
        "|---|---|---|---|---|---|",
    ]
    for name, walls in res["runs"].items():
        med, st = statistics.median(walls), res["stages"][name]
        stages = " / ".join(f"{1000 * st[k]:.1f}" for k in STAGES)
        rows.append(
            f"| `{name}` | {med:.1f} | {walls} | {n / med:.1f} | {stages} | "
            f"{st['scale_search']:.3f} / {st['aggregate']:.3f} |"
        )
    res["paper"], paper_rows = paper(res, args.fields, args.machines)
    p = res["paper"]
    walls = {name: statistics.median(w) for name, w in res["runs"].items()}
    res["ray_extra_s_per_run"] = round(walls["--engine ray"] - walls["--engine local"], 1)
    save(
        "ray",
        res,
        f"{args.slides} slides x {args.fields} fields (224x224), backend pytorch, {os.cpu_count()} cores, "
        f"--device {args.device} (measured):\n\n"
        + "\n".join(rows)
        + f"\n\nWall time of `--engine ray` minus `--engine local`: {res['ray_extra_s_per_run']} s a run (a local "
        "Ray and two pools of actors, each loading the models). Load average before/after: "
        f"{res['load_average_before']:.1f} / {res['load_average_after']:.1f} on {os.cpu_count()} cores.\n\n"
        f"On paper ({args.fields}-field slides; arithmetic on the stage costs above and on bench/results/"
        "speed_cuda.json's H100 stage costs, not measured; steady state, the start-up paid once per run): a 2-core "
        f"machine screens a field in {1000 * p['cpu_machine_s_per_field']:.0f} ms and a slide in "
        f"{p['cpu_machine_s_per_slide']} s; one GPU actor ~{p['gpu_actor_fields_per_s']} fields/s (its models take "
        f"{p['gpu_models_ms_per_field']} ms a field, decode/crop/write {p['gpu_host_ms_per_field']} ms: a GPU fed "
        f"by separate decode/write workers could take ~{p['gpu_bound_fields_per_s']:.0f} fields/s, needing "
        f"~{p['host_over_model_time']}x the host time of its models); the driver aggregates a slide in "
        f"{p['driver_aggregate_s_per_slide']:.3f} s, so one driver aggregates at most "
        f"~{p['driver_slides_per_hour_cap']} slides/h, which caps every row below.\n\n" + "\n".join(paper_rows),
    )


if __name__ == "__main__":
    main()
