"""The faults `--inject` can plant, each with the rule expected to catch it (no torch here: the CLI
lists them without loading it). How each is planted: inject.py."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Injection:
    name: str
    rule: str  # the code of the rule expected to fire
    description: str
    start_step: int = 3  # for faults that appear during training

    def min_steps(self) -> int:
        """Steps the run needs for the rule to have the evidence it waits for."""
        return {"lr-zero": 60, "overfit": 80, "frozen": 6}.get(self.name, self.start_step + 4)


INJECTIONS: dict[str, Injection] = {i.name: i for i in (
    Injection("vanishing", "GP101", "gradients into the lower half of the encoder are scaled by 1e-10 "
              "(a saturated bottleneck)"),
    Injection("exploding", "GP102", "the loss is multiplied by 1e6 before backward from step 3 on "
              "(a loss scale never undone)"),
    Injection("nan", "GP100", "one NaN enters the embeddings' output from step 3 on (a corrupt batch)"),
    Injection("bad-init", "GP140", "the first feed-forward matrix is initialised to one constant"),
    Injection("dead-relu", "GP130", "a middle feed-forward layer uses ReLU with its bias at -1000"),
    Injection("overfit", "GP122", "trains many epochs on 32 reviews, no dropout or weight decay, "
              "evaluating every 4 steps"),
    Injection("frozen", "GP112", "only the classifier head is given to the optimizer"),
    Injection("lr-zero", "GP120", "the learning rate is 0"),
)}


def injection(name: str | None) -> Injection | None:
    if name is None:
        return None
    if name not in INJECTIONS:
        raise ValueError(f"unknown injection {name!r}; one of {', '.join(INJECTIONS)}")
    return INJECTIONS[name]
