"""Rules over the profiler's step timing: step-phase outliers, the data loader, initialisation
time, and balance across ranks (PhaseRecord, LoaderRecord, StartupRecord, RanksRecord)."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..records import LoaderRecord, PhaseRecord, RanksRecord, StartupRecord
from .base import Finding, Rule

# The phases a step is split into; "other" is the step's time outside every measured phase (the
# training loop's own code). gradprobe's time is left out: it includes waiting for other ranks.
TIMED_PHASES: tuple[str, ...] = ("data_wait", "forward", "backward", "optimizer")


def phase_values(record: PhaseRecord) -> dict[str, float]:
    """The record's measured phases plus "other" (total minus the measured phases and gradprobe)."""
    values = {p: record.phases[p] for p in TIMED_PHASES if not math.isnan(record.phases.get(p, math.nan))}
    total = record.phases.get("total", math.nan)
    if not math.isnan(total):
        own = record.phases.get("gradprobe", math.nan)
        values["other"] = max(0.0, total - sum(values.values()) - (0.0 if math.isnan(own) else own))
    return values


@dataclass
class StepOutlier(Rule):
    """Steps much slower than usual, per phase: a phase took longer than its mean + `stddev`
    standard deviations (and at least `min_excess_seconds` more than its mean) more than
    `n_outliers` times; the finding names the phase (data_wait, forward, backward, optimizer, or
    other: the loop's own code outside them).

    Why: a periodic slow step (a checkpoint, an evaluation, garbage collection, a stalled worker)
    costs its share of every run and is invisible in averages.
    Try: look at what runs every N steps in that phase; capture those steps with profile_steps.
    Defaults: SageMaker's (stddev 3, n_outliers 10); the mean and deviation are over the latest
    `window` steps that were not outliers, after `patience` warm-up steps. Not in default(): on a
    shared machine, scheduling hiccups are outliers too.
    """

    code = "GP206"
    stddev: float = 3.0
    n_outliers: int = 10
    min_excess_seconds: float = 0.01
    window: int = 1000
    patience: int = 10
    _seen: int = 0
    _windows: dict[str, deque[float]] = field(default_factory=dict)
    _outliers: dict[str, int] = field(default_factory=dict)

    def on_phases(self, record: PhaseRecord) -> list[Finding]:
        self._seen += 1
        if self._seen <= self.patience:  # warm-up: the first steps compile, allocate, fill caches
            return []
        found = []
        for phase, value in phase_values(record).items():
            window = self._windows.setdefault(phase, deque(maxlen=self.window))
            if len(window) >= 10:
                mean, std = float(np.mean(window)), float(np.std(window))
                if value > mean + self.stddev * std and value - mean > self.min_excess_seconds:
                    count = self._outliers.get(phase, 0) + 1
                    self._outliers[phase] = count
                    if count > self.n_outliers:
                        self._outliers[phase] = 0
                        found.append(self.finding(record.step, record.mode, f"step outliers in {phase}: {count} steps "
                                                  f"took longer than mean + {self.stddev:g} sd ({mean * 1e3:.1f} ms "
                                                  f"+ {self.stddev:g} x {std * 1e3:.1f} ms); the last, step "
                                                  f"{record.step}, {value * 1e3:.1f} ms. Next: look at what runs "
                                                  f"every few steps in {phase}; capture it with profile_steps",
                                                  (phase,), seconds=value, mean_seconds=mean, std_seconds=std))
                    continue  # keep the baseline free of outliers
            window.append(value)
        return found


@dataclass
class Dataloader(Rule):
    """The data loader holds training back: the share of step time spent waiting for batches is
    above `wait_threshold` over `window` steps (with the worker count, if below `min_threshold`
    percent of this rank's cores, named as the likely cause); or it has more workers than
    `max_threshold` percent of the cores; or pin_memory is off while training on a GPU.

    Why: the accelerator idles while the loader prepares the next batch.
    Typical causes: num_workers=0 with costly __getitem__, slow storage, too many workers
    thrashing the CPU, pageable host memory slowing host-to-device copies.
    Try: num_workers near the cores per rank, pin_memory=True, persistent_workers=True, a larger
    prefetch_factor. Defaults: SageMaker's (min_threshold 70 %, max_threshold 200 % of cores);
    the worker count alone is not reported below min_threshold (num_workers=0 is fine when nothing
    waits for it), only with a high wait share.
    """

    code = "GP207"
    wait_threshold: float = 0.2
    min_threshold: float = 70.0
    max_threshold: float = 200.0
    window: int = 50
    patience: int = 5
    _seen: int = 0
    _waits: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    _totals: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    _loader: dict[str, float] = field(default_factory=dict)

    def on_loader(self, record: LoaderRecord) -> list[Finding]:
        cores = max(1.0, record.cpus / max(1, record.local_ranks))
        self._loader = {"num_workers": record.num_workers, "cores": cores}
        found = []
        if record.num_workers > cores * self.max_threshold / 100:
            found.append(self.finding(record.step, record.mode, f"num_workers={record.num_workers} is more than "
                                      f"{self.max_threshold:g}% of the {cores:g} cores per rank: workers compete "
                                      "for the CPU. Next: num_workers near the cores per rank", ("num_workers",),
                                      num_workers=record.num_workers, cores=cores))
        if record.cuda and not record.pin_memory:
            found.append(self.finding(record.step, record.mode, "pin_memory=False while training on a GPU: "
                                      "host-to-device copies of each batch go through pageable memory. Next: "
                                      "DataLoader(..., pin_memory=True)", ("pin_memory",)))
        return found

    def on_phases(self, record: PhaseRecord) -> list[Finding]:
        wait, total = record.phases.get("data_wait", math.nan), record.phases.get("total", math.nan)
        self._seen += 1
        if math.isnan(wait) or math.isnan(total) or self._seen <= self.patience:
            return []
        self._waits.append(wait)
        self._totals.append(total)
        if len(self._waits) < self.window:
            return []
        share = sum(self._waits) / max(sum(self._totals), 1e-12)
        self._waits.clear()
        self._totals.clear()
        if share <= self.wait_threshold:
            return []
        workers, cores = self._loader.get("num_workers"), self._loader.get("cores", 1.0)
        hint = ""
        if workers is not None and workers < cores * self.min_threshold / 100:
            hint = f" num_workers={workers:g} on {cores:g} cores per rank: more workers would prepare batches ahead."
        return [self.finding(record.step, record.mode, f"the data loader holds training back: {share:.0%} of step "
                             f"time was spent waiting for batches over the last {self.window} steps.{hint} Next: more "
                             "workers, pin_memory, prefetch_factor, faster storage or pre-processing",
                             ("data_wait",), wait_share=share)]


@dataclass
class MaxInitializationTime(Rule):
    """The first step ended more than `threshold` seconds after the process started.

    Why: long initialisation (downloads, data set preparation, compilation) is paid by every
    restart and every job in a sweep. Try: cache pre-processed data and downloads, compile once.
    Defaults: SageMaker's (20 minutes).
    """

    code = "GP208"
    threshold: float = 1200.0

    def on_startup(self, record: StartupRecord) -> list[Finding]:
        if record.seconds <= self.threshold:
            return []
        return [self.finding(record.step, record.mode, f"the first step ended {record.seconds:.0f} s after the process "
                             f"started (> {self.threshold:g} s). Next: cache downloads and pre-processed data",
                             ("init",), seconds=record.seconds)]


def js_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2, 0..1) between two histograms of counts."""
    p, q = a / max(a.sum(), 1), b / max(b.sum(), 1)
    mid = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        keep = x > 0
        return float(np.sum(x[keep] * np.log2(x[keep] / mid[keep])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


@dataclass
class LoadBalancing(Rule):
    """Work is unbalanced across ranks or GPUs: the Jensen-Shannon distance between two devices'
    utilisation histograms is above `threshold`, or one rank's mean time in a phase is more than
    `skew_threshold` times the fastest rank's (and `min_skew_seconds` longer); the finding names
    the phase with the largest ratio and its slow rank (under DDP the fast ranks wait for the slow
    one inside their backward, which raises their backward by less than the slow phase's ratio).
    Judged every time the ranks exchange their summaries
    (ProfilerConfig.exchange_every steps).

    Why: every synchronised step waits for the slowest rank; the others idle.
    Typical causes: uneven data shards or sequence lengths, a slower GPU or host, a rank that also
    does logging or checkpointing.
    Try: balance the shards (bucket by length), move rank-0 extras off the step, check the hosts.
    Defaults: SageMaker's threshold 0.5; skew_threshold 1.5 is gradprobe's.
    """

    code = "GP209"
    threshold: float = 0.5
    skew_threshold: float = 1.5
    min_skew_seconds: float = 0.001

    def on_ranks(self, record: RanksRecord) -> list[Finding]:
        found = []
        skews = []
        for phase in TIMED_PHASES:
            means = {rank: values[phase] for rank, values in record.phase_means.items()
                     if not math.isnan(values.get(phase, math.nan))}
            if len(means) < 2:
                continue
            slow, fast = max(means, key=means.__getitem__), min(means, key=means.__getitem__)
            if means[slow] - means[fast] > self.min_skew_seconds and means[slow] > self.skew_threshold * means[fast]:
                skews.append((means[slow] / max(means[fast], 1e-9), phase, slow, fast, means))
        if skews:
            _, phase, slow, fast, means = max(skews)
            found.append(self.finding(record.step, record.mode, f"rank {slow} is slower in {phase}: "
                                      f"{means[slow] * 1e3:.1f} ms per step against {means[fast] * 1e3:.1f} ms on "
                                      f"rank {fast}. Next: balance the data across ranks; look at what rank {slow} "
                                      "does more", (phase, f"rank{slow}"), slow_rank=slow,
                                      slow_seconds=means[slow], fast_seconds=means[fast]))
        devices = sorted(record.utilization)
        worst = (0.0, "", "")
        for i, a in enumerate(devices):
            for b in devices[i + 1:]:
                distance = js_distance(np.asarray(record.utilization[a], float),
                                       np.asarray(record.utilization[b], float))
                worst = max(worst, (distance, a, b))
        if worst[0] > self.threshold:
            found.append(self.finding(record.step, record.mode, f"{worst[1]} and {worst[2]} are unevenly used "
                                      f"(utilisation histograms {worst[0]:.2f} apart > {self.threshold:g}). Next: "
                                      "balance the work across devices", (worst[1], worst[2]), distance=worst[0]))
        return found
