"""``report.html``: one self-contained page (relative links to the overlays) for review by eye."""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from leukoscan import DISCLAIMER, __version__, outputs
from leukoscan.overlay import HEX
from leukoscan.cells import CELL_TYPES, TYPE_LABELS
from leukoscan.slide import crop_field
from leukoscan.verdict import percent

COLOURS = {"suspected": "#b00020", "indeterminate": "#b26a00", "insufficient": "#555", "negative": "#1b7f3b"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
.note{background:#fff4e5;border-left:4px solid #b26a00;padding:.6em 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3;cursor:pointer}.badge{color:#fff;padding:2px 8px;border-radius:4px;font-weight:600}
.overlays img{max-width:460px;margin:4px;border:1px solid #ccc}.gallery img{width:96px;margin:2px}
.gallery figure{display:inline-block;margin:4px;font-size:11px;text-align:center}
.key span{display:inline-block;padding:1px 8px;margin-right:6px;color:#fff;border-radius:3px}
"""
SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function(th, col) {
  th.addEventListener('click', function() {
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.dataset.asc !== 'true'; th.dataset.asc = asc;
    rows.sort(function(a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var r = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return asc ? r : -r;
    });
    rows.forEach(function(r) { body.appendChild(r); });
  });
});
"""


def link(*parts: str) -> str:
    return "/".join(quote(p) for p in parts)


def badge(verdict: str) -> str:
    return f'<span class="badge" style="background:{COLOURS.get(verdict, "#555")}">{html.escape(verdict)}</span>'


def table(df: pd.DataFrame, sortable: bool = False, cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(f'{v:.3f}' if isinstance(v, float) else str(v))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return f'<table class="{"sortable " if sortable else ""}{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def slide_section(out: Path, slide_dir: str, verdict: dict) -> str:
    folder = out / slide_dir
    cells = pd.read_csv(folder / "cells.csv", keep_default_na=False)
    images = pd.read_csv(folder / "images.csv", keep_default_na=False)
    fields = {Path(o).stem for o in images.overlay if o}  # this run's fields (by output stem)
    overlays = "".join(  # this run's fields only (an output folder may hold overlays of fields since removed)
        f'<a href="{link(slide_dir, *overlay.split("/"))}"><img src="{link(slide_dir, *overlay.split("/"))}" '
        f'alt="{html.escape(image)}" title="{html.escape(image)}" loading="lazy"></a>'
        for image, overlay in zip(images.image, images.overlay) if overlay
    )
    gallery = "".join(
        f'<figure><img src="{link(slide_dir, "uncertain", p.name)}" alt="{html.escape(p.stem)}">'
        f"<figcaption>{html.escape(p.stem)}</figcaption></figure>"
        for p in sorted((folder / "uncertain").glob("*.jpg")) if crop_field(p) in fields
    ) or "<p>No uncertain cells.</p>"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in verdict.get("review_reasons", []))
    return f"""
<section id="{html.escape(slide_dir)}"><h2>{html.escape(verdict["slide"])} {badge(verdict["verdict"])}</h2>
<p><b>Why:</b> {html.escape(verdict.get("reason", ""))}</p>
<p>{verdict["n_cells"]} cells in {verdict["n_images"] - verdict["n_failed"]} of {verdict["n_images"]} images;
blast fraction {percent(verdict["blast_fraction"])} (95 % CI {percent(verdict["ci_low"])}–{percent(verdict["ci_high"])});
predominant subtype (experimental): {html.escape(verdict["predominant_subtype"] or "–")}.</p>
<p>Differential: {html.escape(", ".join(f"{t} {verdict.get('n_' + k, 0)}" for k, t in zip(CELL_TYPES, TYPE_LABELS)))}.</p>
{f"<p><b>Needs review:</b></p><ul>{reasons}</ul>" if reasons else ""}
<h3>Overlays</h3><div class="overlays">{overlays or "<p>No overlays.</p>"}</div>
<h3>Uncertain cells (for review)</h3><div class="gallery">{gallery}</div>
<h3>Images</h3>{table(images)}
<h3>Cells (click a column to sort)</h3>{table(cells, sortable=True, cls="cells")}
</section>"""


def write_report(out: Path, verdicts: list[tuple[str, dict]]) -> Path:
    """``verdicts``: (slide output folder name, verdict record) pairs."""
    summary = pd.DataFrame([{"slide": v["slide"], "verdict": v["verdict"], "needs_review": v["needs_review"],
                             "n_cells": v["n_cells"], "blast_fraction": v["blast_fraction"],
                             "predominant_subtype": v["predominant_subtype"]} for _, v in verdicts])
    rows = "".join(
        f'<tr><td><a href="#{html.escape(d)}">{html.escape(v["slide"])}</a></td><td>{badge(v["verdict"])}</td>'
        f'<td>{"yes" if v["needs_review"] else "no"}</td><td>{v["n_cells"]}</td><td>{percent(v["blast_fraction"])}</td>'
        f'<td>{percent(v["ci_low"])}–{percent(v["ci_high"])}</td><td>{html.escape(v["predominant_subtype"] or "–")}</td></tr>'
        for d, v in verdicts
    )
    key = "".join(f'<span style="background:{c}">{html.escape(n)}</span>' for n, c in zip(TYPE_LABELS, HEX))
    page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>leukoscan report</title>
<style>{STYLE}</style></head><body>
<h1>leukoscan screening report</h1>
<p class="note"><b>Screening aid, not a diagnosis.</b> {html.escape(DISCLAIMER)} Every flagged slide must be
reviewed by a hematologist. Cell types are learned from labelled cells of four laboratories; blast subtypes
from one hospital's patient-level diagnoses (a morphology hint: subtypes are defined by immunophenotyping).</p>
<h2>Slide verdicts</h2>
<table id="verdicts"><thead><tr><th>slide</th><th>verdict</th><th>needs review</th><th>cells</th><th>blast fraction</th>
<th>95 % CI</th><th>predominant subtype</th></tr></thead><tbody>{rows}</tbody></table>
<p class="key">Overlay colours: {key}</p>
{"".join(slide_section(out, d, v) for d, v in verdicts)}
<footer><p>leukoscan {__version__}. {len(summary)} slide(s).</p></footer>
<script>{SCRIPT}</script></body></html>"""
    return outputs.write_text(out / "report.html", page)
