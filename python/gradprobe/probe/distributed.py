"""torch.distributed: who this rank is, and how the ranks share the statistics work.

Modes (ProbeConfig.distributed; "auto" picks by the model, and "off" on a single process):
- "replicated" (DDP: gradients and weights are identical on every rank after the all-reduce):
  each tensor is owned by one rank (balanced by element count); a rank reduces only the tensors
  it owns, and the ranks exchange their rows, so the cost per rank falls with the world size.
- "sharded" (FSDP2 `fully_shard`: parameters are DTensors): each rank reduces its own shard of
  every tensor, and the shards' statistics are merged exactly (counts and sums added, moments
  by Chan's formula, min, max, histograms).
- "off": every rank measures what it holds and nothing is exchanged.
The exchange is ONE all_gather of a packed float64 buffer per measured kind and step, run by the
consumer thread on a gloo group of its own: the training thread never waits for it, and it never
shares a communicator with the training's own collectives. Every rank then holds the full
statistics and writes them to its own partition; rank 0 alone runs the rules and the actions (a
stop it asks for reaches every rank through the stop agreement, probe/stop.py).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import reduce
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..stats import FIELDS, Stats, merge
from .config import DISTRIBUTED_MODES

# A crashed rank leaves the others' exchange waiting this long before it fails (and is reported).
EXCHANGE_TIMEOUT = timedelta(seconds=120)
_NORMS = np.array([FIELDS.index("l2"), FIELDS.index("l1")])


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in the job: written with its start event and on every event line."""

    rank: int
    local_rank: int
    world_size: int
    node: str

    @classmethod
    def current(cls) -> RankInfo:
        if dist.is_available() and dist.is_initialized():
            rank, world_size = dist.get_rank(), dist.get_world_size()
        else:
            rank, world_size = 0, 1
        # torchrun sets LOCAL_RANK; without it, one process per node is the only safe guess.
        local_rank = int(os.environ.get("LOCAL_RANK", rank if world_size == 1 else 0))
        return cls(rank, local_rank, world_size, socket.gethostname())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_mode(mode: str, model: torch.nn.Module, world_size: int) -> str:
    """The mode to run: "sharded" whenever the parameters are DTensors (FSDP2: only their local shards
    can be read), else for "auto" "replicated" for a model wrapped in DistributedDataParallel and
    "off" otherwise; "off" on one process."""
    if mode not in DISTRIBUTED_MODES:
        raise ValueError(f"distributed mode {mode!r} is unknown (known: {', '.join(DISTRIBUTED_MODES)})")
    sharded = [is_dtensor(p) for p in model.parameters()]
    if any(sharded):
        if not all(sharded):
            raise ValueError("some parameters are DTensors (FSDP2) and some are not: gradprobe reads sharded "
                             "parameters only when fully_shard covers every parameter of the model it is given")
        if mode not in ("auto", "sharded"):
            raise ValueError(f"distributed={mode!r} cannot read DTensor parameters (FSDP2 shards): use 'auto'")
        return "sharded"
    if mode == "sharded":
        raise ValueError("distributed='sharded' needs the parameters sharded by FSDP2 (fully_shard); "
                         "these are plain tensors")
    if world_size == 1:
        return "off"
    if mode != "auto":
        return mode
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return "replicated"
    return "off"


def is_dtensor(tensor: torch.Tensor) -> bool:
    return hasattr(tensor, "_local_tensor") and hasattr(tensor, "placements")


def balanced_owners(numels: Sequence[int], world_size: int) -> np.ndarray:
    """The rank owning each tensor: largest first to the least loaded rank (deterministic, so
    every rank computes the same answer)."""
    sizes = np.asarray(numels, np.int64)
    owners = np.zeros(len(sizes), np.int64)
    load = np.zeros(world_size, np.int64)
    for i in np.argsort(-sizes, kind="stable"):
        owner = int(np.argmin(load))
        owners[i] = owner
        load[owner] += sizes[i]
    return owners


def pack(stats: Stats, present: np.ndarray, histogram: bool) -> np.ndarray:
    """One float64 row per tensor: the FIELDS, present, then the histogram counts (exact below 2**53)."""
    parts = [stats.table(), present.astype(np.float64)[:, None]]
    if histogram:
        hist = stats.hist if stats.hist is not None else np.zeros((len(stats), len(stats.hist_edges) - 1))
        parts.append(hist.astype(np.float64))
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def unpack(buffer: np.ndarray, histogram: bool) -> tuple[Stats, np.ndarray]:
    fields = len(FIELDS)
    hist = buffer[:, fields + 1:].astype(np.int64) if histogram else None
    return Stats.from_table(buffer[:, :fields], hist), buffer[:, fields] > 0


def merge_shards(shards: Sequence[tuple[Stats, np.ndarray]]) -> tuple[Stats, np.ndarray]:
    """Statistics of the whole tensors from every rank's shard (absent shards count as empty)."""
    emptied = []
    for stats, present in shards:
        table = stats.table()
        table[np.ix_(~present, _NORMS)] = 0.0  # norms of nothing are 0, not NaN
        emptied.append(Stats.from_table(table, stats.hist))
    present = np.logical_or.reduce([p for _, p in shards])
    return reduce(merge, emptied), present


def owned_rows(shards: Sequence[tuple[Stats, np.ndarray]], owners: np.ndarray) -> tuple[Stats, np.ndarray]:
    """Each tensor's row from the rank that owns it."""
    tables = np.stack([stats.table() for stats, _ in shards])
    rows = np.arange(len(owners))
    hists = [stats.hist for stats, _ in shards]
    hist = None
    if all(h is not None for h in hists):
        hist = np.stack([h for h in hists if h is not None])[owners, rows]
    present = np.stack([p for _, p in shards])[owners, rows]
    return Stats.from_table(tables[owners, rows], hist), present


class StatsExchange:
    """Every rank's rows of one measured kind and step, in one all_gather on a gloo group."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        # Every rank creates it at the same point (probe construction), as new_group requires.
        self.group = dist.new_group(backend="gloo", timeout=EXCHANGE_TIMEOUT)
        self.failure: str | None = None  # after a failed exchange (a rank died), each rank keeps its own rows

    def gather(self, stats: Stats, present: np.ndarray, histogram: bool) -> list[tuple[Stats, np.ndarray]]:
        mine = torch.from_numpy(pack(stats, present, histogram))
        everyone = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(everyone, mine, group=self.group)
        return [unpack(t.numpy(), histogram) for t in everyone]

    def combine(self, stats: Stats, present: np.ndarray, histogram: bool,
                owners: np.ndarray | None) -> tuple[Stats, np.ndarray]:
        if self.failure is not None:
            return stats, present
        try:
            shards = self.gather(stats, present, histogram)
        except Exception as error:  # a peer died or timed out: never wait on it again
            self.failure = repr(error)
            raise
        return merge_shards(shards) if owners is None else owned_rows(shards, owners)


@dataclass(frozen=True)
class Exchanged:
    """What a StatsItem needs to be exchanged: the exchange, and the owners (replicated) or None (sharded)."""

    exchange: StatsExchange
    owners: np.ndarray | None

    def __call__(self, stats: Stats, present: np.ndarray, histogram: bool) -> tuple[Stats, np.ndarray]:
        return self.exchange.combine(stats, present, histogram, self.owners)


class Distribution:
    """The capture's side of the mode: which attribute a row reads, which rows this rank reduces."""

    def __init__(self, mode: str, rank: int, world_size: int) -> None:
        self.mode = mode
        self.rank = rank
        self.exchange = StatsExchange(world_size)
        self._splits: dict[int, tuple[np.ndarray, Exchanged]] = {}  # per selection, by id

    @property
    def sharded(self) -> bool:
        return self.mode == "sharded"

    def attr(self, attr: str | None) -> str | tuple[str, ...] | None:
        """Sharded: the rank's local shard of the parameter or of its gradient."""
        if not self.sharded:
            return attr
        return ("_local_tensor",) if attr is None else (attr, "_local_tensor")

    def split(self, selection_key: int, params: Sequence[torch.Tensor]) -> tuple[np.ndarray, Exchanged]:
        """Per row of a selection: whether this rank reduces it; and how the results are combined.
        Computed once per selection (selections live as long as their plans; reset() forgets them)."""
        split = self._splits.get(selection_key)
        if split is None:
            if self.sharded:
                split = (np.ones(len(params), bool), Exchanged(self.exchange, None))
            else:
                owners = balanced_owners([p.numel() for p in params], self.exchange.world_size)
                split = (owners == self.rank, Exchanged(self.exchange, owners))
            self._splits[selection_key] = split
        return split

    def reset(self) -> None:
        """The plans were rebuilt: their selections are new."""
        self._splits.clear()
