"""The end of every backward through the model: where gradients become complete.

Gradients are true when the backward that accumulates them has finished, before anything else
(clipping by any function, a GradScaler's unscale, a hand-written `p.grad.mul_(c)`) changes them.
Wrapping the functions callers use today breaks with the next release that calls another one, so
the probe measures at the source instead:

- the model's forward hook puts a tensor hook on its first output that requires grad (the loss or
  the logits: one tensor per forward, never one per module or parameter), and three sentinel
  parameters (the first trainable one of the model's first, middle and last direct children) get a
  post-accumulate-grad hook, for backwards that start elsewhere and for code that calls the model's
  parts rather than the model (`model.bert(...)`, a Lightning module's inner model);
- when a backward reaches one of them, the hook queues an autograd final callback, which runs once
  the whole backward has finished accumulating `.grad`;
- that callback queues itself once more, so it runs after the final callbacks queued during the
  backward (DDP's and FSDP's gradient reductions queue theirs when the first bucket is ready): the
  gradients it sees are the reduced ones.

On a GPU the callback runs on the caller's current stream (autograd's final-callback contract), so
the statistics launched there are stream-ordered before any later change of the gradients: exact, and
no host-device synchronisation. On the CPU the pass reads them at once.

Limits: a backward that reaches neither the model's outputs nor a sentinel parameter is not seen;
the probe then reads the gradients at the optimizer step and says so once (capture.py). Inside
torch.compile / torch.export tracing nothing is hooked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import torch

from ..user_hooks import OwnHook
from .tracing import tracing

# Floating outputs looked at per forward: the loss and the logits, or a tuple's first tensors.
_MAX_OUTPUTS = 4
# Sentinel parameters per model: each costs one Python call per backward that reaches it.
MAX_SENTINELS = 3


def sentinel_parameters(model: torch.nn.Module, limit: int = MAX_SENTINELS) -> list[torch.nn.Parameter]:
    """The first trainable parameter of the model's own and of its direct children's (the first, the
    last and evenly spaced ones in between, `limit` in all): a backward through any part of the model
    accumulates into at least one of them, in all but contrived cases."""
    firsts = []
    own = next((p for p in model.parameters(recurse=False) if p.requires_grad), None)
    if own is not None:
        firsts.append(own)
    for child in model.children():
        first = next((p for p in child.parameters() if p.requires_grad), None)
        if first is not None and all(first is not seen for seen in firsts):
            firsts.append(first)
    if len(firsts) <= limit:
        return firsts
    picks = {round(i * (len(firsts) - 1) / (limit - 1)) for i in range(limit)}
    return [firsts[i] for i in sorted(picks)]


def output_tensors(output: Any) -> Iterator[torch.Tensor]:
    """Top-level tensors of a model's output (a tensor, tuple, list, dict or transformers ModelOutput)."""
    if isinstance(output, torch.Tensor):
        yield output
        return
    values: Any = ()
    if isinstance(output, (tuple, list)):
        values = output
    elif isinstance(output, dict):  # ModelOutput is an OrderedDict of its set fields
        values = output.values()
    count = 0
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
            count += 1
            if count == _MAX_OUTPUTS:
                return


class GradientCompletion:
    """Calls `on_complete()` at the end of each backward that reaches the watched outputs or
    sentinel parameters; `on_output_grad(index, grad)` gets the gradient that reached output `index`
    of the last watched forward (the NaN/Inf origin replays a broken step's backward from it)."""

    def __init__(self, on_complete: Callable[[], None],
                 on_output_grad: Callable[[int, torch.Tensor], None] | None = None) -> None:
        self._on_complete = on_complete
        self._on_output_grad = on_output_grad
        self._queued_for = -1  # the autograd graph task whose end is awaited (-1: none)

    def watch_output(self, output: Any) -> None:
        """Hooks a forward's outputs (from the model's forward hook)."""
        if not torch.is_grad_enabled() or tracing():
            return
        for index, tensor in enumerate(output_tensors(output)):
            if tensor.requires_grad and tensor.grad_fn is not None:  # the first such output (the loss, or
                tensor.register_hook(partial(self._output_reached, index))  # the logits): the sentinels see the rest
                return

    def watch(self, tensor: torch.Tensor) -> None:
        """Hooks one tensor that a backward will start from or flow through (e.g. a loss)."""
        if tensor.requires_grad and tensor.grad_fn is not None:
            tensor.register_hook(self._backward_reached)

    def _output_reached(self, index: int, grad: torch.Tensor) -> None:
        if self._on_output_grad is not None:
            self._on_output_grad(index, grad)
        self._backward_reached(grad)

    def watch_parameters(self, params: list[torch.nn.Parameter]) -> list[Any]:
        """Post-accumulate-grad hooks on these parameters; returns their handles."""
        return [p.register_post_accumulate_grad_hook(OwnHook(self._backward_reached)) for p in params]

    def _backward_reached(self, _: torch.Tensor) -> None:
        # Once per backward, however many watched outputs it reaches. Keyed by the graph task, not a
        # flag: a backward that raised never runs its callbacks, and must not silence the next one.
        task = torch._C._current_graph_task_id()
        if task != self._queued_for:
            self._queued_for = task
            torch.autograd.Variable._execution_engine.queue_callback(self._after_queued_callbacks)

    def _after_queued_callbacks(self) -> None:
        # Final callbacks queued by a final callback run after every one queued before it.
        torch.autograd.Variable._execution_engine.queue_callback(self._backward_finished)

    def _backward_finished(self) -> None:
        self._queued_for = -1
        self._on_complete()
