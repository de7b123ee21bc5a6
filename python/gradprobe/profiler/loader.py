"""Data-loader wait with no code change: while a probe is active, the `__next__` of torch's
DataLoader iterators (every DataLoader's, whichever loop or framework iterates it) is wrapped to
time each batch's wait; the wrapper is taken out when the probe closes. The first time an iterator
is seen, its loader's configuration is reported (num_workers, pin_memory, batch size, prefetch).

Several probes at once (two models in one loop) each wrap what is there, so each gets the wait; a
probe closed out of order leaves its wrapper in place, switched off (it then only passes through),
and a later restore of the one below it takes both out.

Any other iterable: `for batch in gradprobe.profiler.timed(batches, probe): ...`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from torch.utils.data import dataloader

OnWait = Callable[[float, float], None]
OnLoader = Callable[[dict[str, Any]], None]
T = TypeVar("T")


def loader_config(iterator: Any) -> dict[str, Any]:
    """A DataLoader iterator's configuration (it keeps no reference to its loader)."""
    sampler = getattr(iterator, "_index_sampler", None)
    return {"num_workers": int(getattr(iterator, "_num_workers", 0)),
            "pin_memory": bool(getattr(iterator, "_pin_memory", False)),
            "batch_size": getattr(sampler, "batch_size", None),
            "prefetch_factor": getattr(iterator, "_prefetch_factor", None),
            "dataset": type(getattr(iterator, "_dataset", None)).__name__}


class LoaderPatch:
    """Wraps `_BaseDataLoaderIter.__next__` until `restore()`."""

    def __init__(self, on_wait: OnWait, on_loader: OnLoader) -> None:
        below = dataloader._BaseDataLoaderIter.__next__
        state = {"on": True, "last_seen": 0}

        def timed_next(iterator: Any) -> Any:
            if not state["on"]:
                return below(iterator)
            started = time.perf_counter()
            try:
                return below(iterator)
            finally:
                on_wait(started, time.perf_counter())
                if id(iterator) != state["last_seen"]:  # a new epoch or a new loader: report its configuration
                    state["last_seen"] = id(iterator)
                    on_loader(loader_config(iterator))

        timed_next._gradprobe_below = below  # type: ignore[attr-defined]
        timed_next._gradprobe_state = state  # type: ignore[attr-defined]
        self._state = state
        dataloader._BaseDataLoaderIter.__next__ = timed_next  # type: ignore[method-assign,assignment]

    def restore(self) -> None:
        """Switches the wrapper off, then takes every switched-off wrapper off the top (another
        probe's live wrapper, or someone else's patch, on top keeps ours in place, passing through)."""
        self._state["on"] = False
        iterator_class = dataloader._BaseDataLoaderIter
        top = iterator_class.__next__
        while getattr(top, "_gradprobe_state", {"on": True})["on"] is False:
            top = top._gradprobe_below  # type: ignore[attr-defined]
        iterator_class.__next__ = top  # type: ignore[method-assign]


def timed(iterable: Iterable[T], probe: Any) -> Iterator[T]:
    """Yields the items of any iterable, timing each wait as the probe's data-loader wait
    (probe: a gradprobe.Probe; with its profiler off, the items pass through untimed)."""
    profiler = getattr(probe, "profiler", None)
    iterator = iter(iterable)
    while True:
        started = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        if profiler is not None:
            profiler.data_wait(started, time.perf_counter())
        yield item
