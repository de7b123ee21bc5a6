"""Small models and loops for the probe tests."""

from __future__ import annotations

import torch


class TinyMLP(torch.nn.Module):
    def __init__(self, hidden: int = 32, frozen: bool = False, with_unused: bool = False) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(12, hidden)
        self.act = torch.nn.ReLU()
        self.fc2 = torch.nn.Linear(hidden, hidden)  # applied twice in forward
        self.head = torch.nn.Linear(hidden, 3)
        self.unused = torch.nn.Linear(hidden, 3) if with_unused else None
        if frozen:
            self.fc1.requires_grad_(False)

    def forward(self, x: torch.Tensor, use_unused: bool = False) -> torch.Tensor:
        h = self.act(self.fc1(x))
        h = self.act(self.fc2(h))
        h = self.act(self.fc2(h))
        out = self.head(h)
        if use_unused and self.unused is not None:
            out = out + self.unused(h)
        return out


def batch(seed: int, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=g), torch.randint(0, 3, (n,), generator=g)


def train_steps(model, optimizer, probe, steps: int, **step_kwargs) -> None:
    for step in range(steps):
        x, y = batch(step)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        probe.step(loss=loss, **step_kwargs)
