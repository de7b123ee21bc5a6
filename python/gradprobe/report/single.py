"""The report of one run."""

from __future__ import annotations

from .data import RunData
from .page import Page
from .summary import summary_section
from .system import phases_section, profiler_findings_section, system_section
from .tensors import activations_section, histograms_section, layers_section
from .training import findings_section, losses_section


def run_page(data: RunData) -> Page:
    meta = data.run.meta
    page = Page(f"gradprobe report: {data.name}",
                f"{meta.get('model', {}).get('type', '?')} · status {data.run.status} · {len(data.findings)} findings")
    numerical = [f for f in data.findings if not f.doc.profiler]
    page.sections = [
        summary_section(data),
        findings_section(page, numerical, scalar_names=frozenset(data.scalars["name"].unique())),
        losses_section(page, data),
        layers_section(page, data),
        histograms_section(page, data),
        activations_section(page, data),
        system_section(page, data),
        phases_section(page, data),
        profiler_findings_section(page, data),
    ]
    return page
