"""Zero-code mode: `gradprobe run [--out DIR] [--config FILE] -- python [options] train.py ARGS`.

Runs the script with global hooks and no edit to it:
- module forward hooks find the model: the outermost module call (nothing else running) that
  owns parameters;
- the first backward() attaches a Probe to the model that ran and the optimizer alive then that
  updates its parameters, so step 0's gradients are measured where that backward completes them
  like every later step's; else an optimizer step pre-hook attaches it at the first
  optimizer.step() (step 0's gradients are then read at that step);
- every optimizer step then ends a probe step; its loss is the sum of the scalar tensors that
  backward() was called on since the previous optimizer step (under gradient accumulation the
  script's `loss / N` micro-batches add up to the mean it logs), or the model output's .loss when
  no scalar was backpropagated; for a closure-based optimizer (LBFGS), the first evaluation of
  the closure, the loss at the point the step starts from, as `optimizer.step` returns it;
- forwards of the model with gradients disabled, or in eval() mode and not followed by a
  backward, form an evaluation pass: the probe is in eval mode while it runs (activations come
  only from training forwards), and the pass is recorded as one eval step whose loss is the mean
  of its batches' losses (the model output's .loss, else the last torch.nn.functional loss
  computed after each forward, which nn.*Loss modules call too);
- the probe closes when the script ends, normally or by an exception.
What it attached to, or why it attached to nothing, is said on stderr and written to meta.json.
Every argument is checked before the script starts; the script's exit code and `sys.exit`
message pass through unchanged.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import runpy
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as functional
import torch.optim.optimizer as torch_optimizer
from torch.utils.hooks import RemovableHandle

from .probe import Probe
from .probe.config import ProbeConfig, resolve_config
from .probe.meta import describe_optimizer
from .report import write_report
from .store.ownership import is_gradprobe_run
from .store.schema import EVENTS_FILE, PART_GLOB, TABLES
from .store.writer import prepare_run_dir, update_meta, write_json_atomic

META_FILE = "meta.json"
HOW_TO_ATTACH = (
    "attach by hand: probe = gradprobe.Probe(model, optimizer, out_dir=...), then probe.step(loss=loss) "
    "after each optimizer step and probe.close() at the end (see the README)")


def _count(module_or_params: Any) -> int:
    return sum(p.numel() for p in module_or_params)


# The loss functions whose scalar result is an evaluation batch's loss (nn.*Loss modules call them).
LOSS_FUNCTIONS = ("cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
                  "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "soft_margin_loss",
                  "multilabel_soft_margin_loss", "poisson_nll_loss", "gaussian_nll_loss", "margin_ranking_loss",
                  "hinge_embedding_loss", "cosine_embedding_loss", "triplet_margin_loss", "ctc_loss")


class EvaluationPass:
    """The losses of one run of consecutive evaluation forwards, kept on their device (no sync)."""

    def __init__(self, grad_enabled: bool) -> None:
        self.grad_enabled = grad_enabled  # eval() with gradients on: cancelled if a backward follows
        self.batch_losses: list[torch.Tensor] = []
        self.candidate: torch.Tensor | None = None  # the current batch's loss so far

    def end_batch(self) -> None:
        if self.candidate is not None:
            self.batch_losses.append(self.candidate.float().reshape(()))
            self.candidate = None

    def mean_loss(self) -> torch.Tensor | None:
        self.end_batch()
        return torch.stack(self.batch_losses).mean() if self.batch_losses else None


def _say(message: str) -> None:
    print(f"gradprobe: {message}", file=sys.stderr, flush=True)


class AutoAttach:
    def __init__(self, out_dir: Path, config: ProbeConfig, exist: str = "error", report: bool = False) -> None:
        self.out_dir, self.config, self.exist, self.report = out_dir, config, exist, report
        self.probe: Probe | None = None
        self.attached: dict[str, Any] | None = None
        self._roots: list[torch.nn.Module] = []
        self._optimizers_seen: dict[int, torch.optim.Optimizer] = {}
        self._unmatched_optimizers: list[str] = []  # stepped before any module owning its parameters ran
        self._backward_calls = 0
        self._steps_recorded = 0
        self._reported = False
        self._depth = 0
        self._loss: torch.Tensor | None = None  # sum of the backpropagated scalars since the last step
        self._output_loss: torch.Tensor | None = None  # the model output's .loss, when it has one
        self._closure_step = False  # inside optimizer.step(closure): only the first evaluation counts
        self._evaluation: EvaluationPass | None = None
        self.evaluations_recorded = 0
        self._searched_at_backward = False  # the optimizers alive at the first backward were looked at
        self._handles: list[RemovableHandle] = [
            torch.nn.modules.module.register_module_forward_pre_hook(self._pre_forward),
            torch.nn.modules.module.register_module_forward_hook(self._post_forward, always_call=True),
            torch_optimizer.register_optimizer_step_pre_hook(self._before_step),
            torch_optimizer.register_optimizer_step_post_hook(self._after_step),
        ]
        self._original_backward = torch.Tensor.backward
        attach = self

        def backward(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            attach._backward_calls += 1
            if attach._evaluation is not None:
                attach._cancel_evaluation()  # eval() forwards followed by a backward were training
            if tensor.numel() == 1:
                attach._add_backward_loss(tensor.detach())
            attach._before_backward(tensor)
            return attach._original_backward(tensor, *args, **kwargs)

        torch.Tensor.backward = backward  # type: ignore[method-assign,assignment]
        self._original_losses = {name: getattr(functional, name) for name in LOSS_FUNCTIONS
                                 if hasattr(functional, name)}
        for name, original in self._original_losses.items():
            setattr(functional, name, self._watch_loss(original))

    def _add_backward_loss(self, loss: torch.Tensor) -> None:
        if self._loss is None:
            self._loss = loss.reshape(())
        elif not self._closure_step:  # accumulation: micro-batches add up (on the device, no sync)
            self._loss = self._loss + loss.reshape(())

    def _watch_loss(self, original: Any) -> Any:
        attach = self

        def loss_function(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            evaluation = attach._evaluation
            if evaluation is not None and isinstance(result, torch.Tensor) and result.numel() == 1:
                evaluation.candidate = result.detach()
            return result

        loss_function.__wrapped__ = original  # type: ignore[attr-defined]
        loss_function.__name__ = getattr(original, "__name__", "loss")
        return loss_function

    def _is_probed_model(self, module: torch.nn.Module) -> bool:
        return self.probe is not None and module is self.probe.model

    def _begin_evaluation_batch(self) -> None:
        if self._evaluation is not None and self._evaluation.grad_enabled != torch.is_grad_enabled():
            self._end_evaluation()  # a no_grad pass, then eval() forwards with gradients: two things
        if self._evaluation is None:
            self._evaluation = EvaluationPass(torch.is_grad_enabled())
            if self.probe is not None:
                self.probe.set_mode("eval")
        else:
            self._evaluation.end_batch()

    def _end_evaluation(self) -> None:
        """Records the evaluation pass that just ended as one eval step."""
        evaluation, self._evaluation = self._evaluation, None
        if evaluation is None or self.probe is None:
            return
        self.probe.step(loss=evaluation.mean_loss())
        self.probe.set_mode("train")
        self.evaluations_recorded += 1

    def _cancel_evaluation(self) -> None:
        self._evaluation = None
        if self.probe is not None:
            self.probe.set_mode("train")

    def _pre_forward(self, module: torch.nn.Module, args: Any) -> None:
        if self._depth == 0:
            if self.probe is None:
                if module not in self._roots and next(module.parameters(), None) is not None:
                    self._roots.append(module)
            elif self._is_probed_model(module):
                if not torch.is_grad_enabled() or not module.training:
                    self._begin_evaluation_batch()
                elif self._evaluation is not None:
                    self._end_evaluation()
        self._depth += 1

    def _post_forward(self, module: torch.nn.Module, args: Any, output: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth == 0 and self._is_probed_model(module):
            loss = getattr(output, "loss", None)
            if isinstance(loss, torch.Tensor) and loss.numel() == 1:
                if self._evaluation is not None:
                    self._evaluation.candidate = loss.detach()
                else:
                    self._output_loss = loss.detach()

    def _before_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self._optimizers_seen.setdefault(id(optimizer), optimizer)
        self._closure_step = callable(kwargs.get("closure")) or any(callable(a) for a in args)
        if self._closure_step:
            self._loss = None  # the closure's evaluations are the step's loss
        if self.probe is not None:
            if self._evaluation is not None:
                self._end_evaluation()
            return
        model = self._model_of(optimizer)
        if model is not None:
            self._attach(model, optimizer)
        elif not self._closure_step:  # a closure runs the model inside the step: attach after it
            self._note_unmatched(optimizer)

    def _model_of(self, optimizer: torch.optim.Optimizer) -> torch.nn.Module | None:
        """The root module that owns most of the optimizer's parameters, if one has run a forward."""
        params = {id(p) for group in optimizer.param_groups for p in group["params"]}
        owned = [(sum(id(p) in params for p in m.parameters()), m) for m in self._roots]
        count, model = max(owned, key=lambda pair: pair[0], default=(0, None))
        return model if count > 0 else None

    def _note_unmatched(self, optimizer: torch.optim.Optimizer) -> None:
        name = type(optimizer).__name__
        if name not in self._unmatched_optimizers:
            self._unmatched_optimizers.append(name)

    def _before_backward(self, tensor: torch.Tensor) -> None:
        """The first backward: attach now, so step 0's gradients are measured where this backward
        completes them, like every later step's."""
        if self.probe is not None or not self._roots or self._searched_at_backward:
            return
        self._searched_at_backward = True  # once per run: the optimizers alive now (a backward names none)
        candidates = [o for o in gc.get_objects() if isinstance(o, torch.optim.Optimizer)]
        matches = [(model, o) for o in candidates if (model := self._model_of(o)) is not None]
        if not matches:
            return
        model, optimizer = matches[0]
        self._attach(model, optimizer, before_step=False)
        if self.probe is not None:
            self.probe.watch_backward(tensor)  # its forward ran before the probe existed

    def _attach(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, before_step: bool = True) -> None:
        self.probe = Probe(model, optimizer, out_dir=self.out_dir, config=self.config, exist=self.exist)
        if before_step:
            self.probe._before_optimizer_step(optimizer, (), {})  # its own hook was not there yet
        self.attached = {
            "mode": "zero-code (gradprobe run)",
            "model": {"type": type(model).__name__, "module": type(model).__module__,
                      "tensors": sum(1 for _ in model.parameters()), "parameters": _count(model.parameters())},
            "optimizers": [describe_optimizer(optimizer)],
        }
        update_meta(self.out_dir, attached=self.attached)
        _say(f"attached to model {type(model).__name__} ({_count(model.parameters()):,} parameters) and optimizer "
             f"{type(optimizer).__name__}; recording to {self.out_dir}")

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if self.probe is None and self._closure_step:
            # A closure-based optimizer (LBFGS) ran the model inside its first step: attach now, so
            # that step is recorded too (its gradients are the closure's last evaluation's).
            model = self._model_of(optimizer)
            if model is not None:
                self._attach(model, optimizer)
            else:
                self._note_unmatched(optimizer)
        if self.probe is not None and optimizer is self.probe.optimizers[0]:
            self.probe.step(loss=self._loss if self._loss is not None else self._output_loss)
            self._steps_recorded += 1
        # Every optimizer's step ends what was backpropagated for it (two models, two optimizers).
        self._loss = self._output_loss = None
        self._closure_step = False

    def _trained_nothing(self) -> bool:
        return not self._roots and not self._unmatched_optimizers and not self._backward_calls

    def _why_not_attached(self) -> str:
        roots = ", ".join(f"{type(m).__name__} ({_count(m.parameters()):,} parameters)" for m in self._roots[:5])
        if self._unmatched_optimizers:
            return (f"optimizer {', '.join(self._unmatched_optimizers)} stepped, but no module owning its parameters "
                    f"ran a forward before its first step (models seen: {roots or 'none'})")
        if self._roots:
            return (f"models ran ({roots}) and backward() was called {self._backward_calls} times, but no "
                    "torch.optim optimizer ever stepped (a hand-written update loop is not seen)")
        return "no module with parameters ran a forward, and no torch.optim optimizer stepped"

    def close(self, error: BaseException | None = None) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        torch.Tensor.backward = self._original_backward  # type: ignore[method-assign]
        for name, original in self._original_losses.items():
            setattr(functional, name, original)
        if self._evaluation is not None and error is None:
            self._end_evaluation()  # a final evaluation after the last training step
        if self.probe is not None:
            probe, self.probe = self.probe, None
            others = [o for o in self._optimizers_seen.values() if o is not probe.optimizers[0]]
            if others:
                described = [describe_optimizer(o) for o in others]
                update_meta(self.out_dir, attached={**(self.attached or {}), "not_attached_optimizers": described})
                _say(f"other optimizers stepped but were not attached: {', '.join(d['type'] for d in described)}")
            probe.close(error)
            _say(f"recorded {self._steps_recorded} optimizer steps and {self.evaluations_recorded} evaluations "
                 f"to {self.out_dir}")
            if self.report:
                self._write_report()
            return
        if self.attached is None and not self._reported:
            self._reported = True
            reason = self._why_not_attached()
            if self._trained_nothing():  # --help, an ImportError, a bad argument: no failure to attach
                _say(f"the script trained nothing ({reason}); {self.out_dir} holds an empty run that the next "
                     "`gradprobe run` reuses")
            else:
                _say(f"ATTACHED TO NOTHING: {reason}. Looked for: a torch.optim optimizer whose parameters belong "
                     f"to a module that ran a forward. Nothing was recorded; {HOW_TO_ATTACH}.")
            try:
                write_json_atomic(self.out_dir / META_FILE, {"status": "not_attached", "attached": None,
                                                             "not_attached_reason": reason})
            except OSError as failure:
                _say(f"could not write {self.out_dir / META_FILE}: {failure}")


    def _write_report(self) -> None:
        """The run's HTML report; a failure is said, never raised: the training itself is done."""
        try:
            _say(f"report: {write_report(self.out_dir)}")
        except KeyboardInterrupt:
            _say(f"report skipped (interrupted); `gradprobe report {self.out_dir}` writes it")
        except Exception as error:  # a report bug must not turn a finished training into a failure
            _say(f"could not write the report ({type(error).__name__}: {error}); "
                 f"try `gradprobe report {self.out_dir}`")


def _check_out_dir(out: Path, exist: str) -> None:
    """Refuses before the script starts what the probe would refuse at its first step. An empty
    run (left by a script that trained nothing: --help, an ImportError) is reused, not refused."""
    if _holds_empty_run(out):
        _say(f"reusing {out}: it holds only an empty run, left by a script that trained nothing")
        exist = "overwrite"
    if (out / META_FILE).exists() and exist == "error":
        raise SystemExit(f"gradprobe run: {out} already holds a run; choose another --out, or pass "
                         "--exist append (continue it) or --exist overwrite (replace it)")
    try:
        prepare_run_dir(out, exist)
    except (OSError, ValueError, RuntimeError) as error:  # RunDirectoryError is a RuntimeError
        raise SystemExit(f"gradprobe run: --out {out}: {error}") from None


def _holds_empty_run(out: Path) -> bool:
    """gradprobe wrote this directory, its meta.json says it attached to nothing, and it holds no
    recorded row (no part, no event): replacing it loses nothing."""
    try:
        meta = json.loads((out / META_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("status") != "not_attached" or not is_gradprobe_run(out):
        return False
    events = out / EVENTS_FILE
    if events.exists() and events.stat().st_size > 0:
        return False
    return not any(next((out / table).rglob(PART_GLOB), None) for table in TABLES)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gradprobe.autoattach")
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", default=None)
    parser.add_argument("--exist", default="error", choices=["error", "append", "overwrite"])
    parser.add_argument("--report", action="store_true", help="write RUN/report.html when the script ends")
    parser.add_argument("target", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    target = args.target[1:] if args.target[:1] == ["--"] else args.target
    if not target:
        parser.error("nothing to run: give a script (and its arguments) or -m module")
    try:
        config = resolve_config(args.config)
    except (OSError, ValueError, TypeError) as bad_config:
        raise SystemExit(f"gradprobe run: --config {args.config}: {bad_config}") from None
    out = Path(args.out)
    _check_out_dir(out, args.exist)
    attach = AutoAttach(out, config, args.exist, report=args.report)
    atexit.register(attach.close)
    failure: BaseException | None = None
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
        # The script's own exit: code and message pass through; a non-zero code marks the run failed.
        if exit_.code not in (None, 0):
            failure = exit_
        raise
    except BaseException as raised:
        failure = raised
        raise
    finally:
        attach.close(failure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
