"""Progress without a bar (--no-progress, output not a terminal): a line at each further tenth of the
steps, and at least every 30 seconds, never silence."""

from __future__ import annotations

import re

from gradprobe.workflows.progress import LINE_EVERY_SECONDS, TrainingProgress

LINE = re.compile(r"training: step (\d+)/(\d+) \((\d+)%\)  loss 0\.5000  [\d.]+ samples/s  elapsed \d:\d\d:\d\d  "
                  r"eta \d:\d\d:\d\d")


def _steps_with_a_line(total: int, seconds_per_step: float) -> list[int]:
    now = [0.0]
    lines: list[str] = []
    with TrainingProgress(total, "training", lines.append, show=False, clock=lambda: now[0]) as progress:
        for _ in range(total):
            now[0] += seconds_per_step
            progress.advance(0.5, samples=8)
    assert all(LINE.fullmatch(line) for line in lines), lines
    return [int(LINE.fullmatch(line).group(1)) for line in lines]  # type: ignore[union-attr]


def test_fast_steps_get_a_line_every_tenth_of_the_run():
    assert _steps_with_a_line(50, seconds_per_step=0.1) == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50]
    assert _steps_with_a_line(25, seconds_per_step=0.1) == [3, 5, 8, 10, 13, 15, 18, 20, 23, 25]
    assert _steps_with_a_line(4, seconds_per_step=0.1) == [1, 2, 3, 4]  # fewer steps than tenths: each step


def test_slow_steps_get_a_line_at_least_every_30_seconds():
    steps = _steps_with_a_line(100, seconds_per_step=LINE_EVERY_SECONDS / 3)
    assert steps == sorted(set(steps)) and steps[-1] == 100
    assert all(later - earlier <= 3 for earlier, later in zip([0, *steps], steps))
    assert {10, 20, 30} <= set(steps) and 11 not in steps  # the tenths, and only what the clock adds


def test_notes_and_lines_go_to_the_log_in_order():
    lines: list[str] = []
    with TrainingProgress(2, "fine-tuning", lines.append, show=False) as progress:
        progress.advance(1.25, 4)
        progress.note("step    1  validation loss 1.0")
        progress.advance(1.0, 4)
    assert [line.split(":")[0] for line in lines] == ["fine-tuning", "step    1  validation loss 1.0", "fine-tuning"]
    assert lines[0].startswith("fine-tuning: step 1/2 (50%)  loss 1.2500")
    assert lines[2].startswith("fine-tuning: step 2/2 (100%)  loss 1.0000")
