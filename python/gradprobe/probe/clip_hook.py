"""Sees gradients before clipping: torch.nn.utils.clip_grad_norm_ / clip_grad_value_ call the
registered callbacks first. The wrappers are installed while at least one callback is registered
and the originals restored after. Code that imported the function before the probe existed keeps
the original; its gradients are then taken in the optimizer hook, after clipping."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

_callbacks: list[Callable[[Any], None]] = []
_originals: dict[str, Callable] = {}
_NAMES = ("clip_grad_norm_", "clip_grad_value_")


class Handle:
    def __init__(self, callback: Callable[[Any], None]) -> None:
        self._callback = callback

    def remove(self) -> None:
        if self._callback in _callbacks:
            _callbacks.remove(self._callback)
        if not _callbacks:
            _restore()


def register(callback: Callable[[Any], None]) -> Handle:
    if not _originals:
        _install()
    _callbacks.append(callback)
    return Handle(callback)


def _wrap(original: Callable) -> Callable:
    @functools.wraps(original)
    def wrapper(parameters, *args, **kwargs):
        for callback in list(_callbacks):
            callback(parameters)
        return original(parameters, *args, **kwargs)

    wrapper.__gradprobe_original__ = original  # type: ignore[attr-defined]
    return wrapper


def _install() -> None:
    for name in _NAMES:
        original = getattr(torch.nn.utils, name)
        _originals[name] = original
        wrapped = _wrap(original)
        setattr(torch.nn.utils, name, wrapped)
        setattr(torch.nn.utils.clip_grad, name, wrapped)


def _restore() -> None:
    for name, original in _originals.items():
        setattr(torch.nn.utils, name, original)
        setattr(torch.nn.utils.clip_grad, name, original)
    _originals.clear()
