"""The review page in real headless Chromium (two slides), and the cell exports for QuPath and COCO tools."""

import json
import re
import shutil
from urllib.parse import unquote

import pandas as pd
import pytest
from browser import chromium, needs_chromium
from typer.testing import CliRunner

from leukoscan.cells import CELL_TYPES, NOT_WHITE
from leukoscan.numbers import floor2
from leukoscan.pipeline import DEMO_SLIDE, app

SLIDES = ("2.jpg", "EarlyPreb.jpeg")  # 12 and 91 cells: two slides, one with more cells than a gallery page shows

# run in the page after its own script: what a reviewer does, with what the page shows written into it
PROBE = r"""
<script>
window.addEventListener('load', function() {  // once the page's pictures have loaded (or failed)
  var out = {errors: []};
  try {
    var second = document.querySelectorAll('section.slide')[1];
    var table = second.querySelector('table.cells'), col = -1;
    table.querySelectorAll('th').forEach(function(th, i) { if (th.textContent === 'p_blast') col = i; });
    table.querySelectorAll('th')[col].click();
    out.sorted_p_blast = Array.prototype.map.call(table.tBodies[0].rows, function(r) { return parseFloat(r.cells[col].textContent); });
    var diff = second.querySelector('table.differential');  // "%" of white cells beside "per 100" of the others
    diff.querySelectorAll('th')[2].click();
    out.differential_sorted = Array.prototype.map.call(diff.tBodies[0].rows, function(r) {
      return [parseFloat(r.cells[2].textContent), r.cells[2].textContent.indexOf('per 100') >= 0];
    });
    var first = document.querySelector('section.slide table.cells');
    out.first_table_cell_column = Array.prototype.map.call(first.tBodies[0].rows, function(r) { return r.cells[1].textContent; });
    var fig = second.querySelector('.gallery figure');
    var toRow = fig.querySelector('a.to-row'), toField = fig.querySelector('a.to-field');
    var row = document.getElementById(decodeURIComponent(toRow.hash.slice(1)));
    var field = document.getElementById(decodeURIComponent(toField.hash.slice(1)));
    out.caption = fig.querySelector('figcaption').textContent;
    out.row_cells = row ? [row.cells[0].textContent, row.cells[1].textContent] : null;
    out.field_img = field ? field.querySelector('img').getAttribute('src') : null;
    out.figure = {image: fig.dataset.image, cell: fig.dataset.cell, type: fig.dataset.type};
    toField.click();
    out.highlighted = !!field.querySelector('.hl');
    var reviewedColumn = function() {  // the differential's "reviewed" column: shown?, its note, type -> [count, reviewed]
      var rows = {};
      diff.querySelectorAll('tbody tr').forEach(function(r) {
        rows[r.dataset.type] = [r.cells[1].textContent, r.querySelector('td.reviewed').textContent];
      });
      var note = second.querySelector('.reviewed-note');
      return {shown: getComputedStyle(diff.querySelector('td.reviewed')).display !== 'none',
              note: note.hidden ? null : note.textContent, rows: rows};
    };
    out.reviewed_before = reviewedColumn();
    var select = fig.querySelector('select');
    select.value = fig.dataset.type === 'monocyte' ? 'lymphocyte' : 'monocyte';
    select.dispatchEvent(new Event('change'));
    out.csv = correctionsCsv();
    out.reviewed_after = reviewedColumn();
    out.download_label = second.querySelector('.download').textContent;
    // "right" on another cell, then on it and "confirm the calls shown": every cell on screen reviewed, the
    // corrected one kept as corrected
    var other = second.querySelectorAll('.gallery figure')[1];
    other.querySelector('.ok input').click();
    out.confirmed_one = correctionsCsv().trim().split('\n').length - 1;
    other.querySelector('.ok input').click();  // unticked: not reviewed
    out.unconfirmed = correctionsCsv().trim().split('\n').length - 1;
    second.querySelector('.confirm-shown').click();
    out.after_confirm_shown = correctionsCsv().trim().split('\n').slice(1);
    out.confirm_label = second.querySelector('.download').textContent;
    out.first_select_kept = fig.querySelector('select').value;
    out.reviewed_after_confirm = reviewedColumn();
    second.querySelector('.download').click();
    var shown = function() {  // pictures on screen (a style that overrides `hidden` would leave them there)
      return Array.prototype.filter.call(second.querySelectorAll('.gallery figure'), function(f) {
        return f.getClientRects().length > 0;
      }).length;
    };
    out.numbers = ['38e21132-cb80', '17c97fcc', '0.584', '2.8%', '12'].map(function(x) { return NUMBER.test(x); });
    out.gallery_shown = shown();
    second.querySelector('.kind').value = 'blast';
    second.querySelector('.kind').dispatchEvent(new Event('change'));
    out.blasts_shown = shown();
    second.querySelector('.kind').value = 'lymphocyte';  // a type: its uncertain cells too
    second.querySelector('.kind').dispatchEvent(new Event('change'));
    out.lymphocytes_shown = shown();
    var first = document.querySelectorAll('section.slide')[0];  // confirmed: only the cells on screen
    first.querySelector('.kind').value = 'lymphocyte';
    first.querySelector('.kind').dispatchEvent(new Event('change'));
    first.querySelector('.confirm-shown').click();
    out.first_confirmed = correctionsCsv().trim().split('\n').slice(1).filter(function(r) { return r.split(',')[0] === '2'; }).length;
    // every URL the page can load: sources, links, stylesheets' pictures (Chromium keeps no resource timing for file:)
    out.resources = [];
    document.querySelectorAll('*').forEach(function(el) {
      ['src', 'href'].forEach(function(a) { if (el[a] && typeof el[a] === 'string') out.resources.push(el[a]); });
      var bg = getComputedStyle(el).backgroundImage;
      if (bg && bg !== 'none') out.resources.push(bg.replace(/^url\("?|"?\)$/g, ''));
    });
  } catch (e) { out.errors.push(String(e)); }
  var pre = document.createElement('pre'); pre.id = 'probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


@pytest.fixture(scope="module")
def two_slides(tmp_path_factory):
    out = tmp_path_factory.mktemp("review")
    result = CliRunner().invoke(
        app,
        ["run", *(str(DEMO_SLIDE / s) for s in SLIDES), "--out", str(out), "--export", "geojson", "--export", "coco"],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def probed(two_slides, tmp_path_factory):
    """What the review page showed in headless Chromium as ``PROBE`` reviewed it (no console message)."""
    page = (two_slides / "report.html").read_text()
    probe = two_slides / "probe.html"  # beside the report, so its relative links resolve the same way
    probe.write_text(page.replace("</body>", PROBE + "</body>"))
    proc = chromium(probe, tmp_path_factory.mktemp("chromium"), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [line for line in proc.stderr.splitlines() if ":CONSOLE" in line] == []
    out = json.loads(
        re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
        .group(1)
        .replace("&quot;", '"')
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
    )
    assert out["errors"] == []
    return out


@needs_chromium
def test_review_page_sorts_links_corrects_and_stays_offline(two_slides, probed):
    out = probed
    # the second slide's header sorts the second slide's table, and only it
    cells2 = pd.read_csv(two_slides / "EarlyPreb" / "cells.csv")
    assert out["sorted_p_blast"] == sorted(out["sorted_p_blast"]) and len(out["sorted_p_blast"]) == len(cells2)
    shares = [share for share, _ in out["differential_sorted"]]
    assert shares == sorted(shares) and any(per100 for _, per100 in out["differential_sorted"])
    assert out["first_table_cell_column"] == [str(i) for i in range(len(pd.read_csv(two_slides / "2" / "cells.csv")))]
    # the gallery opens with the most likely blast, captioned with its type, probability and field; its links lead
    # to its row of the cell table and to its field's overlay (an existing file), where it is highlighted
    top = cells2.sort_values("p_blast", ascending=False).iloc[0] if (cells2.cell_type == "blast").any() else None
    fig = out["figure"]
    if top is not None:
        assert (fig["image"], int(fig["cell"]), fig["type"]) == ("EarlyPreb.jpeg", top.cell, "blast")
        assert out["caption"].startswith(f"{top.label} {floor2(top.p_blast)}")
    assert out["row_cells"] == [fig["image"], fig["cell"]]
    assert (two_slides / unquote(out["field_img"])).is_file() and out["highlighted"]
    # a reassignment is one downloadable CSV row
    lines = out["csv"].strip().split("\n")
    assert lines[0] == "slide,image,cell,x1,y1,x2,y2,predicted,reviewed" and len(lines) == 2
    row = cells2.set_index("cell").loc[int(fig["cell"])]
    reviewed = "lymphocyte" if fig["type"] == "monocyte" else "monocyte"
    assert lines[1].split(",") == [
        "EarlyPreb",
        "EarlyPreb.jpeg",
        fig["cell"],
        *(f"{row[c]:g}" for c in ("x1", "y1", "x2", "y2")),
        fig["type"],
        reviewed,
    ]
    assert out["download_label"] == "download reviewed cells (1 corrected, 0 confirmed, all slides)"  # one CSV
    # a tick confirms a call (a row whose reviewed type is its call), unticked it is gone; "confirm the calls shown"
    # confirms every other cell on screen (all 91: the gallery shows them all) and leaves the correction as it was
    assert out["confirmed_one"] == 2 and out["unconfirmed"] == 1
    confirmed = [r.split(",") for r in out["after_confirm_shown"]]
    assert len(confirmed) == len(cells2) and sum(r[-1] != r[-2] for r in confirmed) == 1
    assert out["confirm_label"] == f"download reviewed cells (1 corrected, {len(cells2) - 1} confirmed, all slides)"
    assert out["first_select_kept"] == reviewed
    # 91 cells: the first 120 would all show; the type filter leaves the blasts
    assert out["gallery_shown"] == len(cells2) and out["blasts_shown"] == int((cells2.cell_type == "blast").sum())
    assert out["lymphocytes_shown"] == int((cells2.cell_type == "lymphocyte").sum())
    cells1 = pd.read_csv(two_slides / "2" / "cells.csv")
    assert out["first_confirmed"] == int((cells1.cell_type == "lymphocyte").sum()) < len(cells1)
    assert out["numbers"] == [False, False, True, True, True]  # names that start with digits sort as names
    # nothing but the output folder's own files is loaded
    assert out["resources"] and all(r.startswith(("file://", "blob:")) for r in out["resources"]), out["resources"]
    assert any("/gallery/" in r for r in out["resources"])


@needs_chromium
def test_a_correction_shows_the_reviewed_differential_beside_the_models(two_slides, probed):
    """The differential gets a "reviewed" column once a call is corrected on the page: the reviewer's types
    counted, as shares of the white cells (erythroblasts and other per 100); confirming calls changes nothing, and
    a note says the verdict is the models' (not recomputed)."""
    before, after = probed["reviewed_before"], probed["reviewed_after"]
    assert before["shown"] is False and before["note"] is None
    assert after["shown"] and "1 correction(s)" in after["note"] and "not recomputed" in after["note"]
    cells = pd.read_csv(two_slides / "EarlyPreb" / "cells.csv")
    predicted = probed["figure"]["type"]
    reviewed = "lymphocyte" if predicted == "monocyte" else "monocyte"
    white = int((~cells.cell_type.isin(NOT_WHITE)).sum())
    for t in CELL_TYPES:
        n = int((cells.cell_type == t).sum())
        k = n + (t == reviewed) - (t == predicted)
        share = f"{100 * k / white:.1f}" + (" per 100" if t in NOT_WHITE else "%")
        assert after["rows"][t] == [str(n), f"{k} ({share})"], t
    assert probed["reviewed_after_confirm"] == after


def test_report_top_has_the_differential_flags_scale_models_and_run(two_slides):
    page = (two_slides / "report.html").read_text()
    for text in (
        "Differential",
        "Quality flags",
        "Scale",
        "Models",
        "detector.pt (sha256",
        "leukoscan 0.",
        "Cells for review",
        "download reviewed cells",
        "confirm the calls shown",
        "@media print",
        "break-before:page",
    ):
        assert text in page, text
    assert page.count('class="slide"') == 2 and page.count('class="cells sortable"') == 0
    # the differential's shares sort as numbers, "%" of white cells and "per 100" of the others alike
    shares = re.findall(r'<td data-sort="([-\d.]+)">([\d.]+)(%| per 100)</td>', page)
    assert len(shares) == 2 * len(CELL_TYPES) and {unit for *_, unit in shares} == {"%", " per 100"}
    assert all(abs(float(key) - float(text)) < 0.051 for key, text, _ in shares)
    assert page.count('class="sortable cells"') == 2


def test_geojson_export_is_valid_and_has_every_cell(two_slides):
    geojson = pytest.importorskip("geojson")
    for slide in ("2", "EarlyPreb"):
        cells = pd.read_csv(two_slides / slide / "cells.csv")
        files = sorted((two_slides / slide / "geojson").glob("*.geojson"))
        assert len(files) == 1  # one per field: QuPath imports objects into one image at a time
        collection = geojson.loads(files[0].read_text())
        assert collection.is_valid and len(collection["features"]) == len(cells)
        feature = collection["features"][0]
        assert feature["properties"]["objectType"] == "detection"
        assert feature["properties"]["classification"]["name"] == cells.label[0].split(" (")[0]
        assert feature["properties"]["measurements"]["p_blast"] == pytest.approx(cells.p_blast[0], abs=1e-4)
        x1, y1 = feature["geometry"]["coordinates"][0][0]
        assert (x1, y1) == pytest.approx((cells.x1[0], cells.y1[0]), abs=0.06)


def test_coco_export_loads_in_pycocotools_and_round_trips_through_import_labels(two_slides, tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO

    from leukoscan.detect.labels import import_labels
    from leukoscan.detect.predict import Detector
    from leukoscan.detect.prelabel import prelabel

    path = two_slides / "EarlyPreb" / "cells.coco.json"
    coco = COCO(str(path))
    cells = pd.read_csv(two_slides / "EarlyPreb" / "cells.csv")
    assert len(coco.getAnnIds()) == len(cells) and [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(
        CELL_TYPES
    )
    ann = coco.loadAnns(coco.getAnnIds())[0]
    assert ann["bbox"] == pytest.approx(
        [cells.x1[0], cells.y1[0], cells.x2[0] - cells.x1[0], cells.y2[0] - cells.y1[0]], abs=0.06
    )
    # the predictions as a label set's corrected labels: every white cell (not "other") comes back as a box
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(DEMO_SLIDE / "EarlyPreb.jpeg", photos)
    labset = tmp_path / "labset"
    prelabel(Detector(device="cpu"), photos, labset, log=lambda m: None)
    report = import_labels(labset, path)
    assert report["boxes"] == int((cells.cell_type != "other").sum()) and report["labelled_images"] == 1


def test_gallery_captions_round_down_so_an_uncertain_cell_never_reads_as_certain_enough():
    assert [floor2(p) for p in (0.597, 0.6, 0.6049, 0.999, 1.0, 0.0)] == [
        "0.59",
        "0.60",
        "0.60",
        "0.99",
        "1.00",
        "0.00",
    ]
