"""The rule engine: evaluates rules as each step's statistics arrive (on the consumer thread, never
the training thread), de-duplicates findings, writes them to events.jsonl, and hands them to the
actions. The same engine replays a stored run offline (`check_run`, `gradprobe check`)."""

from __future__ import annotations

import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

from ..probe.consumer import ScalarRecord, StatsRecord
from ..stats import Stats
from .base import Finding, Rule, Severity
from .registry import default

if TYPE_CHECKING:
    from ..probe.probe import Probe


class RuleEngine:
    """Observer of a probe's consumer. Thread-safe; findings are kept in order in `findings`."""

    def __init__(self, rules: Iterable[Rule] | None = None, actions: Iterable[Any] | None = None,
                 probe: "Probe | None" = None, repeat_after: int = 1_000_000, tick_seconds: float | None = None,
                 stop_check_every: int | None = None) -> None:
        self.rules: list[Rule] = list(rules) if rules is not None else default()
        self.probe = probe
        self.findings: list[Finding] = []
        self.repeat_after = repeat_after  # a repeated finding is reported again only after this many steps
        self._seen: dict[tuple, int] = {}
        self._lock = threading.Lock()
        self._stop_reason: str | None = None
        self._last_step_time: float | None = None
        self._last_step = (0, "train")
        # Across ranks the stop decision is an all-reduce on the same steps of every rank: every step
        # under gloo (a few microseconds), every 50 under NCCL (reading its result waits for the GPU).
        self.stop_check_every = stop_check_every
        self._give_shapes()
        from ..actions.runner import ActionRunner

        self.runner = ActionRunner(list(actions or ()), self._record_event, self)
        self._closed = threading.Event()
        self._tick = None
        periods = [getattr(r, "threshold", 0) for r in self.rules if type(r).__name__ == "StalledTraining"]
        if periods and probe is not None:
            interval = tick_seconds or max(0.05, min(30.0, min(periods) / 10))
            self._tick = threading.Thread(target=self._tick_loop, args=(interval,), name="gradprobe-clock", daemon=True)
            self._tick.start()

    # -- observer interface (consumer thread) ----------------------------------------------------
    def on_stats(self, record: StatsRecord) -> None:
        self._run("on_stats", record)

    def on_scalars(self, record: ScalarRecord) -> None:
        self._run("on_scalars", record)

    def on_inputs(self, step: int, mode: str, counts: Mapping[str, int], total: int) -> None:
        self._run("on_inputs", step, mode, counts, total)

    def on_predictions(self, step: int, mode: str, labels: np.ndarray, predictions: np.ndarray) -> None:
        self._run("on_predictions", step, mode, labels, predictions)

    # -- training thread --------------------------------------------------------------------------
    def after_step(self, probe: "Probe") -> None:
        """Called by the probe at the end of each step: applies a requested stop on every rank alike."""
        self._last_step_time = time.time()
        self._last_step = (probe.current_step(), probe.mode)
        reason = self._stop_reason
        if probe.world_size > 1:
            every = self.stop_check_every or (50 if _backend() == "nccl" else 1)
            if (probe.current_step("train") + 1) % every:
                return
            reason = _agree_on_stop(reason)
        if reason is not None and not probe._should_stop:
            probe.stop(reason)

    def request_stop(self, reason: str) -> None:
        """StopTraining calls this (from the consumer thread); the training thread applies it."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def close(self, timeout: float = 30.0) -> None:
        self._closed.set()
        if self._tick is not None:
            self._tick.join(timeout)
        self.runner.close(timeout)

    # -- internals ----------------------------------------------------------------------------------
    def _give_shapes(self) -> None:
        if self.probe is None:
            return
        shapes = {name: tuple(p.shape) for name, p in zip(self.probe._names, self.probe._params)}
        types = {name: type(m).__name__ for name, m in self.probe.model.named_modules() if name}
        give_model_facts(self.rules, shapes, types)

    def _run(self, method: str, *args: Any) -> list[Finding]:
        new: list[Finding] = []
        for rule in self.rules:
            try:
                produced = getattr(rule, method)(*args) or []
            except Exception:
                self._record_event({"type": "rule_error", "rule": rule.name, "error": traceback.format_exc(limit=3)})
                warnings.warn(f"gradprobe: rule {rule.name} failed and was skipped:\n{traceback.format_exc(limit=3)}",
                              RuntimeWarning, stacklevel=2)
                continue
            for finding in produced:
                if self._is_new(finding):
                    new.append(finding)
        for finding in new:
            self._record_event(finding.to_event())
            self.runner.submit(finding)
        return new

    def _is_new(self, finding: Finding) -> bool:
        with self._lock:
            last = self._seen.get(finding.key)
            if last is not None and finding.step - last < self.repeat_after:
                return False
            self._seen[finding.key] = finding.step
            self.findings.append(finding)
            return True

    def _record_event(self, event: dict[str, Any]) -> None:
        if self.probe is not None:
            self.probe._writer.event(event)

    def _tick_loop(self, interval: float) -> None:
        while not self._closed.wait(interval):
            step, mode = self._last_step
            self._run("on_tick", time.time(), self._last_step_time, step, mode)


def give_model_facts(rules: list[Rule], shapes: Mapping[str, tuple], types: Mapping[str, str]) -> None:
    """Rules that need parameter shapes or module types get them unless given explicitly."""
    for rule in rules:
        if hasattr(rule, "shapes") and not rule.shapes:
            rule.shapes = dict(shapes)
        if hasattr(rule, "module_types") and not rule.module_types:
            rule.module_types = dict(types)


def _backend() -> str:
    import torch.distributed as dist

    return str(dist.get_backend())


def _agree_on_stop(reason: str | None) -> str | None:
    """Every rank stops on the same step: the stop flag is reduced (max) across ranks."""
    import torch
    import torch.distributed as dist

    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    flag = torch.tensor([1 if reason is not None else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if int(flag.item()) and reason is None:
        return "stop requested by another rank"
    return reason


def check_run(path: str | Path, rules: Iterable[Rule] | None = None) -> list[Finding]:
    """Replays a stored run through the rules, in the order it was recorded; returns the findings.

    The order of (mode, step) groups follows the time their scalars were recorded (so train and
    eval interleave as they did live); within a step: activations, gradients, weights, updates,
    scalars, inputs, as the probe records them.
    """
    from ..store import open_run

    run = open_run(path)
    engine = RuleEngine(list(rules) if rules is not None else default())
    shapes = {p["name"]: tuple(p["shape"]) for p in run.meta.get("parameters", [])}
    types = {m["name"]: m["type"] for m in run.meta.get("model", {}).get("modules", []) if m["name"] != "model"}
    give_model_facts(engine.rules, shapes, types)
    stats = run.table("stats").to_pandas()
    scalars = run.table("scalars").to_pandas()
    inputs = run.table("inputs").to_pandas()
    times = scalars.groupby(["mode", "step"])["time"].min().to_dict()
    keys = set(zip(stats["mode"], stats["step"])) | set(times) | set(zip(inputs["mode"], inputs["step"]))
    order = sorted(keys, key=lambda k: (times.get(k, float("inf")), k[1], k[0]))
    kind_order = {"activation": 0, "grad": 1, "weight": 2, "update": 3}
    stats_groups = {k: g for k, g in stats.groupby(["mode", "step"])} if len(stats) else {}
    scalar_groups = {k: g for k, g in scalars.groupby(["mode", "step"])} if len(scalars) else {}
    input_groups = {k: g for k, g in inputs.groupby(["mode", "step"])} if len(inputs) else {}
    from ..stats._layout import HIST_BINS
    from ..store.schema import STAT_COLUMNS, expand_hist
    import pyarrow as pa

    for mode, step in order:
        group = stats_groups.get((mode, step))
        if group is not None:
            for kind, rows in sorted(group.groupby("kind"), key=lambda kv: kind_order.get(kv[0], 9)):
                table = rows[list(STAT_COLUMNS)].to_numpy(dtype=np.float64)
                hist = None
                if rows["hist"].notna().any():
                    lists = pa.array([list(h) if h is not None else None for h in rows["hist"]], pa.list_(pa.int64()))
                    hist = expand_hist(rows["hist_lo"].fillna(0).to_numpy(), lists, HIST_BINS)
                ratio = rows["ratio"].to_numpy(dtype=np.float64) if rows["ratio"].notna().any() else None
                engine.on_stats(StatsRecord(int(step), mode, kind, rows["tensor"].tolist(),
                                            rows["present"].to_numpy(), Stats.from_table(table, hist), ratio))
        group = scalar_groups.get((mode, step))
        if group is not None:
            engine.on_scalars(ScalarRecord(int(step), mode, dict(zip(group["name"], group["value"])),
                                           float(group["time"].min())))
        group = input_groups.get((mode, step))
        if group is not None:
            engine.on_inputs(int(step), mode, dict(zip(group["token"], group["count"])), int(group["total"].iloc[0]))
    engine.close()
    return engine.findings


def findings_in_run(path: str | Path) -> list[Finding]:
    """The findings recorded live in a run's events.jsonl."""
    from ..store import open_run

    return [Finding.from_event(e) for e in open_run(path).events("finding")]


def at_least(findings: Iterable[Finding], severity: Severity | str) -> list[Finding]:
    level = Severity.parse(severity)
    return [f for f in findings if f.severity >= level]
