"""``report.html``: one self-contained review page (relative links to the overlays and gallery sheets).

Per slide: the verdict and the rule that fired, the differential count, quality flags, scale, models and
run; a gallery of every cell grouped by type (blasts first, by P(blast); then uncertain cells; then the
other types), each picture linked to its field's overlay (the cell highlighted) and to its row of the
cell table, filterable by type and probability, where a reviewer can reassign a type and download the
corrections as CSV; the overlays; the field and cell tables, each sortable on its own. No server, no
network: it works from ``file://``. A print stylesheet puts one slide per page.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from leukoscan import DISCLAIMER, __version__, outputs
from leukoscan.cells import CELL_TYPES, NOT_WHITE, TYPE_LABELS
from leukoscan.config import SETTINGS
from leukoscan.numbers import floor2, percent
from leukoscan.overlay import HEX
from leukoscan.records import (
    TYPE_COLUMNS,
    WITHOUT_REFERENCE,
    FieldStatus,
    SlideCall,
    SlideVerdict,
    Verdict,
    unreferenced_negatives,
)
from leukoscan.slide import gallery_name

COLOURS = {
    Verdict.SUSPECTED: "#b00020",
    Verdict.INDETERMINATE: "#b26a00",
    Verdict.INSUFFICIENT: "#555",
    Verdict.NEGATIVE: "#1b7f3b",
}
GALLERY_CAP = 120  # cell pictures shown per slide before "show all" (the rest load only when shown)
CORRECTION_COLUMNS = ("slide", "image", "cell", "x1", "y1", "x2", "y2", "predicted", "reviewed")
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
[hidden]{display:none !important}
.note{background:#fff4e5;border-left:4px solid #b26a00;padding:.6em 1em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3}table.sortable th{cursor:pointer}table.sortable th:hover{background:#e4e4e4}
.badge{display:inline-block;margin:1px 0;white-space:nowrap;color:#fff;padding:2px 8px;border-radius:4px;font-weight:600}.badge.review{color:#8a5200;background:#fff;border:2px solid #b26a00}.unusable{color:#b26a00;font-weight:600}
.facts td:first-child{font-weight:600;background:#fafafa}
.overlays figure{display:inline-block;position:relative;margin:4px}.overlays img{max-width:460px;border:1px solid #ccc;display:block}
.overlays figcaption{font-size:11px}.hl{position:absolute;border:3px solid #ff0;outline:2px solid #000;pointer-events:none}
.gallery figure{display:inline-block;margin:3px;width:112px;font-size:11px;vertical-align:top}
.gallery .pic{display:block;width:96px;height:96px;border:3px solid #ccc;background-repeat:no-repeat}
.gallery figure.reviewed .pic{outline:3px dashed #000}.gallery figure.confirmed .pic{outline:3px solid #1b7f3b}
.gallery select{width:104px;font-size:11px}.gallery .ok{font-size:11px;white-space:nowrap}
.gallery h4{margin:.6em 0 .2em}.controls{margin:.4em 0;font-size:13px}.controls>*{margin-right:1em}
tr.target{background:#ffffb0}.differential .reviewed{display:none}.differential.has-review .reviewed{display:table-cell}
.key span{display:inline-block;padding:1px 8px;margin-right:6px;color:#fff;border-radius:3px}
@media print{*{-webkit-print-color-adjust:exact;print-color-adjust:exact}section.slide{break-before:page}.controls,.gallery select,.gallery .ok,.no-print{display:none}
 body{margin:0}.overlays img{max-width:45%}}
"""
SCRIPT = """
var NUMBER = /^-?(\\d+\\.?\\d*|\\.\\d+)%%?$/;  // a whole cell that is a number ("38e21132-..." and "17c9..." are names)
function key(cell) {  // what a cell sorts by: its data-sort where the text is not a plain number
  return cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
}
function sortTable(th) {  // sorts the header's own table, by the header's own column
  var body = th.closest('table').tBodies[0], col = th.cellIndex;
  var rows = Array.prototype.slice.call(body.rows), asc = th.dataset.asc !== 'true';
  th.dataset.asc = asc;
  rows.sort(function(a, b) {
    var x = key(a.cells[col]), y = key(b.cells[col]);
    var r = NUMBER.test(x) && NUMBER.test(y) ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
    return asc ? r : -r;
  });
  rows.forEach(function(r) { body.appendChild(r); });
}
document.querySelectorAll('table.sortable th').forEach(function(th) {
  th.addEventListener('click', function() { sortTable(th); });
});
function highlight(figure, box) {  // a frame over one cell of a field's overlay (box in field pixels)
  var img = figure.querySelector('img');
  if (!img.naturalWidth) {  // not loaded yet (overlays load lazily): framed once it is
    img.loading = 'eager';
    img.addEventListener('load', function() { highlight(figure, box); }, {once: true});
    return;
  }
  var s = img.clientWidth / img.naturalWidth;
  var hl = figure.querySelector('.hl') || figure.appendChild(document.createElement('div'));
  hl.className = 'hl';
  hl.style.left = (box[0] * s - 3) + 'px'; hl.style.top = (box[1] * s - 3) + 'px';
  hl.style.width = ((box[2] - box[0]) * s) + 'px'; hl.style.height = ((box[3] - box[1]) * s) + 'px';
}
document.querySelectorAll('a.to-field').forEach(function(a) {
  a.addEventListener('click', function() {
    var figure = document.getElementById(decodeURIComponent(a.hash.slice(1)));
    if (figure) highlight(figure, JSON.parse(a.closest('figure').dataset.box));
  });
});
document.querySelectorAll('a.to-row').forEach(function(a) {
  a.addEventListener('click', function() {
    document.querySelectorAll('tr.target').forEach(function(r) { r.classList.remove('target'); });
    var row = document.getElementById(decodeURIComponent(a.hash.slice(1)));
    if (row) row.classList.add('target');
  });
});
function filterGallery(gallery) {  // type, least probability and "show all" of one slide's gallery
  var controls = gallery.previousElementSibling, kind = controls.querySelector('.kind').value;
  var least = parseFloat(controls.querySelector('.least').value) || 0, all = gallery.dataset.all === 'true';
  gallery.querySelectorAll('figure').forEach(function(f) {
    // a type: all its cells, the uncertain ones (under their own heading) included
    var ok = (kind === '' || f.dataset.group === kind || f.dataset.type === kind) && parseFloat(f.dataset.p) >= least;
    f.hidden = !ok || (!all && f.classList.contains('more'));
  });
  gallery.querySelectorAll('h4').forEach(function(h) {
    var group = h.dataset.group, shown = gallery.querySelector('figure[data-group="' + group + '"]:not([hidden])');
    h.hidden = !shown;
  });
}
document.querySelectorAll('.controls').forEach(function(c) {
  var gallery = c.nextElementSibling;
  c.querySelector('.kind').addEventListener('change', function() { filterGallery(gallery); });
  c.querySelector('.least').addEventListener('input', function() { filterGallery(gallery); });
  var more = c.querySelector('.show-all');
  if (more) more.addEventListener('click', function() {
    gallery.dataset.all = gallery.dataset.all !== 'true';
    more.textContent = gallery.dataset.all === 'true' ? 'show the first ' + more.dataset.cap : more.dataset.label;
    filterGallery(gallery);
  });
  filterGallery(gallery);  // no heading without a picture under it (past the first pictures shown)
});
var corrections = {};  // "slide|image|cell" -> reviewed row (a corrected call, or a confirmed one); kept until the page is closed
var COLUMNS = %(columns)s;
function correctionsCsv() {
  var quote = function(v) { v = String(v); return /[",\\n]/.test(v) ? '"' + v.replace(/"/g, '""') + '"' : v; };
  var lines = [COLUMNS.join(',')];
  Object.keys(corrections).sort().forEach(function(k) {
    lines.push(COLUMNS.map(function(c) { return quote(corrections[k][c]); }).join(','));
  });
  return lines.join('\\n') + '\\n';
}
function updateCount() {
  var rows = Object.keys(corrections).map(function(k) { return corrections[k]; });
  var confirmed = rows.filter(function(r) { return r.reviewed === r.predicted; }).length;
  document.querySelectorAll('.download').forEach(function(b) {
    b.textContent = 'download reviewed cells (' + (rows.length - confirmed) + ' corrected, ' + confirmed + ' confirmed, all slides)';
  });
}
var NOT_WHITE = %(not_white)s;  // counted per 100 white cells, not among them
function reviewedDifferential(section) {  // the slide's differential with the reviewer's types where corrected
  var counts = {}, changed = 0, white = 0;
  section.querySelectorAll('.gallery figure').forEach(function(f) {
    var d = f.dataset, r = corrections[[d.slide, d.image, d.cell].join('|')], type = r ? r.reviewed : d.type;
    if (type !== d.type) changed++;
    counts[type] = (counts[type] || 0) + 1;
    if (NOT_WHITE.indexOf(type) < 0) white++;
  });
  var table = section.querySelector('table.differential'), note = section.querySelector('.reviewed-note');
  table.classList.toggle('has-review', changed > 0);
  table.querySelectorAll('tbody tr').forEach(function(row) {
    var type = row.dataset.type, k = counts[type] || 0, cell = row.querySelector('td.reviewed');
    var share = !white ? '–' : (100 * k / white).toFixed(1) + (NOT_WHITE.indexOf(type) >= 0 ? ' per 100' : '%%');
    cell.textContent = k + ' (' + share + ')';
    cell.dataset.sort = k;
  });
  note.hidden = changed === 0;
  note.textContent = '"reviewed": the differential with your ' + changed + ' correction(s) on this page. The verdict, ' +
    'the blast fraction and its interval above are what the models called: not recomputed.';
}
function review(f, type) {  // a cell's review: the reviewer's type (its call: confirmed), or null (not reviewed)
  var d = f.dataset, box = JSON.parse(d.box), key = [d.slide, d.image, d.cell].join('|');
  if (type === null) delete corrections[key];
  else corrections[key] = {slide: d.slide, image: d.image, cell: d.cell, x1: box[0], y1: box[1], x2: box[2], y2: box[3],
                           predicted: d.type, reviewed: type};
  f.querySelector('select').value = type === null ? d.type : type;
  f.querySelector('.ok input').checked = type === d.type;
  f.classList.toggle('reviewed', type !== null && type !== d.type);
  f.classList.toggle('confirmed', type === d.type);
  updateCount();
  reviewedDifferential(f.closest('section.slide'));
}
document.querySelectorAll('.gallery figure').forEach(function(f) {
  var select = f.querySelector('select'), ok = f.querySelector('.ok input');
  select.addEventListener('change', function() { review(f, select.value === f.dataset.type ? null : select.value); });
  ok.addEventListener('change', function() { review(f, ok.checked ? f.dataset.type : null); });
});
document.querySelectorAll('.confirm-shown').forEach(function(b) {  // the calls on screen not corrected: right
  b.addEventListener('click', function() {
    var gallery = b.closest('.controls').nextElementSibling;
    gallery.querySelectorAll('figure').forEach(function(f) {
      var d = f.dataset;
      if (!f.hidden && !corrections[[d.slide, d.image, d.cell].join('|')]) review(f, d.type);
    });
  });
});
document.querySelectorAll('.download').forEach(function(b) {
  b.addEventListener('click', function() {
    var a = document.createElement('a');
    a.href = URL.createObjectURL(new Blob([correctionsCsv()], {type: 'text/csv'}));
    a.download = 'corrections.csv';
    document.body.appendChild(a); a.click(); a.remove();
  });
});
""" % {"columns": json.dumps(list(CORRECTION_COLUMNS)), "not_white": json.dumps(list(NOT_WHITE))}


def link(*parts: str) -> str:
    return "/".join(quote(p) for p in parts)


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def interval(low, high) -> str:
    """A 95 % interval for people; '–' when there is none (an insufficient slide)."""
    return "–" if low is None or high is None else f"{percent(low)}–{percent(high)}"


def badge(verdict: str, reasons: list[str] = ()) -> str:
    """The verdict in its colour; beside it, when the slide needs review (``reasons``: an unfamiliar stain, many
    uncertain cells), an outlined "review" badge whose tooltip says why: a negative that the models may not
    read well never shows as a plain green one."""
    shown = f'<span class="badge" style="background:{COLOURS.get(verdict, "#555")}">{esc(verdict)}</span>'
    if reasons:
        shown += f' <span class="badge review" title="{esc("; ".join(reasons))}">review</span>'
    return shown


def cell_text(v) -> str:
    return esc(f"{v:.4f}" if isinstance(v, float) else v)  # cells.csv's 4 decimals


def table(df: pd.DataFrame, sortable: bool = False, cls: str = "", row_ids: list[str] | None = None) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in df.columns)
    ids = row_ids or [""] * len(df)
    body = "".join(
        f"<tr{f' id={chr(34)}{esc(i)}{chr(34)}' if i else ''}>"
        + "".join(f"<td>{cell_text(v)}</td>" for v in row)
        + "</tr>"
        for i, row in zip(ids, df.itertuples(index=False))
    )
    classes = f"{'sortable ' if sortable else ''}{cls}"
    return f'<table class="{classes}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def facts(verdict: SlideVerdict) -> str:
    """The slide's record for a reviewer: counts, quality flags, scale, models and run."""
    call, scale, used = verdict.call, verdict.scale, verdict.screened_with
    if scale.given_px is not None:
        scale_text = f"{scale.given_px:.1f} px per white cell ({scale.source})"
    else:
        sizes = ", ".join(f"{k}: {v:.1f} px" for k, v in scale.by_field_size.items())
        scale_text = f"{sizes} ({scale.source})" if sizes else "– (no field it could be estimated on)"
    models = "; ".join(
        f"{name}: {Path(m['file']).name} (sha256 {m['sha256'][:12]}…)" for name, m in used.get("models", {}).items()
    )
    n_ok = verdict.n_images - verdict.n_failed - verdict.n_unusable - verdict.n_duplicates
    stain = verdict.stain_z
    rows = [
        ("Verdict", f"{badge(call.verdict, call.review_reasons)} {esc(call.reason)}"),
        (
            "Cells",
            f"{call.n_white_cells} white cells ({call.n_cells - call.n_white_cells} erythroblasts or other, not "
            f"counted) in {n_ok} usable of {verdict.n_images} fields "
            f"({verdict.n_failed} unreadable, {verdict.n_unusable} not usable smears"
            + (f", {verdict.n_duplicates} the same picture as another" if verdict.n_duplicates else "")
            + ")"
            + (
                f"; {verdict.n_shared_cells} cell(s) seen in two overlapping fields, counted once"
                if verdict.n_shared_cells
                else ""
            ),
        ),
        (
            "Blast fraction",
            f"{percent(call.blast_fraction, below=SETTINGS.verdict.suspect_fraction)} "
            f"(95 % CI {interval(call.ci_low, call.ci_high)}); "
            f"{call.n_confident_blasts} confident blasts",
        ),
        ("Subtype (experimental)", esc(call.predominant_subtype or "–")),
        ("Quality flags", "<br>".join(esc(r) for r in call.review_reasons) if call.review_reasons else "none"),
        ("Scale", esc(scale_text)),
        ("Stain distance", "–" if stain is None else f"{stain:.1f} SD from the training crops"),
        ("Source", esc(verdict.source or "–")),
        ("Models", esc(models)),
        ("Lab reference", esc(lab_text(verdict.lab_reference))),
        (
            "Run",
            esc(f"{verdict.screened_at} · leukoscan {used.get('version', __version__)} · {used.get('device', '')}"),
        ),
    ]
    return '<table class="facts">' + "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</table>"


def weak_negatives(verdicts: list[SlideVerdict]) -> str:
    """What the page's note says of the slides called negative without a lab reference (nothing when none was)."""
    negatives = unreferenced_negatives(verdicts)
    if not negatives:
        return ""
    return f" <b>{len(negatives)} negative slide(s)</b> {esc(WITHOUT_REFERENCE)}."


def lab_text(lab: dict | None) -> str:
    """What placed the slide's blast calls: the model's default, or the lab's own reference."""
    if not lab:
        return "none: the model's own blast calls (a lab reference places them for your lab: README)"
    name = Path(lab["file"]).name if lab.get("file") else "?"
    return f"{name}: blast log-odds offset {lab['offset']:+.2f}, from {lab['n_cells']} cells of {lab['n_slides']} normal slides"


def differential(call: SlideCall) -> str:
    """Count and share of each cell type, as a hematologist's differential: white cells as % of the white
    cells, erythroblasts and ``other`` per 100 white cells (``NOT_WHITE``: not counted); blasts with their 95 %
    interval."""
    n = call.n_white_cells
    rows = []
    for key, label in zip(CELL_TYPES, TYPE_LABELS):
        k = call.differential.get(key, 0)
        ci = interval(call.ci_low, call.ci_high) if key == "blast" else ""  # the verdict's own interval
        share = "–" if not n else f"{100 * k / n:.1f} per 100" if key in NOT_WHITE else f"{k / n:.1%}"
        rows.append(
            f'<tr data-type="{key}"><td><span style="color:{HEX[CELL_TYPES.index(key)]}">■</span> {esc(label)}</td>'
            f'<td>{k}</td><td data-sort="{100 * k / n if n else -1:.4f}">{share}</td><td>{ci}</td>'
            '<td class="reviewed"></td></tr>'
        )
    return (
        '<table class="differential sortable"><thead><tr><th>type</th><th>count</th>'
        '<th title="of the white cells; erythroblasts and other per 100 white cells">%</th><th>95 % CI</th>'
        '<th class="reviewed" title="count and share with the corrections made on this page">reviewed</th>'
        f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        '<p class="reviewed-note" hidden></p>'
    )


def gallery_order(cells: pd.DataFrame, uncertain_p: float) -> pd.DataFrame:
    """The gallery's cells in review order, with ``group`` (blast, uncertain or the type) and ``p`` (the
    probability of the predicted type): blasts by P(blast), then uncertain cells, then each other type."""
    df = cells.assign(row=range(len(cells)), p=cells[TYPE_COLUMNS].max(axis=1) if len(cells) else [])
    df["group"] = df.cell_type.where((df.cell_type == "blast") | (df.p >= uncertain_p), "uncertain")
    order = {g: i for i, g in enumerate(["blast", "uncertain", *(t for t in CELL_TYPES if t != "blast")])}
    return df.assign(rank=df.group.map(order)).sort_values(["rank", "p"], ascending=[True, False], kind="stable")


def gallery(
    sid: str,
    slide: str,
    slide_dir: str,
    cells: pd.DataFrame,
    stems: dict[str, str],
    overlay_ids: dict[str, str],
    uncertain_p: float,
) -> str:
    """The slide's cells for review, one picture each (cut from its field's gallery sheet), in
    ``gallery_order`` under a heading per group, each with a select to correct its type."""
    geo = SETTINGS.geometry
    ordered = gallery_order(cells, uncertain_p)
    options = "".join(f'<option value="{t}">{esc(label)}</option>' for t, label in zip(CELL_TYPES, TYPE_LABELS))
    parts, group = [], None
    for n, c in enumerate(ordered.itertuples(index=False)):
        if c.group != group:
            group = c.group
            title = "Uncertain cells" if group == "uncertain" else TYPE_LABELS[CELL_TYPES.index(group)]
            count = str(int((ordered.group == group).sum()))
            unsure = int(((ordered.group == "uncertain") & (ordered.cell_type == group)).sum())
            count += f", and {unsure} among the uncertain cells" if unsure else ""  # the differential counts both
            parts.append(f'<h4 data-group="{group}">{esc(title)} ({count})</h4>')
        i = int(c.cell)
        x, y = (i % geo.gallery_columns) * geo.gallery_px, (i // geo.gallery_columns) * geo.gallery_px
        sheet = link(slide_dir, *gallery_name(stems[c.image]).split("/"))
        colour = HEX[CELL_TYPES.index(c.cell_type)]
        box = json.dumps([c.x1, c.y1, c.x2, c.y2])
        select = options.replace(f'value="{c.cell_type}"', f'value="{c.cell_type}" selected')
        parts.append(
            f'<figure class="cell{" more" if n >= GALLERY_CAP else ""}"{" hidden" if n >= GALLERY_CAP else ""} '
            f'data-slide="{esc(slide)}" data-image="{esc(c.image)}" data-cell="{i}" data-type="{c.cell_type}" '
            f'data-group="{c.group}" data-p="{c.p:.4f}" data-box="{esc(box)}">'
            f'<a class="to-field" href="#{quote(overlay_ids[c.image])}" title="show in its field">'
            f'<span class="pic" style="background-image:url(\'{sheet}\');background-position:-{x}px -{y}px;'
            f'border-color:{colour}"></span></a>'
            f'<figcaption>{esc(c.label)} {floor2(c.p)}<br><a class="to-row" href="#{quote(f"{sid}-row-{c.row}")}" '
            f'title="its row in the cell table">{esc(c.image)} #{i}</a><br>'
            f'<select aria-label="reviewed type">{select}</select>'
            f'<label class="ok" title="the call is right"><input type="checkbox"> right</label></figcaption></figure>'
        )
    return (
        gallery_controls(len(ordered))
        + f'<div class="gallery" data-all="false">{"".join(parts) or "<p>No cells.</p>"}</div>'
    )


def gallery_controls(n_cells: int) -> str:
    """The gallery's filters (group, least probability), its show-all button (past ``GALLERY_CAP`` cells) and
    "confirm the calls shown" and the download of the reviewed cells (corrected and confirmed)."""
    kinds = "".join(
        f'<option value="{g}">{esc(t)}</option>'
        for g, t in [
            ("blast", "Blasts"),
            ("uncertain", "Uncertain"),
            *((t, label) for t, label in zip(CELL_TYPES, TYPE_LABELS) if t != "blast"),
        ]
    )
    more = (
        f'<button class="show-all" data-cap="{GALLERY_CAP}" data-label="show all {n_cells}">show all {n_cells}</button>'
        if n_cells > GALLERY_CAP
        else ""
    )
    return (
        f'<div class="controls">type <select class="kind"><option value="">all</option>{kinds}</select>'
        f'<label>P ≥ <input class="least" type="number" min="0" max="1" step="0.05" value="0"></label>{more}'
        '<button class="confirm-shown" title="mark every cell on screen whose call was not corrected as right">'
        "confirm the calls shown</button>"
        '<button class="download">download reviewed cells (0 corrected, 0 confirmed, all slides)</button></div>'
    )


def field_note(status: FieldStatus, why: str) -> str:
    """An overlay's caption after the field's name: why its cells do not count, for a field that is not a
    usable smear (its overlay is kept for review) or the same picture as another field."""
    return f'<br><span class="unusable">not counted: {esc(why or status)}</span>' if status != FieldStatus.OK else ""


def slide_section(out: Path, sid: str, slide_dir: str, verdict: SlideVerdict) -> str:
    folder = out / slide_dir
    cells = pd.read_csv(folder / "cells.csv", keep_default_na=False)
    images = pd.read_csv(folder / "images.csv", keep_default_na=False)
    stems = {image: Path(overlay).stem for image, overlay in zip(images.image, images.overlay) if overlay}
    overlay_ids = {image: f"{sid}-field-{j}" for j, image in enumerate(images.image)}
    overlays = "".join(
        f'<figure id="{esc(overlay_ids[image])}"><a href="{link(slide_dir, *overlay.split("/"))}">'
        f'<img src="{link(slide_dir, *overlay.split("/"))}" alt="{esc(image)}" loading="lazy"></a>'
        f"<figcaption>{esc(image)}{field_note(status, why)}</figcaption></figure>"
        for image, overlay, status, why in zip(images.image, images.overlay, images.status, images.error)
        if overlay
    )
    uncertain_p = verdict.thresholds.uncertain_p
    cell_ids = [f"{sid}-row-{k}" for k in range(len(cells))]
    return f"""
<section class="slide" id="{esc(sid)}"><h2>{esc(verdict.slide)} {badge(verdict.verdict, verdict.call.review_reasons)}</h2>
{facts(verdict)}
<h3>Differential</h3>{differential(verdict.call)}
<h3>Cells for review</h3>
<p class="no-print">Blasts first (by P(blast)), then uncertain cells, then the other types. A picture shows the cell
in its field; the name links to its row of the cell table; choose another type to correct a call, tick "right" (or
"confirm the calls shown") where it is right, then download the reviewed cells (corrections.csv: slide, image, cell,
box, predicted, reviewed) for <code>leukoscan classify lab-cells</code>: fine-tuning learns from both, and its promotion gate
needs right calls to judge a new model by.</p>
{gallery(sid, verdict.slide, slide_dir, cells, stems, overlay_ids, uncertain_p)}
<h3>Overlays</h3><div class="overlays">{overlays or "<p>No overlays.</p>"}</div>
<h3>Fields</h3>{table(images, sortable=True, cls="images")}
<h3>Cells (click a column to sort)</h3>{table(cells, sortable=True, cls="cells", row_ids=cell_ids)}
</section>"""


def write_report(out: Path, verdicts: list[SlideVerdict]) -> Path:
    """The review page of ``verdicts`` (each ``slide``: its output folder's name in ``out``)."""
    rows = "".join(
        f'<tr><td><a href="#s{k}">{esc(v.slide)}</a></td><td>{badge(c.verdict, c.review_reasons)}</td>'
        f"<td>{esc(c.reason)}</td><td>{esc('yes: ' + '; '.join(c.review_reasons) if c.needs_review else 'no')}</td>"
        f"<td>{c.n_white_cells}</td>"
        f"<td>{percent(c.blast_fraction, below=SETTINGS.verdict.suspect_fraction)}</td><td>{interval(c.ci_low, c.ci_high)}</td>"
        f"<td>{esc(c.predominant_subtype or '–')}</td></tr>"
        for k, (v, c) in enumerate((v, v.call) for v in verdicts)
    )
    key = "".join(f'<span style="background:{c}">{esc(n)}</span>' for n, c in zip(TYPE_LABELS, HEX))
    page = f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>leukoscan report</title>
<style>{STYLE}</style></head><body>
<h1>leukoscan screening report</h1>
<p class="note"><b>Screening aid, not a diagnosis.</b> {esc(DISCLAIMER)} Every flagged slide must be
reviewed by a hematologist. Cell types are learned from labelled cells of five public sources (several laboratories); blast subtypes
from one hospital's patient-level diagnoses (a morphology hint: subtypes are defined by immunophenotyping).{weak_negatives(verdicts)}</p>
<h2>Slide verdicts</h2>
<table id="verdicts" class="sortable"><thead><tr><th>slide</th><th>verdict</th><th>why</th><th>needs review</th>
<th>white cells</th><th>blast fraction</th><th>95 % CI</th><th>predominant subtype</th></tr></thead><tbody>{rows}</tbody></table>
<p class="key">Cell type colours: {key}</p>
{"".join(slide_section(out, f"s{k}", v.slide, v) for k, v in enumerate(verdicts))}
<footer><p>leukoscan {__version__}. {len(verdicts)} slide(s).</p></footer>
<script>{SCRIPT}</script></body></html>"""
    return outputs.write_text(out / "report.html", page)
