"""The HTML page: sections of escaped text, tables and plotly figures, with plotly.js and one figure
template embedded once and nothing fetched from anywhere.

Every string that comes from a run (layer, module, metric and rule text) goes through `text()` for
HTML or `plot_text()` for plotly (which reads a small HTML subset in its labels), and figure JSON
sits in `<script type="application/json">` with <, > and & escaped, so no name can close the tag.
"""

from __future__ import annotations

import html
import json
import sysconfig
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

TEMPLATE = "plotly_white"
_LIBRARY_PATHS = ("site-packages", "dist-packages", sysconfig.get_paths()["stdlib"])
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c6cbd6;font-size:13px}
nav{padding:8px 24px;background:#e9ecf1;font-size:13px}nav a{margin-right:14px;color:#1d4ed8}
main{padding:8px 24px 40px}section{background:#fff;border-radius:6px;padding:12px 18px;margin:14px 0;
box-shadow:0 1px 2px rgba(0,0,0,.08)}h2{font-size:17px;margin:4px 0 8px}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}td,th{border:1px solid #dde1e7;padding:3px 7px;
text-align:left;vertical-align:top}th{background:#f0f2f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#5b6474;font-size:13px}.sev-critical,.sev-error{color:#b91c1c;font-weight:600}
.sev-warning{color:#b45309;font-weight:600}.sev-info{color:#1d4ed8}.gp-plot{width:100%;min-height:320px}
.note.section-failed{color:#b91c1c}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:13px;margin:4px 0}dt{color:#5b6474}
dd{margin:0}code{font-size:12px}details summary{cursor:pointer;font-size:13px}
"""
_LOADER = """
(function(){
  var template = JSON.parse(document.getElementById('gp-template').textContent);
  var plots = document.querySelectorAll('div.gp-plot');
  for (var i = 0; i < plots.length; i++) {
    var div = plots[i];
    var spec = JSON.parse(document.getElementById(div.id + '-data').textContent);
    spec.layout.template = template;
    Plotly.newPlot(div, spec.data, spec.layout, {responsive: true, displaylogo: false});
  }
})();
"""


def text(value: object) -> str:
    """A run-derived value as HTML text."""
    return html.escape(str(value), quote=True)


def plot_text(value: object) -> str:
    """A run-derived value for a plotly label (plotly turns entities back into characters)."""
    return html.escape(str(value), quote=False)


def _json_for_script(data: str) -> str:
    # In a JSON string these are equivalent escapes; in HTML none of them can end the script element.
    return data.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[bool] | None = None) -> str:
    """An HTML table of escaped cells; `numeric` right-aligns columns."""
    numeric = list(numeric or [False] * len(headers))
    head = "".join(f"<th>{text(h)}</th>" for h in headers)
    opening = ['<td class="num">' if n else "<td>" for n in numeric]
    body = "".join("<tr>" + "".join(f"{opening[i]}{_cell(v)}</td>" for i, v in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Raw(str):
    """HTML built here from escaped parts (a link, a severity badge), put in a table cell as is."""


def _cell(value: object) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, float):
        return text(f"{value:.4g}")
    return text(value)


def note(message: str) -> str:
    return f'<p class="note">{text(message)}</p>'


@dataclass
class Section:
    anchor: str
    title: str
    blocks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SectionFailure:
    """A section that raised while it was drawn: the page shows a note in its place."""

    title: str
    error: str  # "ValueError: message"
    where: str  # the innermost frame, "tensors.py:97 in histograms_section": for the terminal, not the page

    def line(self) -> str:
        return f"section '{self.title}' failed ({self.error}, at {self.where})"


def describe_failure(title: str, error: Exception) -> SectionFailure:
    frame = _innermost_own_frame(traceback.extract_tb(error.__traceback__))
    where = f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}" if frame else "?"
    message = " ".join(str(error).split())[:300]  # one line, however long the error's own text
    return SectionFailure(title, f"{type(error).__name__}: {message}" if message else type(error).__name__, where)


def _innermost_own_frame(frames: traceback.StackSummary) -> traceback.FrameSummary | None:
    """The deepest frame outside the libraries (numpy, pandas, plotly, the standard library): the
    report's own line that met the data, not numpy's reduction that raised."""
    own = [f for f in frames if "gradprobe" in Path(f.filename).parts
           or not any(library in f.filename for library in _LIBRARY_PATHS)]
    chosen = own or list(frames)
    return chosen[-1] if chosen else None


def failure_note(failure: SectionFailure) -> str:
    return (f'<p class="note section-failed">The section {text(failure.title)} could not be drawn '
            f"({text(failure.error)}); the rest of the report is written.</p>")


@dataclass
class Page:
    title: str
    subtitle: str
    sections: list[Section] = field(default_factory=list)
    failures: list[SectionFailure] = field(default_factory=list)
    _figures: list[tuple[str, str]] = field(default_factory=list)

    def add_section(self, anchor: str, title: str, build: Callable[[], Section]) -> None:
        """Draws one section on its own: one that raises becomes a note naming the error, and the
        sections after it are still drawn (a report is most needed on the runs that break it)."""
        figures_before = len(self._figures)
        try:
            section = build()
        except Exception as error:
            del self._figures[figures_before:]  # the failed section's figures have no place on the page
            failure = describe_failure(title, error)
            self.failures.append(failure)
            section = Section(anchor, title, [failure_note(failure)])
        self.sections.append(section)

    def figure(self, fig: go.Figure, height: int = 360) -> str:
        """A placeholder div for the figure; its JSON goes into the page once, at the end."""
        plot_id = f"plot-{len(self._figures)}"
        fig.update_layout(height=height, margin={"l": 60, "r": 20, "t": 40, "b": 40})
        self._figures.append((plot_id, _json_for_script(pio.to_json(fig, validate=False))))
        return f'<div class="gp-plot" id="{plot_id}"></div>'

    def html(self) -> str:
        nav = "".join(f'<a href="#{s.anchor}">{text(s.title)}</a>' for s in self.sections)
        body = "".join(f'<section id="{s.anchor}"><h2>{text(s.title)}</h2>{"".join(s.blocks)}</section>'
                       for s in self.sections)
        data = "".join(f'<script type="application/json" id="{plot_id}-data">{spec}</script>'
                       for plot_id, spec in self._figures)
        template = _json_for_script(json.dumps(pio.templates[TEMPLATE].to_plotly_json()))
        return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                # No request may leave the file: the policy enforces it in the browser too.
                "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data: blob:; "
                "font-src data:\">"
                f"<title>{text(self.title)}</title><style>{_CSS}</style>"
                f"<script>{get_plotlyjs()}</script></head><body>"
                f"<header><h1>{text(self.title)}</h1><p>{text(self.subtitle)}</p></header>"
                f"<nav>{nav}</nav><main>{body}</main>"
                f'<script type="application/json" id="gp-template">{template}</script>{data}'
                f"<script>{_LOADER}</script></body></html>")
