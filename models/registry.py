"""Split models by name: the shipped built-in captioner, or a local folder of weights.

A Hugging Face folder is split by the adapter registered for its ``config.json`` ``model_type``
(``@ADAPTERS.register("blip")`` on the adapter class, where it is defined); the package's modules
are imported on the first look-up, so a new adapter is one module.
"""

from __future__ import annotations

from pathlib import Path

from intelliflow.errors import CheckpointError, RegistryError
from intelliflow.registry import Registry

from .protocol import SplitModel

WEIGHTS_DIR = Path(__file__).parent / "weights"
SHIPPED = {"shapes-captioner": WEIGHTS_DIR / "shapes-captioner", "shapes-llava": WEIGHTS_DIR / "shapes-llava"}
#: the recipe that trains each shipped model
RECIPES = {"shapes-captioner": "recipes/shapes/captioner.yaml", "shapes-llava": "recipes/shapes/llava_captioner.yaml"}
#: split adapters of Hugging Face models, by the ``model_type`` of their ``config.json``
ADAPTERS = Registry("split adapter", __package__)


def shipped_models() -> dict[str, Path]:
    """Names of the models whose weights ship inside the package, with their folders."""
    return dict(SHIPPED)


def load_split_model(name_or_path: str | Path, split: int | str | None = None) -> SplitModel:
    """Load a split model: ``"shapes-captioner"`` (shipped), an intelliflow captioner folder, or a
    local Hugging Face folder of a VisionEncoderDecoder, BLIP or GIT captioner or of an
    image-text-to-text model (LLaVA, LLaVA-NeXT, Qwen2-VL, PaliGemma, Idefics3, SmolVLM, BLIP-2;
    ``split`` may then be a point's name, e.g. ``"projector"``). ``split=None`` takes the model's
    documented default split point."""
    from .captioner import ShapesCaptioner
    from intelliflow.checkpoint import read_folder_config

    if str(name_or_path) in SHIPPED:
        folder = SHIPPED[str(name_or_path)]
        if not (folder / "model.safetensors").is_file():
            raise CheckpointError(f"the weights of {name_or_path!r} are not in this installation ({folder}); "
                                  f"train them with: intelliflow train {RECIPES[str(name_or_path)]}")
    else:
        folder = Path(name_or_path)
    if not (folder / "config.json").is_file():
        raise RegistryError(f"unknown model {str(name_or_path)!r}: not one of {sorted(SHIPPED)} and not a folder "
                            "with a config.json")
    config = read_folder_config(folder)
    inner = config.get("config")
    if isinstance(inner, dict) and isinstance(inner.get("encoder"), dict) and \
            inner["encoder"].get("model_type") == "intelliflow-convvit":
        return ShapesCaptioner.load(folder, split=split)
    kind = config.get("model_type")
    if not isinstance(kind, str) or kind not in ADAPTERS:
        raise RegistryError(f"{folder}: model_type {str(kind)[:40]!r} has no split adapter; supported: {ADAPTERS.names()} "
                            "(or use intelliflow.models.split_at)")
    return ADAPTERS.get(kind).from_pretrained(folder, split=split)
