"""The report of one run."""

from __future__ import annotations

from .data import RunData
from .page import Page
from .summary import model_type, summary_section
from .system import phases_section, profiler_findings_section, system_section
from .tensors import activations_section, histograms_section, layers_section
from .training import findings_section, losses_section


def run_page(data: RunData) -> Page:
    """Each section is drawn on its own (Page.add_section): one that fails becomes a note."""
    page = Page(f"gradprobe report: {data.name}",
                f"{model_type(data.run.meta)} · status {data.run.status} · {len(data.findings)} findings")
    numerical = [f for f in data.findings if not f.doc.profiler]
    page.add_section("summary", "Summary", lambda: summary_section(data))
    page.add_section("findings", "Findings", lambda: findings_section(
        page, numerical, scalar_names=frozenset(data.scalars["name"].unique())))
    page.add_section("losses", "Losses and metrics", lambda: losses_section(page, data))
    page.add_section("layers", "Layers: gradient and weight norms, update ratio", lambda: layers_section(page, data))
    page.add_section("histograms", "Magnitude histograms", lambda: histograms_section(page, data))
    page.add_section("activations", "Activation health and non-finite origins", lambda: activations_section(page, data))
    page.add_section("system", "System utilisation", lambda: system_section(page, data))
    page.add_section("phases", "Step phases", lambda: phases_section(page, data))
    page.add_section("profiler", "Profiler findings", lambda: profiler_findings_section(page, data))
    return page
