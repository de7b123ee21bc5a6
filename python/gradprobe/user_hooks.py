"""Hooks that gradprobe places on the user's own objects (module forward hooks, optimizer step hooks).

Torch stores such hooks inside the module or optimizer, so `torch.save(model)`, `pickle.dumps(model)`
and `copy.deepcopy(model)` would carry them, and with them the probe (threads, locks, open files):
the save fails, or the copy is watched by the probe of the original. Each gradprobe hook is therefore
an `OwnHook`, which pickles and deep-copies as an inert no-op made only of the standard library
(`functools.partial(sys.audit, ...)`: returns None, which means "unchanged" to every hook kind), so a
saved model loads where gradprobe is not installed and a copy is not watched. The original keeps its
live hook until the probe removes it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

# What a copied or unpickled gradprobe hook becomes (an audit event no one listens to by default).
INERT_EVENT = "gradprobe.hook_of_a_copy"


class OwnHook:
    """A callable gradprobe puts on a user's object; a copy of it does nothing."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.function(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return functools.partial, (sys.audit, INERT_EVENT)

    def __repr__(self) -> str:
        return f"OwnHook({getattr(self.function, '__qualname__', self.function)!r})"


def is_inert_copy(hook: Any) -> bool:
    """Whether `hook` is what a gradprobe hook became in a copied or unpickled object."""
    return (isinstance(hook, functools.partial) and hook.func is sys.audit
            and hook.args == (INERT_EVENT,) and not hook.keywords)
