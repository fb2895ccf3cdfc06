"""Save and load codecs: safetensors weights (entropy-coder tables included) plus a JSON config.

The entropy models' quantised CDF tables are buffers of the state dict, so an encoder and a
decoder on different machines that load the same folder code with the same tables. Nothing is
unpickled. Names that stand for a folder (shipped codecs, aliases) are resolved in
:mod:`intelliflow.codec.registry`.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from intelliflow.checkpoint import check_fits_weights, load_checkpoint, read_folder_config, save_checkpoint
from intelliflow.errors import CheckpointError


def save_codec(codec, folder: str | Path, **metadata) -> Path:
    """Write a learned codec (digital or JSCC) to ``folder``; ``metadata`` goes into the JSON."""
    if not getattr(codec, "learned", False):
        raise CheckpointError(f"{type(codec).__name__} has no weights to save")
    config = {"name": codec.registered_name, "params": asdict(codec.config), **metadata}
    return save_checkpoint(folder, codec.state_dict(), config)


def load_codec(folder: str | Path):
    """Load what :func:`save_codec` wrote; the codec comes back in eval mode, ready to code."""
    from .registry import build_codec

    config = read_folder_config(folder)
    if not isinstance(config.get("name"), str) or not isinstance(config.get("params"), dict):
        raise CheckpointError(f"{folder}: config.json is not a codec checkpoint (needs a 'name' and a 'params' object)")
    check_fits_weights(folder, lambda: build_codec({"name": config["name"], **config["params"]}))
    tensors, config = load_checkpoint(folder)
    codec = build_codec({"name": config["name"], **config["params"]})
    try:
        codec.load_state_dict(tensors)
    except (RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{folder}: weights do not fit a {config['name']} codec: {exc}") from exc
    codec.trained_for = {k: config[k] for k in ("model", "split") if config.get(k) is not None}
    return codec.eval()


WEIGHTS_DIR = Path(__file__).parent / "weights"


def shipped_codecs() -> dict[str, Path]:
    """Codec checkpoints shipped in the package (``{name: folder}``), trained for ``shapes-captioner``."""
    if not WEIGHTS_DIR.is_dir():
        return {}
    return {d.name: d for d in sorted(WEIGHTS_DIR.iterdir()) if (d / "config.json").is_file()}


def codec_info(folder: str | Path) -> dict:
    """The JSON config of a codec checkpoint (name, params and what trained it)."""
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
