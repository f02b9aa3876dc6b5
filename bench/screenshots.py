"""The README's pictures of the review page, from a run on bundled photographs, in headless Chromium.

python bench/screenshots.py      # writes bench/results/report_{top,gallery,dense_overlay}.png
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES = ROOT / "datasets" / "samples"
# shown alone, the part of the page each picture is about
HIDE = {
    "top": ".slide h3,.slide .no-print,.controls,.gallery,.overlays,table.images,table.cells",
    "gallery": "h1,.note,h2,#verdicts,.key,.facts,.differential,.slide h3,.overlays,table.images,table.cells",
}


def screenshot(page: Path, png: Path, width: int, height: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            "--virtual-time-budget=3000",
            f"--screenshot={png}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )


def main() -> None:
    RESULTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "pipeline.py"),
                "run",
                str(SAMPLES / "EarlyPreb.jpeg"),
                str(SAMPLES / "38e21132-cb80-4a2c-a71b-b6f04ff15017.jpg"),
                "--out",
                str(out),
            ],
            check=True,
            capture_output=True,
        )
        page = (out / "report.html").read_text()
        for name, hide in HIDE.items():
            view = out / f"{name}.html"
            view.write_text(page.replace("</style>", f"{hide}{{display:none!important}}</style>", 1))
            png = RESULTS / f"report_{name}.png"
            screenshot(view, png, 1100, 900 if name == "top" else 760)
            Image.open(png).convert("RGB").quantize(128).save(png, optimize=True)
        dense = Image.open(
            out / "38e21132-cb80-4a2c-a71b-b6f04ff15017" / "overlays" / "38e21132-cb80-4a2c-a71b-b6f04ff15017.jpg"
        )
        dense.thumbnail((900, 900))
        dense.convert("RGB").quantize(128).save(RESULTS / "report_dense_overlay.png", optimize=True)
    print("wrote", *sorted(p.name for p in RESULTS.glob("report_*.png")))


if __name__ == "__main__":
    main()
