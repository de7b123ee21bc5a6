"""Zero-code mode: `gradprobe run [--out DIR] [--config FILE] -- python train.py ARGS`.

Runs the script with global hooks and no edit to it:
- module forward hooks find the model: the outermost module call (nothing else running) that
  owns parameters;
- an optimizer step pre-hook attaches a Probe at the first optimizer.step(), to the model whose
  parameters that optimizer updates (the probe takes this first step's gradients itself);
- every optimizer step then ends a probe step; the loss is the scalar tensor that backward() was
  last called on (or the model output's .loss);
- the probe closes when the script ends, normally or by an exception.
"""

from __future__ import annotations

import argparse
import atexit
import os
import runpy
import sys
from pathlib import Path
from typing import Any

import torch
import torch.optim.optimizer as torch_optimizer

from .probe import Probe


class AutoAttach:
    def __init__(self, out_dir: Path, config: Any, exist: str = "error") -> None:
        self.out_dir, self.config, self.exist = out_dir, config, exist
        self.probe: Probe | None = None
        self._roots: list[torch.nn.Module] = []
        self._depth = 0
        self._loss: torch.Tensor | None = None
        self._handles = [
            torch.nn.modules.module.register_module_forward_pre_hook(self._pre_forward),
            torch.nn.modules.module.register_module_forward_hook(self._post_forward, always_call=True),
            torch_optimizer.register_optimizer_step_pre_hook(self._before_step),
            torch_optimizer.register_optimizer_step_post_hook(self._after_step),
        ]
        self._original_backward = torch.Tensor.backward
        attach = self

        def backward(tensor, *args, **kwargs):
            if tensor.numel() == 1:
                attach._loss = tensor.detach()
            return attach._original_backward(tensor, *args, **kwargs)

        torch.Tensor.backward = backward  # type: ignore[method-assign,assignment]

    def _pre_forward(self, module: torch.nn.Module, args: Any) -> None:
        if self._depth == 0 and self.probe is None and module not in self._roots \
                and next(module.parameters(), None) is not None:
            self._roots.append(module)
        self._depth += 1

    def _post_forward(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0 and self.probe is not None and hasattr(output, "loss") \
                and isinstance(output.loss, torch.Tensor):
            self._loss = output.loss.detach()

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.probe is not None:
            return
        params = {id(p) for group in optimizer.param_groups for p in group["params"]}
        model = max(self._roots, key=lambda m: sum(id(p) in params for p in m.parameters()), default=None)
        if model is None:
            return
        self.probe = Probe(model, optimizer, out_dir=self.out_dir, config=self.config, exist=self.exist)
        self.probe._before_optimizer_step(optimizer, args, kwargs)  # its own hook was not there yet

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.probe is not None and optimizer is self.probe.optimizers[0]:
            self.probe.step(loss=self._loss)
            self._loss = None

    def close(self, error: BaseException | None = None) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        torch.Tensor.backward = self._original_backward  # type: ignore[method-assign]
        if self.probe is not None:
            self.probe.close(error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradprobe.autoattach")
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--exist", default="error", choices=["error", "append", "overwrite"])
    parser.add_argument("target", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    target = args.target[1:] if args.target[:1] == ["--"] else args.target
    if not target:
        parser.error("nothing to run: give a script (and its arguments) or -m module")
    attach = AutoAttach(Path(args.out), args.config, args.exist)
    atexit.register(attach.close)
    error: BaseException | None = None
    try:
        if target[0] == "-m":
            sys.argv = target[1:]
            sys.path.insert(0, os.getcwd())  # as `python -m` does
            runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = target
            sys.path.insert(0, os.path.dirname(os.path.abspath(target[0])))
            runpy.run_path(target[0], run_name="__main__")
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 1
    except BaseException as raised:
        error = raised
        raise
    finally:
        attach.close(error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
