"""What meta.json records about a run: model structure, parameters, config, versions, hardware."""

from __future__ import annotations

import os
import platform
import socket
import sys
import time
from collections.abc import Sequence
from typing import Any

import psutil
import torch

from .._version import __version__
from ..records import ModelFacts
from ..store.schema import SCHEMA_VERSION

ParameterGroups = list[tuple[str, torch.nn.Parameter, list[str]]]


def parameter_groups(model: torch.nn.Module) -> ParameterGroups:
    """(canonical name, parameter, all names) with tied or shared parameters listed once."""
    by_id: dict[int, tuple[str, torch.nn.Parameter, list[str]]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        entry = by_id.get(id(param))
        if entry is None:
            by_id[id(param)] = (name, param, [name])
        else:
            entry[2].append(name)
    return list(by_id.values())


def model_facts(model: torch.nn.Module, groups: ParameterGroups) -> ModelFacts:
    """Parameter shapes and module class names, for the rules that need them."""
    return ModelFacts({name: tuple(p.shape) for name, p, _ in groups},
                      {name: type(m).__name__ for name, m in model.named_modules() if name})


def model_structure(model: torch.nn.Module) -> list[dict[str, Any]]:
    return [{"name": name or "model", "type": type(m).__name__, "module": type(m).__module__,
             "parameters": sum(p.numel() for p in m.parameters(recurse=False))}
            for name, m in model.named_modules()]


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"host": socket.gethostname(), "platform": platform.platform(),
                            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count()}
    info["memory_bytes"] = psutil.virtual_memory().total
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def versions() -> dict[str, str]:
    found = {"gradprobe": __version__, "python": sys.version.split()[0], "torch": torch.__version__}
    for name in ("numpy", "pyarrow", "transformers"):
        module = sys.modules.get(name)
        if module is not None:
            found[name] = getattr(module, "__version__", "?")
    return found


def parameter_records(groups: ParameterGroups) -> list[dict[str, Any]]:
    """meta.json's `parameters`: name, shape, dtype, trainable, aliases (tied names)."""
    return [{"name": name, "shape": list(p.shape), "dtype": str(p.dtype).replace("torch.", ""),
             "requires_grad": p.requires_grad, "aliases": names[1:]} for name, p, names in groups]


def describe_optimizer(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """meta.json's record of an optimizer: type, parameter counts, and each group's hyperparameters."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    groups = [{key: value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
               for key, value in group.items() if key != "params"} for group in optimizer.param_groups]
    return {"type": type(optimizer).__name__, "module": type(optimizer).__module__, "tensors": len(params),
            "parameters": sum(p.numel() for p in params), "param_groups": groups}


def build_meta(model: torch.nn.Module, groups: ParameterGroups, config: dict[str, Any], rank: int,
               world_size: int, optimizers: Sequence[torch.optim.Optimizer] = ()) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "start_time": time.time(),
        "status": "running",
        "truncated": False,
        "rank": rank,
        "world_size": world_size,
        "model": {"type": type(model).__name__, "modules": model_structure(model)},
        "parameters": parameter_records(groups),
        "optimizers": [describe_optimizer(o) for o in optimizers],
        "aliases": {alias: name for name, _, names in groups for alias in names[1:]},
        "config": config,
        "versions": versions(),
        "hardware": hardware(),
    }
