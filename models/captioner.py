"""The built-in captioner: a conv-stem ViT encoder and a small GPT-2 decoder, split at layer k.

::

    pixel_values [B, 3, 64, 64]
      ─► conv stem (3 stride-2 convs) ─► tokens [B, 64, 192] on an 8x8 grid (+ learned positions)
      ─► ViT layers 0 .. k-1                                   (device: head)
      ═► features [B, 64, 192]                                 (the split)
      ─► ViT layers k .. L-1 ─► LayerNorm                      (server: tail)
      ─► GPT-2 decoder with cross-attention ─► caption

It is a Hugging Face ``VisionEncoderDecoderModel`` whose encoder is :class:`ConvViTModel` (ViT
layers from ``transformers``, a convolutional stem in place of the patch projection, and no CLS
token, so every feature token lies on the 2-D grid). The word-level tokenizer is built offline
from the ``shapes`` vocabulary with the ``tokenizers`` library. Split points run from 0 (right
after the stem) to L (after the last layer, before the final LayerNorm); the default is L, the
whole encoder on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from transformers import (AutoConfig, GPT2Config, GPT2LMHeadModel, GenerationConfig, PreTrainedModel,
                          PreTrainedTokenizerFast, VisionEncoderDecoderConfig, VisionEncoderDecoderModel,
                          ViTConfig)
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.vit.modeling_vit import ViTLayer

from intelliflow.errors import ConfigError

from .hf_adapters import IMAGENET_HALF, VisionEncoderDecoderSplit

SPECIAL_TOKENS = {"pad": "[PAD]", "bos": "[BOS]", "eos": "[EOS]", "unk": "[UNK]"}


class ConvViTConfig(ViTConfig):
    """ViT configuration plus the convolutional stem's channels.

    The stem has ``len(stem_channels) + 1`` stride-2 3x3 convolutions, so the token grid is
    ``image_size / 2**(len(stem_channels) + 1)`` on a side (8x8 for 64x64 images and two stem layers).
    """

    model_type = "intelliflow-convvit"
    stem_channels: list[int] | tuple[int, ...] = (32, 64)


AutoConfig.register(ConvViTConfig.model_type, ConvViTConfig, exist_ok=True)


class ConvStem(nn.Module):
    """Stride-2 3x3 convolutions with GELU: [B, 3, H, W] -> [B, D, H / 2^s, W / 2^s]."""

    def __init__(self, in_channels: int, channels: Sequence[int], out_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        for c in channels:
            layers += [nn.Conv2d(in_channels, c, 3, stride=2, padding=1), nn.GELU()]
            in_channels = c
        layers.append(nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position table [h * w, dim] (the initial value of the learned one)."""
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    parts = []
    for coord in (ys.reshape(-1), xs.reshape(-1)):
        angles = coord[:, None] * omega[None, :]
        parts += [torch.sin(angles), torch.cos(angles)]
    table = torch.cat(parts, dim=1)
    return torch.nn.functional.pad(table, (0, dim - table.shape[1])).float()


class ConvViTModel(PreTrainedModel):
    """ViT encoder with a conv stem and no CLS token: pixel_values [B, 3, H, W] -> [B, h*w, D]."""

    config_class = ConvViTConfig
    base_model_prefix = "convvit"
    main_input_name = "pixel_values"
    _supports_sdpa = True

    def __init__(self, config: ConvViTConfig):
        super().__init__(config)
        self.stem = ConvStem(config.num_channels, config.stem_channels, config.hidden_size)
        side = config.image_size // 2 ** (len(config.stem_channels) + 1)
        self.grid = (side, side)
        self.position_embeddings = nn.Parameter(sincos_2d(side, side, config.hidden_size)[None])
        self.layers = nn.ModuleList([ViTLayer(config) for _ in range(config.num_hidden_layers)])
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, ConvViTModel):
            side = module.grid[0]
            with torch.no_grad():
                module.position_embeddings.copy_(sincos_2d(side, side, self.config.hidden_size)[None])

    def get_output_embeddings(self):
        return None

    def embed(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [B, 3, H, W] -> tokens [B, h*w, D] (split point 0)."""
        x = self.stem(pixel_values)
        return x.flatten(2).transpose(1, 2) + self.position_embeddings

    def run_layers(self, hidden: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Apply layers ``start .. stop-1``: [B, N, D] -> [B, N, D]."""
        for layer in self.layers[start:stop]:
            hidden = layer(hidden)
        return hidden

    def forward(self, pixel_values=None, output_attentions=None, output_hidden_states=None,
                return_dict=None, **kwargs):
        hidden = self.run_layers(self.embed(pixel_values), 0, len(self.layers))
        return BaseModelOutput(last_hidden_state=self.layernorm(hidden))


def build_tokenizer(words: Sequence[str]) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer over ``words`` plus [PAD]=0, [BOS]=1, [EOS]=2, [UNK]=3."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS.values())}
    for w in words:
        vocab.setdefault(w, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk"]))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=SPECIAL_TOKENS["pad"],
                                   bos_token=SPECIAL_TOKENS["bos"], eos_token=SPECIAL_TOKENS["eos"],
                                   unk_token=SPECIAL_TOKENS["unk"])


def build_captioner(tokenizer: PreTrainedTokenizerFast, image_size: int = 64, hidden_size: int = 192,
                    encoder_layers: int = 4, decoder_layers: int = 3, heads: int = 4,
                    stem_channels: Sequence[int] = (32, 64), max_caption_tokens: int = 32) -> VisionEncoderDecoderModel:
    """A randomly initialised captioner (see the module docstring for the architecture)."""
    if hidden_size % heads:
        raise ConfigError(f"hidden_size {hidden_size} must be a multiple of heads {heads}")
    if image_size % 2 ** (len(stem_channels) + 1):
        raise ConfigError(f"image_size {image_size} must be a multiple of 2**{len(stem_channels) + 1}")
    encoder_config = ConvViTConfig(hidden_size=hidden_size, num_hidden_layers=encoder_layers,
                                   num_attention_heads=heads, intermediate_size=4 * hidden_size,
                                   image_size=image_size, patch_size=2 ** (len(stem_channels) + 1),
                                   stem_channels=list(stem_channels), layer_norm_eps=1e-6)
    decoder_config = GPT2Config(vocab_size=len(tokenizer), n_positions=max_caption_tokens + 2,
                                n_embd=hidden_size, n_layer=decoder_layers, n_head=heads,
                                add_cross_attention=True, is_decoder=True,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id,
                                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder_config, decoder_config)
    return _from_config(config, tokenizer)


def _from_config(config: VisionEncoderDecoderConfig, tokenizer) -> VisionEncoderDecoderModel:
    config.decoder_start_token_id = tokenizer.bos_token_id
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    model = VisionEncoderDecoderModel(config=config, encoder=ConvViTModel(config.encoder),
                                      decoder=GPT2LMHeadModel(config.decoder))
    model.generation_config = GenerationConfig(
        decoder_start_token_id=tokenizer.bos_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=config.decoder.n_positions - 2, do_sample=False, num_beams=1)
    return model


class ShapesCaptioner(VisionEncoderDecoderSplit):
    """The built-in captioner as a :class:`~intelliflow.models.protocol.SplitModel`.

    Default split: after the last encoder layer (the whole encoder on the device).

    >>> import torch
    >>> from intelliflow.data.shapes import make_sample
    >>> from intelliflow.models import load_split_model
    >>> model = load_split_model("shapes-captioner")         # shipped weights, default split
    >>> images = [make_sample("test", i).image for i in range(2)]
    >>> with torch.no_grad():
    ...     features = model.head(model.preprocess(images))   # device side
    ...     captions = model.tail_generate(features)          # server side
    >>> features.shape
    torch.Size([2, 64, 192])
    >>> for caption in captions:
    ...     print(caption)
    a large yellow cross left of a small red triangle left of a small purple star
    a small cyan square
    """

    resample = "bilinear"

    def __init__(self, model: VisionEncoderDecoderModel, tokenizer: PreTrainedTokenizerFast,
                 split: int | None = None):
        super().__init__(model, tokenizer, split=split, image_mean_std=IMAGENET_HALF, name="shapes-captioner")

    @property
    def default_split(self) -> int:
        return len(self.model.encoder.layers)

    @property
    def encoder(self) -> ConvViTModel:
        return self.model.encoder

    # -- persistence
    def save(self, folder: str | Path, card: str | None = None) -> None:
        """Write safetensors weights, the JSON config and the tokenizer to ``folder`` (atomically)."""
        from intelliflow.checkpoint import save_checkpoint

        folder = Path(folder)
        save_checkpoint(folder, self.model.state_dict(), {"config": self.model.config.to_dict()})
        self.tokenizer.save_pretrained(str(folder))
        if card:
            (folder / "README.md").write_text(card)

    @classmethod
    def load(cls, folder: str | Path, split: int | None = None) -> "ShapesCaptioner":
        """Load what :meth:`save` wrote (no pickle: safetensors + JSON)."""
        from intelliflow.checkpoint import load_checkpoint

        from intelliflow.checkpoint import check_fits_weights, read_folder_config

        from .hf_adapters import require_tokenizer

        config = read_folder_config(folder).get("config")
        if not isinstance(config, dict):
            raise ConfigError(f"{folder}/config.json has no 'config' object: not an intelliflow captioner")
        require_tokenizer(folder)
        try:
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"model folder {folder}: its tokenizer cannot be read: {str(exc)[:160]}") from exc
        check_fits_weights(folder, lambda: _from_config(VisionEncoderDecoderConfig.from_dict(config), tokenizer))
        tensors, meta = load_checkpoint(folder)
        model = _from_config(VisionEncoderDecoderConfig.from_dict(meta["config"]), tokenizer)
        model.load_state_dict(tensors, strict=True)
        model.eval()
        return cls(model, tokenizer, split=split)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())

