"""The one-page HTML report: the verify-before-acting box, the map and the tables, no JavaScript.

Self-contained (inline CSS, the map embedded as base64 PNG), so it can be mailed or printed.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from geovlm.output.html_tables import html_table
from geovlm.reporting.layers import CATEGORIES, UNCERTAIN
from geovlm.reporting.picture import COLOURS
from geovlm.reporting.provenance import RunProvenance
from geovlm.reporting.tally import AreaCounts, shares

__all__ = ["MAX_ROWS", "ReportContent", "render_page"]

#: Areas listed on the page, most damaged first; the CSV holds them all.
MAX_ROWS = 40

_STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 1.5em auto;
       padding: 0 1.5em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin: 1.2em 0 0.4em; }
table { border-collapse: collapse; margin: 0.4em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.55em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em;
          border: 1px solid #444; vertical-align: middle; }
.verify { border: 3px solid #d7191c; background: #fff4f0; padding: 0.6em 1.2em; }
.verify h2 { margin-top: 0.2em; color: #a50f15; }
.map { max-width: 100%; }
.note { color: #555; font-size: 0.88em; }
"""


@dataclass(frozen=True, slots=True)
class ReportContent:
    """Everything the page shows.

    Attributes
    ----------
    source
        The damage GeoPackage read.
    counts
        The buildings per area and category.
    runs
        The runs that wrote the ``buildings`` layer, oldest first.
    map_png
        The map picture.
    disaster
        Chips per disaster label of a classify layer, or None without one.
    classify_runs
        The runs that wrote that classify layer.
    files
        The tables' files, by what they hold, as the page names them.
    """

    source: str
    counts: AreaCounts
    runs: Sequence[RunProvenance]
    map_png: bytes
    disaster: Mapping[str, int] | None = None
    classify_runs: Sequence[RunProvenance] = ()
    files: Mapping[str, str] | None = None


def render_page(content: ReportContent) -> str:
    """Return the report as a complete HTML document."""
    counts = content.counts
    totals = counts.total_row()
    scenes = sorted({scene for run in content.runs for scene in run.scenes})
    png = base64.b64encode(content.map_png).decode("ascii")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>geovlm damage report</title>',
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Building damage report</h1>",
        f'<p class="note">{totals["total"]} buildings in <code>{escape(content.source)}</code>'
        f"{_scenes(scenes)}; counted per {_per(counts)}.</p>",
        *_verify(content),
        '<h2 id="totals">Totals per grade</h2>',
        _totals(counts),
        '<h2 id="map">Map</h2>',
        f'<p><img class="map" alt="damage map" src="data:image/png;base64,{png}"></p>',
        f'<h2 id="areas">Buildings per {counts.areas.kind}</h2>',
        *_areas(counts),
        *_disaster(content.disaster),
        '<h2 id="provenance">How these numbers were made</h2>',
        *_provenance(content.runs, "buildings"),
        *(_provenance(content.classify_runs, "disaster type") if content.disaster else ()),
        *_files(content.files),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _scenes(scenes: Sequence[str]) -> str:
    if not scenes:
        return ""
    shown = ", ".join(f"<code>{escape(s)}</code>" for s in scenes[:3])
    return f" from {shown}" + (f" and {len(scenes) - 3} more scenes" if len(scenes) > 3 else "")


def _per(counts: AreaCounts) -> str:
    if counts.areas.cell_m is not None:
        return (f"{counts.areas.cell_m:g} m grid cell ({escape(counts.areas.crs.name)}; cells"
                " named by column letter from the west and row from the north)")
    return "area of the admin layer"


def _verify(content: ReportContent) -> Iterable[str]:
    totals = content.counts.total_row()
    uncertain, total = totals[UNCERTAIN], totals["total"]
    calibrated = [run.calibrated for run in content.runs]
    thresholds = sorted({str(run.parameters["min_confidence"]) for run in content.runs
                         if "min_confidence" in run.parameters})
    pre = [bool(run.parameters.get("pre")) for run in content.runs]
    yield '<div class="verify" id="verify"><h2>Verify before acting</h2><ul>'
    yield ("<li>Every grade here is a vision-language model's reading of imagery around each"
           " footprint, not a field survey. Check the buildings that matter on the imagery or"
           " on the ground before sending people or resources.</li>")
    yield ("<li>The model cannot see what a roof hides: interior and structural damage,"
           " cracked walls, water inside, or a building under cloud, smoke or trees. Buildings"
           " missing from the footprint layer are not counted at all.</li>")
    if pre and not all(pre):
        yield ("<li>Some or all buildings were graded <b>from the post-disaster image alone</b>:"
               " ruins or works older than the disaster look like its damage.</li>")
    if all(calibrated) and calibrated:
        yield ("<li>Calibration: the probabilities were calibrated on labelled data (the"
               " preset's calibration), so a confidence of 0.8 is right about 8 times in 10"
               " on data like that.</li>")
    else:
        yield ("<li>Calibration: <b>not calibrated</b>; confidences are the model's raw"
               " scores and tend to be over-confident.</li>")
    threshold = f" (below --min-confidence {', '.join(thresholds)})" if thresholds else ""
    yield (f"<li><b>{uncertain} of {total} buildings ({_percent(uncertain, total)}) are"
           f" uncertain</b>{escape(threshold)}: they are counted apart, in no grade; look at"
           " them first.</li>")
    if any(run.status != "complete" for run in content.runs):
        yield ("<li><b>The damage run did not finish</b> (status"
               f" {escape(', '.join(sorted({r.status for r in content.runs})))}): buildings"
               " it did not reach are missing from every count.</li>")
    yield "</ul></div>"


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "–"


def _swatch(category: str) -> str:
    return (f'<span class="swatch" style="background:{COLOURS[category]}"></span>'
            f"{escape(category)}")


def _totals(counts: AreaCounts) -> str:
    totals, row = counts.totals, counts.total_row()
    share = shares(totals)
    graded = int(totals[:-1].sum())
    body = [[_swatch(c), int(n), f"{100 * s:.1f}%",
             _percent(int(n), graded) if c != UNCERTAIN else "–"]
            for c, n, s in zip(CATEGORIES, totals, share, strict=True)]
    body.append(["<b>all</b>", row["total"], "100%", "–"])
    outside = int(counts.outside.sum())
    note = (f'<p class="note">{outside} buildings lie outside every area: in the totals, in no'
            " area's row.</p>" if outside else "")
    return html_table(["grade", "buildings", "share of all", "share of graded"], body,
                  raw=True) + note


def _severity(row: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(row[c] for c in reversed(CATEGORIES[1:-1]))


def _areas(counts: AreaCounts) -> Iterable[str]:
    rows = sorted(counts.rows(), key=_severity, reverse=True)
    header = [counts.areas.kind, *CATEGORIES, "total", "damaged share of graded"]
    yield html_table(header, [[row["name"], *(row[c] for c in CATEGORIES), row["total"],
                           row["damaged_share"]] for row in rows[:MAX_ROWS]])
    if len(rows) > MAX_ROWS:
        yield (f'<p class="note">The {MAX_ROWS} most damaged of {len(rows)}'
               f" {counts.areas.kind}s (destroyed first, then major, minor); the CSV and the"
               " GeoPackage layer hold them all.</p>")


def _disaster(found: Mapping[str, int] | None) -> Iterable[str]:
    if not found:
        return
    total = sum(found.values())
    yield '<h2 id="disaster">Disaster type (classify layer)</h2>'
    yield html_table(["disaster type", "chips", "share"],
                 [[label, n, _percent(n, total)] for label, n in
                  sorted(found.items(), key=lambda item: -item[1])])


def _provenance(runs: Sequence[RunProvenance], what: str) -> Iterable[str]:
    if not runs:
        yield f'<p class="note">No <code>runs</code> table records how the {what} were made.</p>'
        return
    rows = [[f"{what}: {run.command}", run.model, run.parameters.get("adapter"),
             run.parameters.get("quantize"), "yes" if run.calibrated else "no",
             ", ".join(run.scenes), run.started, run.ended, run.status, run.written,
             run.versions.get("geovlm")] for run in runs]
    yield html_table(["run", "model", "adapter", "quantization", "calibrated", "scenes", "started",
                  "ended", "status", "written", "geovlm"], rows)


def _files(files: Mapping[str, str] | None) -> Iterable[str]:
    if files:
        listed = "; ".join(f"{escape(what)}: <code>{escape(name)}</code>"
                           for what, name in files.items())
        yield f'<p class="note">The same tables as files: {listed}.</p>'


