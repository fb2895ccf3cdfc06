"""Reading a model folder within limits, before anything large is allocated.

A model folder is input like any other: its ``config.json`` may be malformed, or may describe a
model far larger than the weights beside it (a crafted folder made loading allocate gigabytes
before any check); its tokenizer may be missing. Every loader goes through these checks first:

- :func:`read_config`: ``config.json`` at most :data:`MAX_CONFIG_BYTES`, a JSON object, not nested
  too deeply;
- :func:`check_size`: the model the config describes is built on the ``meta`` device (no memory)
  and its parameters must fit the weight files on disk (with room for half-precision files
  loaded in full precision);
- :func:`require_tokenizer`: the folder holds tokenizer files.

Each failure is a one-line :class:`~intelliflow.errors.ConfigError` naming the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from intelliflow.errors import ConfigError

MAX_CONFIG_BYTES = 4 << 20
#: weights may be stored in half precision and loaded in full: a model may need this many times its files
PRECISION_ROOM = 2.0
#: what a folder without weight files may still build (a few MB: buffers, tiny test models)
SLACK_BYTES = 16 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "spiece.model",
                   "tokenizer.model", "sentencepiece.bpe.model")


def read_config(folder: str | Path) -> dict:
    """``folder/config.json`` as a dict, or a :class:`ConfigError` saying what is wrong with it."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise ConfigError(f"model folder {folder} has no config.json")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is {size} bytes, over the limit of {MAX_CONFIG_BYTES} for a model config")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {str(exc)[:120]}") from exc
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be a model config") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path} must hold a JSON object, got a {type(config).__name__}")
    return config


def weight_bytes(folder: str | Path) -> int:
    """Bytes of the weight files in ``folder`` (safetensors, PyTorch), shards included."""
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def check_size(folder: str | Path, build: Callable[[], nn.Module]) -> int:
    """Build the model ``build()`` describes on the ``meta`` device (no memory) and refuse it when its
    parameters and buffers cannot come from the weight files in ``folder``; returns its bytes.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     check_size(folder, lambda: nn.Linear(100_000, 100_000))
    Traceback (most recent call last):
    ...
    intelliflow.errors.ConfigError: ... describes a model of 40.0 GB, but its weight files hold 0.0 MB; ...
    """
    try:
        with torch.device("meta"):
            model = build()
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, OverflowError, AssertionError) as exc:
        raise ConfigError(f"model folder {folder}: its config.json does not describe a model that can be built: "
                          f"{type(exc).__name__}: {str(exc)[:160]}") from exc
    need = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    have = weight_bytes(folder)
    if need > PRECISION_ROOM * have + SLACK_BYTES:
        raise ConfigError(f"model folder {folder}: config.json describes a model of {_size(need)}, but its "
                          f"weight files hold {_size(have)}; refusing to allocate it (a config that does not "
                          "belong to these weights)")
    return need


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def require_tokenizer(folder: str | Path) -> None:
    """A :class:`ConfigError` unless ``folder`` holds tokenizer files."""
    if not any((Path(folder) / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"model folder {folder} has no tokenizer files (one of {', '.join(TOKENIZER_FILES[:4])}, "
                          "...): save the tokenizer beside the weights, e.g. tokenizer.save_pretrained(folder)")
