"""The Hugging Face Trainer callback.

    from gradprobe.integrations.transformers import GradprobeCallback
    trainer = Trainer(model, args, ..., callbacks=[GradprobeCallback(out_dir="runs/exp1")])

- Gradients are measured where the backward of the micro-batch that ends the step completes them
  (accelerate's sync_gradients, which the Trainer sets): accumulated and before any clipping or
  unscaling, whichever function the Trainer (or accelerate) clips with.
- One probe step per optimizer step (on_step_end); the Trainer's logs (loss, grad_norm,
  learning_rate, ...) arrive after it and are recorded at that step; evaluation metrics are one
  eval step each.
- A stop (StopTraining, probe.stop()) sets control.should_training_stop; the Trainer ends after
  that step, on every rank alike (the probe agrees on the step across ranks).
- Under DDP (several processes, no FSDP or DeepSpeed) the statistics are split across the ranks.
- At train end the probe closes and the report is written (when gradprobe.report is installed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from accelerate.state import GradientState
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.training_args import ParallelMode

from ..actions import Action
from ..probe import Probe
from ..probe.probe import ConfigLike
from ..report import write_report_or_warn as write_report
from ..rules import Rule
from .common import ProbeSettings

# Log keys that are bookkeeping, not measurements.
_NOT_SCALARS = frozenset({"epoch", "step", "total_flos"})


class GradprobeCallback(TrainerCallback):
    """Attaches a gradprobe.Probe to the Trainer's model and optimizer for the length of train()."""

    def __init__(self, out_dir: str | Path, config: ConfigLike = None, rules: Iterable[Rule] | str | None = None,
                 actions: Iterable[Action] | None = None, exist: str = "error", report: bool = True) -> None:
        self.settings = ProbeSettings(out_dir, config, rules, actions, exist)
        self.report = report
        self.probe: Probe | None = None
        self.report_path: Path | None = None

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: Any = None, optimizer: Any = None, **kwargs: Any) -> None:
        if model is None or optimizer is None:
            raise ValueError("gradprobe: the Trainer gave its callback no model or optimizer at train begin")
        # Plain multi-process data parallel is DDP; FSDP and DeepSpeed shard the gradients instead.
        ddp = args.parallel_mode == ParallelMode.DISTRIBUTED and not args.fsdp and args.deepspeed is None
        self.probe = self.settings.open(model, [optimizer], data_parallel=ddp)
        gradient_state = GradientState()  # accelerate's shared state: the Trainer's accumulation
        self.probe.set_step_end_signal(lambda: bool(gradient_state.sync_gradients))

    def on_prediction_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                           **kwargs: Any) -> None:
        if self.probe is not None and self.probe.mode != "eval":
            self.probe.set_mode("eval")  # activations of evaluation batches count as eval

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self.probe is None:
            return
        self.probe.step(mode="train")
        if self.probe.should_stop:
            control.should_training_stop = True

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if self.probe is None or not logs or any(key.startswith("eval_") for key in logs):
            return  # evaluation metrics come through on_evaluate
        values = _numbers(logs)
        loss = values.pop("loss", None)
        if loss is not None or values:
            # The logs follow on_step_end: they belong to the step that just ended.
            self.probe.log(loss=loss, metrics=values, step=max(self.probe.current_step("train") - 1, 0))

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    metrics: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        if self.probe is None:
            return
        values = {key.removeprefix("eval_"): value for key, value in _numbers(metrics or {}).items()}
        self.probe.step(loss=values.pop("loss", None), metrics=values, mode="eval")
        self.probe.set_mode("train")

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self.probe is None:
            return
        self.probe.close()
        if self.report and self.probe.rank == 0:
            self.report_path = write_report(self.probe.out_dir)


def _numbers(logs: Mapping[str, Any]) -> dict[str, float]:
    """The numeric entries (a NaN loss included: it is what the rules look for)."""
    return {key: float(value) for key, value in logs.items()
            if key not in _NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool)}
