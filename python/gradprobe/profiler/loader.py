"""Data-loader wait with no code change: while a probe is active, the `__next__` of torch's
DataLoader iterators (every DataLoader's, whichever loop or framework iterates it) is wrapped to
time each batch's wait; the original is put back when the probe closes. The first time an
iterator is seen, its loader's configuration is reported (num_workers, pin_memory, batch size,
prefetch factor).

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
_MARKER = "_gradprobe_timed"


def loader_config(iterator: Any) -> dict[str, Any]:
    """A DataLoader iterator's configuration (it keeps no reference to its loader)."""
    sampler = getattr(iterator, "_index_sampler", None)
    return {"num_workers": int(getattr(iterator, "_num_workers", 0)),
            "pin_memory": bool(getattr(iterator, "_pin_memory", False)),
            "batch_size": getattr(sampler, "batch_size", None),
            "prefetch_factor": getattr(iterator, "_prefetch_factor", None),
            "dataset": type(getattr(iterator, "_dataset", None)).__name__}


class LoaderPatch:
    """Wraps `_BaseDataLoaderIter.__next__` until `restore()`. Only one probe at a time times the
    loaders (`active` is False for a second one: the first probe keeps them)."""

    def __init__(self, on_wait: OnWait, on_loader: OnLoader) -> None:
        iterator_class = dataloader._BaseDataLoaderIter
        self.active = not getattr(iterator_class.__next__, _MARKER, False)
        if not self.active:
            return
        original = iterator_class.__next__
        last_seen: list[int] = [0]

        def timed_next(iterator: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(iterator)
            finally:
                on_wait(started, time.perf_counter())
                if id(iterator) != last_seen[0]:  # a new epoch or a new loader: report its configuration
                    last_seen[0] = id(iterator)
                    on_loader(loader_config(iterator))

        setattr(timed_next, _MARKER, True)
        self._original = original
        self._timed = timed_next
        iterator_class.__next__ = timed_next  # type: ignore[method-assign,assignment]

    def restore(self) -> None:
        iterator_class = dataloader._BaseDataLoaderIter
        if self.active and iterator_class.__next__ is self._timed:  # another patch on top: leave it alone
            iterator_class.__next__ = self._original  # type: ignore[method-assign]
        self.active = False


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
