"""open_run(): read a run directory, finished or still being written (closed parts only)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..records import (
    InputRecord,
    LoaderRecord,
    ModelFacts,
    PhaseRecord,
    Record,
    ScalarRecord,
    StartupRecord,
    StatsRecord,
    SystemRecord,
)
from ..stats import HIST_BINS, Stats, hist_edges
from .ownership import live_writers
from .schema import EVENTS_FILE, META_FILE, PART_GLOB, PHASE_COLUMNS, SCHEMAS, STAT_COLUMNS, expand_hist, upgrade


class RunCorruptError(ValueError):
    """A run directory's meta.json cannot be read; the message names the file and the problem."""


class Run:
    """A run directory. Every call re-reads the closed parts, so a live run shows new steps.

    Parts that cannot be read (truncated, garbage, empty, another schema) are skipped with one
    warning each and listed in `unreadable` (path -> reason); nothing is skipped silently.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        meta_path = self.path / META_FILE
        if not meta_path.exists():
            raise FileNotFoundError(f"{self.path} is not a gradprobe run (no {META_FILE})")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            raise RunCorruptError(f"{meta_path} cannot be read: {error}") from None
        if not isinstance(meta, dict):
            raise RunCorruptError(f"{meta_path} holds {type(meta).__name__}, not a JSON object")
        self.meta: dict[str, Any] = meta
        self.unreadable: dict[Path, str] = {}
        self.unreadable_event_lines = 0

    @property
    def status(self) -> str:
        """meta.json's status, except that a run marked running whose writers are all gone is "killed"."""
        status = str(self.meta.get("status", "unknown"))
        if status == "running" and live_writers(self.path) == 0:
            return "killed"
        return status

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def report(self, out: str | Path | None = None) -> Path:
        """Writes the run's HTML report (default: <run>/report.html); gradprobe.report.write_report."""
        from ..report import write_report  # the report sits above the store: loaded only when asked for

        return write_report(self, out)

    # -- raw tables ---------------------------------------------------------------------------
    def parts(self, table: str) -> list[Path]:
        return sorted((self.path / table).glob(f"rank*/{PART_GLOB}"))

    def table(self, name: str) -> pa.Table:
        """Every closed part of a table, upgraded to the current schema, rank column added."""
        tables = []
        for part in self.parts(name):
            try:
                data = self._read_part(part, name)
            except FileNotFoundError:
                continue  # removed between listing and reading (an overwrite): not corruption
            except (OSError, ValueError, KeyError, pa.ArrowException) as error:
                self._skip(part, f"{type(error).__name__}: {error}")
                continue
            rank = int(part.parent.name.removeprefix("rank"))
            tables.append(data.append_column("rank", pa.array(np.full(data.num_rows, rank, np.int32))))
        if not tables:
            empty = SCHEMAS[name].empty_table()
            return empty.append_column("rank", pa.array([], pa.int32()))
        return pa.concat_tables(tables)

    def _read_part(self, part: Path, name: str) -> pa.Table:
        data = pq.read_table(part)
        version = int((data.schema.metadata or {}).get(b"gradprobe_schema", b"1"))
        data = upgrade(data, version, name).replace_schema_metadata(None)
        expected = SCHEMAS[name]
        missing = [field.name for field in expected if field.name not in data.column_names]
        if missing:
            raise ValueError(f"not a gradprobe {name} part: columns {', '.join(missing)} are missing")
        return data.select(expected.names).cast(expected)

    def _skip(self, part: Path, reason: str) -> None:
        if part not in self.unreadable:
            self.unreadable[part] = reason
            warnings.warn(f"gradprobe: skipped an unreadable part of {self.path}: {part.relative_to(self.path)} "
                          f"({reason})", RuntimeWarning, stacklevel=3)

    def check_readable(self) -> dict[Path, str]:
        """Reads every part once and returns those that could not be read (path -> reason)."""
        for name in SCHEMAS:
            self.table(name)
        self.events()
        return dict(self.unreadable)

    # -- views ----------------------------------------------------------------------------------
    def stats(self, kind: str | None = "grad", names: Iterable[str] | None = None,
              stats: Sequence[str] | None = None, mode: str | None = None) -> pd.DataFrame:
        """Long form: step, mode, tensor, kind, present, one column per statistic."""
        frame = self._stats_frame(kind, names, mode)
        keep = ["step", "mode", "tensor", "kind", "present", "rank"] + list(stats or STAT_COLUMNS) + ["ratio"]
        unknown = [s for s in (stats or ()) if s not in STAT_COLUMNS]
        if unknown:
            raise ValueError(f"unknown statistic {unknown[0]!r} (known: {', '.join(STAT_COLUMNS)})")
        result: pd.DataFrame = frame[keep].reset_index(drop=True)
        return result

    def hist(self, kind: str = "grad", names: Iterable[str] | None = None, mode: str | None = None
             ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """(rows, counts, edges): rows as in stats(), counts (n, HIST_BINS), the bin edges."""
        frame = self._stats_frame(kind, names, mode)
        lists = pa.array(list(frame["hist"]) if len(frame) else [], pa.list_(pa.int64()))
        counts = expand_hist(frame["hist_lo"].fillna(0).to_numpy(), lists, HIST_BINS)
        rows = frame[["step", "mode", "tensor", "kind", "rank"]].reset_index(drop=True)
        return rows, counts, hist_edges().copy()

    def scalars(self, names: Iterable[str] | None = None, mode: str | None = None) -> pd.DataFrame:
        frame: pd.DataFrame = self.table("scalars").to_pandas()
        if names is not None:
            frame = frame[frame["name"].isin(list(names))]
        if mode is not None:
            frame = frame[frame["mode"] == mode]
        result: pd.DataFrame = frame.sort_values(["step", "name"], kind="stable").reset_index(drop=True)
        return result

    def inputs(self) -> pd.DataFrame:
        frame: pd.DataFrame = self.table("inputs").to_pandas()
        return frame

    def system(self, metrics: Iterable[str] | None = None) -> pd.DataFrame:
        """System samples, long form: time, node, rank, device, metric, value (sorted by time)."""
        frame: pd.DataFrame = self.table("system").to_pandas()
        if metrics is not None:
            frame = frame[frame["metric"].isin(list(metrics))]
        result: pd.DataFrame = frame.sort_values(["time", "rank"], kind="stable").reset_index(drop=True)
        return result

    def phases(self, mode: str | None = None) -> pd.DataFrame:
        """Step phases: step, mode, node, rank, time, one column of seconds per phase."""
        frame: pd.DataFrame = self.table("phases").to_pandas()
        if mode is not None:
            frame = frame[frame["mode"] == mode]
        result: pd.DataFrame = frame.sort_values(["step", "rank"], kind="stable").reset_index(drop=True)
        return result

    def steps(self, mode: str | None = "train") -> np.ndarray:
        steps = set()
        for name in ("stats", "scalars"):
            frame = self.table(name).select(["step", "mode"]).to_pandas()
            if mode is not None:
                frame = frame[frame["mode"] == mode]
            steps.update(frame["step"].tolist())
        return np.array(sorted(steps), dtype=np.int64)

    def tensors(self, kind: str | None = None) -> list[str]:
        """Tensor names in model order (meta.json), falling back to the stored names."""
        params = [p["name"] for p in self.meta.get("parameters", [])]
        stored = self.table("stats").select(["tensor", "kind"]).to_pandas()
        if kind is not None:
            stored = stored[stored["kind"] == kind]
        present = set(stored["tensor"])
        ordered = [n for n in params if n in present]
        return ordered + sorted(present - set(ordered))

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        path = self.path / EVENTS_FILE
        if not path.exists():
            return []
        records = []
        bad = 0
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                bad += 1  # a line cut by a crash, or garbage: counted, not fatal
                continue
            if not isinstance(record, dict):
                bad += 1
                continue
            if type is None or record.get("type") == type:
                records.append(record)
        self.unreadable_event_lines = bad
        return records

    def ranks(self) -> pd.DataFrame:
        """Where each rank ran: rank, local_rank, world_size, node, distributed mode (from each
        session's start event; join on `rank` with any table). One row per rank and session."""
        columns = ["rank", "local_rank", "world_size", "node", "distributed"]
        rows = [{c: e.get(c) for c in columns} for e in self.events("start")]
        result: pd.DataFrame = pd.DataFrame(rows, columns=columns)
        return result

    def facts(self) -> ModelFacts:
        """Parameter shapes and module types, from meta.json."""
        shapes = {p["name"]: tuple(p["shape"]) for p in self.meta.get("parameters", [])}
        types = {m["name"]: m["type"] for m in self.meta.get("model", {}).get("modules", []) if m["name"] != "model"}
        return ModelFacts(shapes, types)

    def records(self) -> Iterator[Record]:
        """The run as the rules saw it live: its ModelFacts, then every step's records in the order
        they were recorded (for `RuleEngine(rules).replay(run.records())`).

        The order of (mode, step) groups follows the time their scalars were recorded (so train and
        eval interleave as they did live); within a step: activations, gradients, weights, updates,
        scalars, inputs, as the probe records them. The profiler's records (system samples, step
        phases, the loaders and the time to the first step from meta.json) come in time order
        between them. Not replayed: the cross-rank summaries (RanksRecord), exchanged live only.
        """
        yield self.facts()
        profiler = iter(self._profiler_records())
        pending = next(profiler, None)
        stats = self.table("stats").to_pandas()
        scalars = self.table("scalars").to_pandas()
        inputs = self.table("inputs").to_pandas()
        times = scalars.groupby(["mode", "step"])["time"].min().to_dict()
        keys = set(zip(stats["mode"], stats["step"])) | set(times) | set(zip(inputs["mode"], inputs["step"]))
        order = sorted(keys, key=lambda k: (times.get(k, float("inf")), k[1], k[0]))
        stats_groups = dict(iter(stats.groupby(["mode", "step"]))) if len(stats) else {}
        scalar_groups = dict(iter(scalars.groupby(["mode", "step"]))) if len(scalars) else {}
        input_groups = dict(iter(inputs.groupby(["mode", "step"]))) if len(inputs) else {}
        for mode, step in order:
            while pending is not None and pending[0] <= times.get((mode, step), float("inf")):
                yield pending[1]
                pending = next(profiler, None)
            group = stats_groups.get((mode, step))
            if group is not None:
                for kind, rows in sorted(group.groupby("kind"), key=lambda kv: _KIND_ORDER.get(str(kv[0]), 9)):
                    yield _stats_record(int(step), str(mode), str(kind), rows)
            group = scalar_groups.get((mode, step))
            if group is not None:
                yield ScalarRecord(int(step), str(mode), dict(zip(group["name"], group["value"])),
                                   float(group["time"].min()))
            group = input_groups.get((mode, step))
            if group is not None:
                yield InputRecord(int(step), str(mode), dict(zip(group["token"], group["count"])),
                                  int(group["total"].iloc[0]))
        while pending is not None:
            yield pending[1]
            pending = next(profiler, None)

    def _profiler_records(self) -> list[tuple[float, Record]]:
        """(time, record) of the profiler's tables and meta.json facts, in time order."""
        found: list[tuple[float, Record]] = []
        phases = self.phases()
        p_step, p_mode, p_node = phases["step"].to_numpy(), phases["mode"].to_numpy(), phases["node"].to_numpy()
        p_rank, p_time = phases["rank"].to_numpy(), phases["time"].to_numpy(np.float64)
        per_phase = {c: phases[c].to_numpy(np.float64) for c in PHASE_COLUMNS}
        for i in range(len(phases)):
            record = PhaseRecord(int(p_step[i]), str(p_mode[i]), str(p_node[i]), int(p_rank[i]), float(p_time[i]),
                                 {c: float(v[i]) for c, v in per_phase.items()})
            found.append((record.time, record))
        system = self.system()
        s_time, s_node, s_rank = (system[c].to_numpy() for c in ("time", "node", "rank"))
        s_device, s_metric, s_value = (system[c].to_numpy() for c in ("device", "metric", "value"))
        samples: dict[tuple[float, str, int], dict[str, dict[str, float]]] = {}
        for i in range(len(system)):  # rows of one sample share its time, node and rank
            values = samples.setdefault((float(s_time[i]), str(s_node[i]), int(s_rank[i])), {})
            values.setdefault(str(s_device[i]), {})[str(s_metric[i])] = float(s_value[i])
        for (when, node, rank), values in samples.items():
            step, mode = _step_in_progress(p_rank, p_time, p_step, p_mode, rank, when)
            found.append((when, SystemRecord(when, node, rank, step, mode, values)))
        facts = self.meta.get("profiler") or {}
        start = float(facts.get("process_start_time", 0.0))
        if "first_step_seconds" in facts:
            seconds = float(facts["first_step_seconds"])
            found.append((start + seconds, StartupRecord(0, "train", seconds)))
        for loader in facts.get("loaders", []):
            found.append((start, LoaderRecord(0, "train", int(loader["num_workers"]), bool(loader["pin_memory"]),
                                              loader.get("batch_size"), loader.get("prefetch_factor"),
                                              int(facts.get("cpus", 1)), 1, bool(facts.get("gpus")))))
        found.sort(key=lambda item: item[0])
        return found

    def _stats_frame(self, kind: str | None, names: Iterable[str] | None, mode: str | None) -> pd.DataFrame:
        table = self.table("stats")
        frame: pd.DataFrame = table.to_pandas()
        if kind is not None:
            frame = frame[frame["kind"] == kind]
        if names is not None:
            frame = frame[frame["tensor"].isin(list(names))]
        if mode is not None:
            frame = frame[frame["mode"] == mode]
        result: pd.DataFrame = frame.sort_values(["step", "kind"], kind="stable")
        return result


def _step_in_progress(ranks: np.ndarray, times: np.ndarray, steps: np.ndarray, modes: np.ndarray, rank: int,
                      when: float) -> tuple[int, str]:
    """The (step, mode) a rank was in at `when`: the last of its steps that started before it."""
    mine = np.flatnonzero((ranks == rank) & (times <= when))
    if not len(mine):
        return 0, "train"
    return int(steps[mine[-1]]), str(modes[mine[-1]])


_KIND_ORDER = {"activation": 0, "grad": 1, "weight": 2, "update": 3}


def _stats_record(step: int, mode: str, kind: str, rows: pd.DataFrame) -> StatsRecord:
    table = rows[list(STAT_COLUMNS)].to_numpy(dtype=np.float64)
    hist = None
    if rows["hist"].notna().any():
        lists = pa.array([list(h) if h is not None else None for h in rows["hist"]], pa.list_(pa.int64()))
        hist = expand_hist(rows["hist_lo"].fillna(0).to_numpy(), lists, HIST_BINS)
    ratio = rows["ratio"].to_numpy(dtype=np.float64) if rows["ratio"].notna().any() else None
    return StatsRecord(step, mode, kind, rows["tensor"].tolist(), rows["present"].to_numpy(),
                       Stats.from_table(table, hist), ratio)


def open_run(path: str | Path) -> Run:
    """Opens a run directory for reading; works while the run is still being written."""
    return Run(path)
