"""intelliflow.models: split captioning models (device head, server tail) and their costs."""

from .protocol import SplitModel, caption_loss, grid_to_tokens, tokens_to_grid
from .registry import load_split_model, shipped_models
from .split_hook import SplitPoint, split_at

__all__ = ["SplitModel", "SplitPoint", "caption_loss", "grid_to_tokens", "load_split_model", "shipped_models",
           "split_at", "tokens_to_grid"]
