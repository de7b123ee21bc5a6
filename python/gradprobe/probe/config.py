"""Probe configuration: frozen dataclasses, presets by cost, YAML/JSON files; unknown keys are errors."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..profiler import ProfilerConfig
from ..store.config import MAX_SECONDS, ConfigError, StoreConfig, check_fields
from .schedule import Schedule

DISTRIBUTED_MODES: tuple[str, ...] = ("auto", "off", "replicated", "sharded")  # probe/distributed.py

# What a collection measures. Tensor kinds go through the fused kernels; the others are scalars/counts.
TENSOR_KINDS: tuple[str, ...] = ("grad", "weight", "update", "activation")
KINDS: tuple[str, ...] = TENSOR_KINDS + ("input",)
MODES: tuple[str, ...] = ("train", "eval", "predict")
# Statistics backends the probe's native tables can run on (None: the best per device).
PROBE_BACKENDS: tuple[str | None, ...] = (None, "cpu", "cuda", "cupy")


@dataclass(frozen=True)
class Collection:
    """A named selection of tensors (regexes over parameter or module names) and when to measure it.

    schedules: one per mode; a mode absent from the mapping is never measured.
    """

    name: str
    kind: str
    include: tuple[str, ...] = (".*",)
    exclude: tuple[str, ...] = ()
    schedules: Mapping[str, Schedule] = field(default_factory=lambda: {"train": Schedule()})
    histogram: bool = True

    def __post_init__(self) -> None:
        check_fields(self, f"collections.{self.name}")
        if self.kind not in KINDS:
            raise ValueError(f"collection {self.name!r}: unknown kind {self.kind!r} (known: {', '.join(KINDS)})")
        for mode in self.schedules:
            if mode not in MODES:
                raise ValueError(f"collection {self.name!r}: unknown mode {mode!r} (known: {', '.join(MODES)})")
        for pattern in self.include + self.exclude:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"collection {self.name!r}: bad regex {pattern!r}: {error}") from None

    def selects(self, name: str) -> bool:
        return any(re.search(p, name) for p in self.include) and not any(re.search(p, name) for p in self.exclude)

    def due(self, mode: str, step: int) -> bool:
        schedule = self.schedules.get(mode)
        return schedule is not None and schedule.due(step)


def _every(n: int, eval_every: int | None = None, dense_until: int = 0) -> dict[str, Schedule]:
    schedules = {"train": Schedule(every=n, dense_until=dense_until)}
    if eval_every is not None:
        schedules["eval"] = Schedule(every=eval_every)
    return schedules


# The default preset's schedule for weights and updates (see builtin_collections).
WEIGHT_EVERY = 10
DENSE_STEPS = 10


def builtin_collections(preset: str) -> tuple[Collection, ...]:
    """The built-in collections at a preset's cost."""
    if preset == "minimal":
        return (Collection("gradients", "grad", schedules=_every(10, dense_until=10), histogram=False),)
    if preset == "default":
        # Within 2% of the step (bench/RESULTS.md): gradients, with histograms, on every step; the
        # post-step pass (weights and updates: four model-sized memory passes, ~5x a gradient step's
        # cost) on every step of the first DENSE_STEPS and every WEIGHT_EVERY after, on the same
        # steps as activations, so the rules that read weights and updates judge step 0 and the early
        # steps exactly and later ones at most WEIGHT_EVERY - 1 steps late (docs/presets.md). Every
        # 5th step measured 2.0-2.1% with the AVX2 target; every 10th leaves margin on any CPU.
        # Weight histograms cost ~1/4 of that pass and no built-in rule reads them.
        return (
            Collection("gradients", "grad", schedules=_every(1)),
            Collection("weights", "weight", exclude=(r"bias$",),
                       schedules=_every(WEIGHT_EVERY, dense_until=DENSE_STEPS), histogram=False),
            Collection("biases", "weight", include=(r"bias$",),
                       schedules=_every(WEIGHT_EVERY, dense_until=DENSE_STEPS), histogram=False),
            Collection("updates", "update", schedules=_every(WEIGHT_EVERY, dense_until=DENSE_STEPS)),
            Collection("activations", "activation", schedules=_every(10, eval_every=10)),
        )
    if preset == "full":
        return (
            Collection("gradients", "grad", schedules=_every(1)),
            Collection("weights", "weight", exclude=(r"bias$",), schedules=_every(1, eval_every=1)),
            Collection("biases", "weight", include=(r"bias$",), schedules=_every(1, eval_every=1)),
            Collection("updates", "update", schedules=_every(1)),
            Collection("activations", "activation", schedules=_every(1, eval_every=1)),
            Collection("inputs", "input", schedules={"train": Schedule(), "eval": Schedule(), "predict": Schedule()}),
        )
    raise ValueError(f"unknown preset {preset!r} (known: minimal, default, full)")


@dataclass(frozen=True)
class ProbeConfig:
    collections: tuple[Collection, ...] = field(default_factory=lambda: builtin_collections("default"))
    store: StoreConfig = field(default_factory=StoreConfig)
    profiler: ProfilerConfig = field(default_factory=ProfilerConfig)  # docs/profiler.md
    # Which modules' outputs are activations: "leaf" (modules without children) or a regex list.
    activation_modules: tuple[str, ...] = ()
    token_ids: Mapping[str, int] = field(default_factory=dict)  # inputs: e.g. {"pad": 0, "unk": 100}
    backend: str | None = None  # statistics backend (PROBE_BACKENDS); None picks per device
    cpu_threads: int = 0
    preset: str = "default"
    # The consumer queue between the training thread and the consumer thread (probe/consumer.py):
    # at most this many items; when full, the training thread waits at most max_queue_wait_seconds
    # once per stall, then drops items (released unread, counted in meta.json's "dropped").
    max_queued_items: int = 1024
    max_queue_wait_seconds: float = 0.01
    # close() waits at most this long for each of: pending actions (e-mail, webhooks), the consumer
    # thread, the writer thread; what it could not finish is recorded in events.jsonl.
    close_timeout_seconds: float = 5.0
    # Locate the first NaN/Inf on every training step (probe/nonfinite_origin.py; ~free on the CPU,
    # one fused launch per forward on a GPU).
    nonfinite_origin: bool = True
    # Under torch.distributed: "auto", "off", "replicated" (DDP) or "sharded" (FSDP2); see probe/distributed.py.
    distributed: str = "auto"
    # With no `actions` given, findings (warning and above) are said on the `gradprobe` logger as they
    # fire, with a summary at the end (actions.Log); False keeps them in events.jsonl only.
    print_findings: bool = True

    def __post_init__(self) -> None:
        check_fields(self, "", {"cpu_threads": 0, "max_queued_items": 2, "max_queue_wait_seconds": 0.0,
                                "close_timeout_seconds": 0.0},
                     {"max_queue_wait_seconds": MAX_SECONDS, "close_timeout_seconds": MAX_SECONDS})
        if self.distributed not in DISTRIBUTED_MODES:
            raise ValueError(f"distributed {self.distributed!r} is unknown (known: {', '.join(DISTRIBUTED_MODES)})")
        if self.backend not in PROBE_BACKENDS:
            raise ValueError(f"backend {self.backend!r} cannot run the probe (choose from "
                             f"{', '.join(str(b) for b in PROBE_BACKENDS)}; 'torch', the float64 reference, "
                             "reads tensor objects one by one and serves tensor_stats() and the tests)")

    @classmethod
    def from_preset(cls, name: str) -> ProbeConfig:
        return cls(collections=builtin_collections(name), preset=name, profiler=ProfilerConfig.for_preset(name))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeConfig:
        """Keys: preset, collections ({name: {kind, include, exclude, schedule | schedules, histogram,
        enabled}}), store, profiler (ProfilerConfig's fields), activation_modules, token_ids, backend, cpu_threads,
        max_queued_items, max_queue_wait_seconds, close_timeout_seconds, nonfinite_origin, distributed,
        print_findings. Values are
        checked, never coerced."""
        scalars = {"backend", "cpu_threads", "max_queued_items", "max_queue_wait_seconds", "close_timeout_seconds",
                   "nonfinite_origin", "distributed", "print_findings"}
        known = {"preset", "collections", "store", "profiler", "activation_modules", "token_ids"} | scalars
        _reject_unknown(data, known, "config")
        preset = data.get("preset", "default")
        if not isinstance(preset, str):
            raise ConfigError(f"preset: {preset!r} is a {type(preset).__name__}, expected a str")
        collections = {c.name: c for c in builtin_collections(preset)}
        specs = _mapping(data.get("collections") or {}, "collections")
        for name, spec in specs.items():
            where = f"collections.{name}"
            spec = dict(_mapping(spec or {}, where))
            _reject_unknown(spec, {"kind", "include", "exclude", "schedule", "schedules", "histogram", "enabled"},
                            where)
            enabled = spec.pop("enabled", True)
            if not isinstance(enabled, bool):
                raise ConfigError(f"{where}.enabled: {enabled!r} is a {type(enabled).__name__}, expected a bool")
            if not enabled:
                collections.pop(name, None)
                continue
            base = collections.get(name)
            if base is None and "kind" not in spec:
                raise ConfigError(f"{where}: a new collection needs a 'kind' ({', '.join(KINDS)})")
            schedules = base.schedules if base else {"train": Schedule()}
            try:
                if "schedule" in spec:
                    schedules = {"train": Schedule.from_value(spec.pop("schedule"))}
                if "schedules" in spec:
                    schedules = {mode: Schedule.from_value(v)
                                 for mode, v in _mapping(spec.pop("schedules"), f"{where}.schedules").items()}
            except ValueError as error:
                raise ConfigError(f"{where}.{error}") from None
            collections[name] = Collection(
                name=name,
                kind=spec.get("kind", base.kind if base else ""),
                include=_as_tuple(spec.get("include", base.include if base else (".*",)), f"{where}.include"),
                exclude=_as_tuple(spec.get("exclude", base.exclude if base else ()), f"{where}.exclude"),
                schedules=schedules,
                histogram=spec.get("histogram", base.histogram if base else True),
            )
        store = _mapping(data.get("store") or {}, "store")
        _reject_unknown(store, {f.name for f in dataclasses.fields(StoreConfig)}, "store")
        return cls(
            collections=tuple(collections.values()),
            store=StoreConfig(**store),
            profiler=ProfilerConfig.from_dict(data.get("profiler") or {}, ProfilerConfig.for_preset(preset)),
            activation_modules=_as_tuple(data.get("activation_modules", ()), "activation_modules"),
            token_ids=dict(_mapping(data.get("token_ids", {}), "token_ids")),
            preset=preset,
            **{key: data[key] for key in scalars if key in data},
        )

    @classmethod
    def from_file(cls, path: str | Path) -> ProbeConfig:
        """A YAML (.yaml/.yml) or JSON file with the keys of from_dict."""
        path = Path(path)
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise ConfigError(f"{path}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (written to meta.json)."""
        return {
            "preset": self.preset,
            "collections": {c.name: {"kind": c.kind, "include": list(c.include), "exclude": list(c.exclude),
                                     "schedules": {m: dataclasses.asdict(s) for m, s in c.schedules.items()},
                                     "histogram": c.histogram} for c in self.collections},
            "store": dataclasses.asdict(self.store),
            "profiler": self.profiler.to_dict(),
            "activation_modules": list(self.activation_modules),
            "token_ids": dict(self.token_ids),
            "backend": self.backend,
            "cpu_threads": self.cpu_threads,
            "max_queued_items": self.max_queued_items,
            "max_queue_wait_seconds": self.max_queue_wait_seconds,
            "close_timeout_seconds": self.close_timeout_seconds,
            "nonfinite_origin": self.nonfinite_origin,
            "distributed": self.distributed,
            "print_findings": self.print_findings,
        }


def resolve_config(config: ProbeConfig | str | Path | Mapping[str, Any] | None) -> ProbeConfig:
    """A ProbeConfig from what users pass: None (default preset), a preset name, a file, a mapping."""
    if config is None:
        return ProbeConfig()
    if isinstance(config, ProbeConfig):
        return config
    if isinstance(config, Mapping):
        return ProbeConfig.from_dict(config)
    if isinstance(config, str) and config in ("minimal", "default", "full"):
        return ProbeConfig.from_preset(config)
    return ProbeConfig.from_file(config)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: {value!r} is a {type(value).__name__}, expected a mapping")
    return value


def _as_tuple(value: Any, where: str) -> tuple[Any, ...]:
    """A YAML/JSON list as a tuple; a string is refused (it would become a tuple of characters)."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where}: {value!r} is a {type(value).__name__}, expected a list")
    return tuple(value)


def _reject_unknown(data: Mapping[str, Any], known: set[str], where: str) -> None:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: {data!r} is a {type(data).__name__}, expected a mapping")
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
