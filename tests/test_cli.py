"""The command line entry point."""

from __future__ import annotations

import subprocess
import sys


def test_backends_command_lists_cpu_and_reasons():
    out = subprocess.run([sys.executable, "-m", "gradprobe.cli", "backends"], capture_output=True, text=True,
                         check=True).stdout
    assert "cpu    usable" in out and "torch  usable" in out
    if "cuda   usable" not in out:
        assert "cuda   unavailable: " in out


def test_rules_reference_page_is_up_to_date():
    from pathlib import Path

    from gradprobe.cli import rules_markdown

    page = Path(__file__).resolve().parents[1] / "docs" / "rules.md"
    assert page.read_text() == rules_markdown(), "regenerate: gradprobe rules --markdown > docs/rules.md"
