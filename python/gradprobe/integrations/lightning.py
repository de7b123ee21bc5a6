"""The Lightning callback.

    from gradprobe.integrations.lightning import GradprobeCallback
    trainer = lightning.Trainer(..., callbacks=[GradprobeCallback(out_dir="runs/exp1")])

- Gradients are measured where the backward that ends an optimizer step completes them (the loss
  is handed to the probe in on_before_backward; Lightning tells which micro-batch ends the step),
  so before any unscaling or clipping, by Lightning or by the module's own code. Lightning runs
  backward inside optimizer.step(closure), so the probe does not hook the optimizer (its pre-hook
  would fire before backward); on_before_optimizer_step tells it that the step is about to run.
- One probe step per optimizer step (at the end of that batch), with the training step's loss;
  each validation run is one eval step with the logged metrics (callback_metrics).
- A stop (StopTraining, probe.stop()) sets trainer.should_stop; Lightning ends after that batch,
  on every rank alike (the probe agrees on the step across ranks).
- Under the DDP strategy the statistics are split across the ranks (gradprobe.probe.distributed).
- The run store gets everything; with lightning_logger=True the Lightning logger also gets the
  findings count and gradprobe's own overhead per step.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

from ..actions import Action
from ..probe import Probe
from ..probe.probe import ConfigLike
from ..report import write_report_or_warn as write_report
from ..rules import Rule
from .common import ProbeSettings


class GradprobeCallback(pl.Callback):
    """Attaches a gradprobe.Probe to the LightningModule and its optimizers for the length of fit()."""

    def __init__(self, out_dir: str | Path, config: ConfigLike = None, rules: Iterable[Rule] | str | None = None,
                 actions: Iterable[Action] | None = None, exist: str = "error", report: bool = True,
                 lightning_logger: bool = False) -> None:
        self.settings = ProbeSettings(out_dir, config, rules, actions, exist)
        self.report = report
        self.lightning_logger = lightning_logger
        self.probe: Probe | None = None
        self.report_path: Path | None = None
        self._optimizer_stepped = False
        self._closed = False

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After the sanity check and after the strategy set the optimizers up.
        strategy = trainer.strategy  # DeepSpeed derives from DDPStrategy but partitions the gradients
        ddp = isinstance(strategy, DDPStrategy) and not isinstance(strategy, DeepSpeedStrategy)
        self.probe = self.settings.open(pl_module, trainer.optimizers, optimizer_hooks=False, data_parallel=ddp)
        should_accumulate = getattr(trainer.fit_loop, "_should_accumulate", None)
        if callable(should_accumulate):
            self.probe.set_step_end_signal(lambda: not should_accumulate())

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        if self.probe is not None and isinstance(loss, torch.Tensor):
            self.probe.watch_backward(loss)  # training_step may call an inner model, not pl_module's forward

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self.probe is not None and not self._optimizer_stepped:
            self._optimizer_stepped = True
            self.probe.gradients_ready(optimizer)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.probe is None or not self._optimizer_stepped:
            return  # a micro-batch of gradient accumulation: the step ends with the optimizer step
        self._optimizer_stepped = False
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        step = self.probe.current_step("train")
        self.probe.step(loss=loss if isinstance(loss, torch.Tensor) else None, mode="train")
        if self.lightning_logger and trainer.logger is not None:
            trainer.logger.log_metrics({"gradprobe/findings": float(len(self.probe.findings))}, step=step)
        if self.probe.should_stop:
            trainer.should_stop = True

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.probe is not None:
            self.probe.set_mode("eval")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.probe is None:
            return
        metrics = {name: value for name, value in trainer.callback_metrics.items()
                   if isinstance(value, torch.Tensor) and value.numel() == 1}
        loss = metrics.pop("val_loss", None)
        self.probe.step(loss=loss, metrics=metrics, mode="eval")
        self.probe.set_mode("train")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close(None)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close(exception)

    def _close(self, error: BaseException | None) -> None:
        if self.probe is None or self._closed:
            return
        self._closed = True
        self.probe.close(error)
        if self.report and error is None and self.probe.rank == 0:
            self.report_path = write_report(self.probe.out_dir)
