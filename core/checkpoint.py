"""Checkpoints as safetensors plus JSON, written atomically, read without pickle.

A checkpoint folder holds ``model.safetensors`` (tensors) and ``config.json`` (everything else).
Nested state such as an optimizer's ``state_dict()`` is split by :func:`flatten_state` into
tensors (stored in safetensors under dotted keys) and a JSON skeleton, and rebuilt by
:func:`unflatten_state`. Files are written to a temporary name and renamed, so a crash never
leaves a half-written file behind. ``config.json`` is the manifest, written last: it records the
digest of the weights it belongs to. The weights it replaces stay beside it as
``model.safetensors.prev`` until the new manifest is in place, so a process killed at any point of a
save leaves a checkpoint that reads back whole: the new one, or the one before it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from intelliflow.errors import CheckpointError, ConfigError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
PREVIOUS = WEIGHTS + ".prev"   # the weights the manifest names while a save replaces them
_TENSOR = "__tensor__"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_checkpoint(folder: str | Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    """Write ``tensors`` to ``folder/model.safetensors`` and ``config`` to ``folder/config.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}  # tied weights are stored once
    seen: dict[tuple, str] = {}
    for key, value in tensors.items():
        ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape), value.dtype) \
            if value.numel() else None
        if ident is not None and ident in seen:
            aliases[key] = seen[ident]
            continue
        if ident is not None:
            seen[ident] = key
        unique[key] = value.detach().contiguous().cpu().clone()
    tmp, weights, prev = folder / (WEIGHTS + ".tmp"), folder / WEIGHTS, folder / PREVIOUS
    try:
        save_file(unique, str(tmp))
        digest = _sha256(tmp)
        if _current_weights(folder) == weights:  # keep what the current manifest names until it is replaced
            prev.unlink(missing_ok=True)
            _link_or_copy(weights, prev)
        os.replace(tmp, weights)
        meta = {**config, "__aliases__": aliases} if aliases else dict(config)
        meta["__weights_sha256__"] = digest
        atomic_write_bytes(folder / CONFIG, json.dumps(meta, indent=2, sort_keys=True).encode())
        prev.unlink(missing_ok=True)
    except (OSError, SafetensorError) as exc:  # a full disk, a read-only folder: the previous checkpoint stays
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write the checkpoint in {folder}: {exc}") from exc
    return folder


def _current_weights(folder: Path) -> Path | None:
    """The weights file the folder's manifest names now (``None`` for a new or unreadable folder)."""
    try:
        digest = json.loads((folder / CONFIG).read_text(encoding="utf-8")).get("__weights_sha256__")
        return _weights_named_by(folder, digest)
    except (OSError, ValueError, AttributeError, RecursionError, CheckpointError):
        return None


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        import shutil

        shutil.copyfile(source, target)


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def load_checkpoint(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read ``(tensors, config)`` back; a missing or damaged file is a :class:`CheckpointError`."""
    folder = Path(folder)
    config = read_folder_config(folder, error=CheckpointError)
    weights = _weights_named_by(folder, config.pop("__weights_sha256__", None))
    try:
        tensors = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights} is not a valid safetensors file: {exc}") from exc
    for alias, key in config.pop("__aliases__", {}).items():
        if key not in tensors:
            raise CheckpointError(f"{folder / CONFIG}: tied tensor {alias!r} points at missing {key!r}")
        tensors[alias] = tensors[key]
    return tensors, config


def _weights_named_by(folder: Path, digest: str | None) -> Path:
    """The weights file whose digest the manifest records: ``model.safetensors``, or the previous
    weights when a save was killed after renaming the new ones in but before its manifest."""
    weights, prev = folder / WEIGHTS, folder / PREVIOUS
    if digest is None:   # a checkpoint written by hand or by an older version: nothing to check
        if not weights.is_file():
            raise CheckpointError(f"checkpoint folder {folder} has no {WEIGHTS}")
        return weights
    for candidate in (weights, prev):
        if candidate.is_file() and _sha256(candidate) == digest:
            return candidate
    raise CheckpointError(f"{folder}: no weights file matches the digest {CONFIG} records (the folder was "
                          "changed by hand, or a save was interrupted in a way it cannot recover from)")


# ---------------------------------------------------------------------------------------------
# A folder is input: its config is read within limits, and the model it describes must fit its
# weight files before anything large is allocated (a crafted config once made loading allocate
# gigabytes before any check).

MAX_CONFIG_BYTES = 4 << 20
#: weights may be stored in half precision and loaded in full: a model may need this many times its files
PRECISION_ROOM = 2.0
#: what a folder without weight files may still build (a few MB: buffers, tiny test models)
SLACK_BYTES = 16 << 20
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def read_folder_config(folder: str | Path, error: type[Exception] = ConfigError) -> dict:
    """``folder/config.json`` as a dict, read within limits (at most :data:`MAX_CONFIG_BYTES`, a JSON
    object, not nested too deeply), or an ``error`` (:class:`ConfigError`) saying what is wrong."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise error(f"folder {folder} has no {CONFIG}")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:
        raise error(f"{path} is {size} bytes, over the limit of {MAX_CONFIG_BYTES} for a config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not valid JSON: {str(exc)[:120]}") from exc
    except RecursionError:
        raise error(f"{path} is nested too deeply to be a config") from None
    if not isinstance(config, dict):
        raise error(f"{path} must hold a JSON object, got a {type(config).__name__}")
    return config


def weight_bytes(folder: str | Path) -> int:
    """Bytes of the weight files in ``folder`` (safetensors, PyTorch), shards included."""
    return sum(p.stat().st_size for p in Path(folder).iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))


def check_fits_weights(folder: str | Path, build: Callable[[], nn.Module]) -> int:
    """Build the model ``build()`` describes on the ``meta`` device or with fake tensors (shapes, no
    memory) and refuse it when its
    parameters and buffers cannot come from the weight files in ``folder``; returns its bytes.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     check_fits_weights(folder, lambda: nn.Linear(100_000, 100_000))
    Traceback (most recent call last):
    ...
    intelliflow.errors.ConfigError: ... describes a model of 40.0 GB, but its weight files hold 0.0 MB; ...
    """
    from torch._subclasses.fake_tensor import FakeTensorMode  # torch.compile's shape-only tensors

    try:
        try:
            with torch.device("meta"):
                model = build()
        except RuntimeError:  # CPU constants inside (CompressAI's GDN): fake tensors take them, at ~1 s warm-up
            with FakeTensorMode(allow_non_fake_inputs=True):
                model = build()
    except ConfigError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, OverflowError, AssertionError) as exc:
        raise ConfigError(f"{folder}: its config.json does not describe a model that can be built: "
                          f"{type(exc).__name__}: {str(exc)[:160]}") from exc
    need = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    have = weight_bytes(folder)
    if need > PRECISION_ROOM * have + SLACK_BYTES:
        raise ConfigError(f"{folder}: config.json describes a model of {_size(need)}, but its "
                          f"weight files hold {_size(have)}; refusing to allocate it (a config that does not "
                          "belong to these weights)")
    return need


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def flatten_state(state: Any, prefix: str = "") -> tuple[Any, dict[str, torch.Tensor]]:
    """Nested dicts/lists with tensor leaves -> (JSON-able skeleton, ``{dotted key: tensor}``)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(obj, key):
        if isinstance(obj, torch.Tensor):
            tensors[key] = obj
            return {_TENSOR: key}
        if isinstance(obj, dict):
            return {"__dict__": [[walk(k, f"{key}.k{i}") if isinstance(k, torch.Tensor) else k,
                                  walk(v, f"{key}.{i}")] for i, (k, v) in enumerate(obj.items())]}
        if isinstance(obj, (list, tuple)):
            return {"__list__": [walk(v, f"{key}.{i}") for i, v in enumerate(obj)],
                    "tuple": isinstance(obj, tuple)}
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        raise CheckpointError(f"cannot store a {type(obj).__name__} at {key or 'top level'} in a checkpoint")

    return walk(state, prefix or "state"), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if _TENSOR in skeleton:
            return tensors[skeleton[_TENSOR]]
        if "__dict__" in skeleton:
            return {unflatten_state(k, tensors): unflatten_state(v, tensors) for k, v in skeleton["__dict__"]}
        if "__list__" in skeleton:
            items = [unflatten_state(v, tensors) for v in skeleton["__list__"]]
            return tuple(items) if skeleton.get("tuple") else items
    return skeleton
