"""Split adapters for Hugging Face captioners: VisionEncoderDecoder (ViT-GPT2 and the like), BLIP, GIT.

Each adapter cuts the vision tower at layer ``k``: the device runs the patch embedding and layers
``0 .. k-1`` (:meth:`head`), the server runs layers ``k ..`` plus the tower's final norm and the
text side (:meth:`tail_logits`, :meth:`tail_generate`). Weights load from a local folder the user
names (``from_pretrained(path)``); nothing is downloaded.

- :class:`VisionEncoderDecoderSplit`: decoded features enter through ``encoder_outputs=`` in both
  the forward pass and ``generate``.
- :class:`BlipSplit`: features go to ``text_decoder`` as ``encoder_hidden_states``.
- :class:`GitSplit`: GIT's text model takes no image states, so during the tail its image
  encoder is swapped for a module that returns the tail's states; it runs once per ``generate``.

.. code-block:: python

    model = BlipSplit.from_pretrained("/models/blip-image-captioning-base", split=6)
    captions = model.tail_generate(model.head(model.preprocess(images)), max_new_tokens=20)
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from intelliflow.checkpoint import check_fits_weights, read_folder_config
from intelliflow.errors import ConfigError, DatasetNotFoundError

from .protocol import SplitModel
from .registry import ADAPTERS
from .speculative import Decoding, Verified, greedy_limit, verify_drafts

IMAGENET_HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
CLIP_MEAN_STD = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


class VisionTower:
    """Uniform access to a ViT-style tower: ``embed`` (split 0), ``layers``, ``finish`` (final norm)."""

    def __init__(self, embed, layers: nn.ModuleList, finish, prefix_tokens: int, grid: tuple[int, int],
                 dim: int, image_size: int, layer_kwargs: dict | None = None):
        self.embed, self.layers, self.finish = embed, layers, finish
        self.prefix_tokens, self.grid, self.dim, self.image_size = prefix_tokens, grid, dim, image_size
        self.layer_kwargs = layer_kwargs or {}

    def run(self, hidden: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for layer in self.layers[start:stop]:
            out = layer(hidden, **self.layer_kwargs)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden


def _side(config, attr="image_size") -> int:
    size = getattr(config, attr)
    return size if isinstance(size, int) else size[0]


def _patch(config) -> int:
    p = config.patch_size
    return p if isinstance(p, int) else p[0]


class HFSplitModel(SplitModel):
    """Shared machinery of the adapters: preprocessing, head, vision tail, caption ids."""

    resample = "bicubic"  # how preprocess resizes images to the tower's input size

    def __init__(self, model: nn.Module, tokenizer, tower: VisionTower, split: int | None,
                 image_mean_std=IMAGENET_HALF, image_processor=None, name: str = "model"):
        super().__init__()
        self.model, self.tokenizer, self.image_processor = model, tokenizer, image_processor
        self._tower = tower
        self.prefix_tokens = tower.prefix_tokens
        self.mean, self.std = (torch.tensor(v).view(1, 3, 1, 1) for v in image_mean_std)
        self.name = name
        self.split = self.default_split if split is None else int(split)
        if not 0 <= self.split < self.num_split_points:
            raise ConfigError(f"split must be in 0..{self.num_split_points - 1} for {name}, got {split}")

    @property
    def default_split(self) -> int:  # the middle of the vision tower
        return len(self._tower.layers) // 2

    @property
    def num_split_points(self) -> int:
        return len(self._tower.layers) + 1

    @property
    def feature_grid(self):
        return self._tower.grid

    @property
    def feature_dim(self):
        return self._tower.dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def preprocess(self, images: Sequence, device: torch.device | str | None = None) -> torch.Tensor:
        """Resize to the tower's input size and normalise (or use the folder's image processor); on
        ``device`` (default the model's: give ``"cpu"`` in a DataLoader worker)."""
        from PIL import Image

        if self.image_processor is not None:
            return self.image_processor(images=list(images), return_tensors="pt")["pixel_values"].to(
                self.device if device is None else device)
        size = self._tower.image_size
        arrays = []
        for image in images:
            if not isinstance(image, Image.Image):
                image = Image.fromarray(np.asarray(image, dtype=np.uint8))
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), getattr(Image, self.resample.upper()))
            arrays.append(np.asarray(image))
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
        return ((x - self.mean) / self.std).to(self.device if device is None else device)

    def head(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._tower.run(self._tower.embed(pixel_values), 0, self.split)

    def vision_tail(self, features: torch.Tensor) -> torch.Tensor:
        """Server side of the vision tower: features [B, N, D] -> final image states [B, N, D]."""
        self.check_features(features)
        return self._tower.finish(self._tower.run(features, self.split, len(self._tower.layers)))

    def caption_ids(self, captions: Sequence[str], bos: int | None, eos: int | None, pad: int) -> torch.Tensor:
        """``[bos] + words + [eos]`` per caption, right-padded with ``pad``: [B, T] long."""
        rows = []
        for c in captions:
            ids = self.tokenizer(c, add_special_tokens=False)["input_ids"]
            rows.append(([bos] if bos is not None else []) + ids + ([eos] if eos is not None else []))
        length = max(len(r) for r in rows)
        out = torch.full((len(rows), length), pad, dtype=torch.long)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.tensor(r)
        return out.to(self.device)

    def decode_ids(self, ids: torch.Tensor) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    # -- speculative decoding: the receiver verifies a draft (intelliflow.models.speculative)
    def decoding(self, **generation) -> Decoding:
        """How the text decoder runs step by step (start, end and pad ids, the greedy length limit
        under ``generation``, the prefill and extend passes); see :mod:`.speculative`."""
        raise NotImplementedError

    def tail_verify(self, features: torch.Tensor, drafts: Sequence[Sequence[int]], **generation) -> Verified:
        """Server side with a draft: features [B, N, D] and one draft per image (token ids after the
        start tokens) -> :class:`~intelliflow.models.speculative.Verified`, whose ``ids`` are token for
        token :meth:`tail_generate_ids` (``generation``: ``max_new_tokens`` or ``max_length`` only)."""
        return verify_drafts(self.decoding(**generation), self.vision_tail(features), drafts)

    @staticmethod
    def _ids(value) -> int:
        """A token id from a config field that may hold a list of them (the first)."""
        return int(value[0] if isinstance(value, (list, tuple)) else value)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "vocab.txt", "spiece.model",
                   "tokenizer.model", "sentencepiece.bpe.model")


def require_tokenizer(folder: str | Path) -> None:
    """A one-line :class:`ConfigError` unless the model folder holds tokenizer files."""
    if not any((Path(folder) / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"model folder {folder} has no tokenizer files (one of {', '.join(TOKENIZER_FILES[:4])}, "
                          "...): save the tokenizer beside the weights, e.g. tokenizer.save_pretrained(folder)")


def _pretrained(model_class, path: str | Path):
    """``model_class.from_pretrained(path)`` from local files only, after the folder's checks: the
    config is read and the model it describes must fit the weight files before anything is allocated;
    a failure is one line naming the folder."""
    from intelliflow.errors import CheckpointError

    read_folder_config(path)
    try:
        config = model_class.config_class.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"model folder {path}: config.json is not a {model_class.config_class.__name__}: "
                          f"{str(exc)[:160]}") from exc
    check_fits_weights(path, lambda: model_class(config))
    try:
        return model_class.from_pretrained(str(path), local_files_only=True).eval()
    except (OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"model folder {path}: the weights do not load into {model_class.__name__}: "
                              f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__}") from exc


def _load_folder(path: str | Path):
    """Tokenizer and (optional) image processor from a local folder, never the network."""
    from transformers import AutoImageProcessor, AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise DatasetNotFoundError(f"model folder not found: {path} (weights load from a local folder)")
    require_tokenizer(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"model folder {path}: its tokenizer files cannot be read: {str(exc)[:160]}") from exc
    try:
        processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError):
        processor = None
    return tokenizer, processor


# --------------------------------------------------------------------------------- VisionEncoderDecoder

def vit_like_tower(encoder: nn.Module) -> VisionTower:
    """The tower of a ViT-family encoder (ViT, DeiT, ...) or the built-in conv-stem ViT."""
    config = encoder.config
    if hasattr(encoder, "embed") and hasattr(encoder, "layers"):  # intelliflow's ConvViTModel
        return VisionTower(encoder.embed, encoder.layers, encoder.layernorm, 0, encoder.grid,
                           config.hidden_size, _side(config))
    inner = getattr(encoder, "encoder", encoder)  # transformers 5 keeps ViT layers on the model itself
    layers = next((getattr(inner, n) for n in ("layers", "layer") if isinstance(getattr(inner, n, None), nn.ModuleList)),
                  None)
    if not hasattr(encoder, "embeddings") or layers is None or not hasattr(encoder, "layernorm"):
        raise ConfigError(f"{type(encoder).__name__} is not a ViT-style encoder (embeddings, layers, "
                          "layernorm); use intelliflow.models.split_at for other architectures")
    side = _side(config) // _patch(config)
    dummy = torch.zeros(1, config.num_channels, _side(config), _side(config))
    with torch.no_grad():
        n_tokens = encoder.embeddings(dummy).shape[1]
    return VisionTower(lambda px: encoder.embeddings(px), layers, encoder.layernorm, n_tokens - side * side,
                       (side, side), config.hidden_size, _side(config))


@ADAPTERS.register("vision-encoder-decoder")
class VisionEncoderDecoderSplit(HFSplitModel):
    """Any ``VisionEncoderDecoderModel`` with a ViT-style encoder, split inside the encoder."""

    def __init__(self, model, tokenizer, split: int | None = None, image_mean_std=IMAGENET_HALF,
                 image_processor=None, name: str = "vision-encoder-decoder"):
        super().__init__(model, tokenizer, vit_like_tower(model.encoder), split, image_mean_std,
                         image_processor, name)

    @classmethod
    def from_pretrained(cls, path: str | Path, split: int | None = None) -> "VisionEncoderDecoderSplit":
        from transformers import VisionEncoderDecoderModel

        tokenizer, processor = _load_folder(path)
        model = _pretrained(VisionEncoderDecoderModel, path)
        return cls(model, tokenizer, split, image_processor=processor, name=Path(path).name)

    def labels(self, captions: Sequence[str]) -> torch.Tensor:
        """Label ids [B, T]: the words then EOS, ``-100`` on padding."""
        eos = self.model.config.eos_token_id
        if eos is None:
            eos = self.model.config.decoder.eos_token_id
        ids = self.caption_ids(captions, None, eos, -100)
        limit = getattr(self.model.config.decoder, "n_positions", None) or \
            getattr(self.model.config.decoder, "max_position_embeddings", 512)
        return ids[:, : limit - 1]

    def decode_logits(self, states: torch.Tensor, captions: Sequence[str]):
        """Teacher-forced decoder on final encoder states [B, N, D]: (logits [B, T, V], labels [B, T])."""
        labels = self.labels(captions)
        out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=states), labels=labels,
                         decoder_attention_mask=labels != -100)
        return out.logits, labels

    def encoder_states(self, features: torch.Tensor) -> torch.Tensor:
        return self.vision_tail(features)

    def tail_logits(self, features, captions):
        return self.decode_logits(self.vision_tail(features), captions)

    def full_logits(self, pixel_values, captions):
        labels = self.labels(captions)
        out = self.model(pixel_values=pixel_values, labels=labels, decoder_attention_mask=labels != -100)
        return out.logits, labels

    @staticmethod
    def _with_decoder_mask(batch: int, device: torch.device, generation: dict) -> dict:
        """``generation`` plus an all-ones ``decoder_attention_mask`` for the start token.

        ``generate`` extends the mask by one column per new token. Without it, the GPT-2 decoder
        warns about padding as soon as a finished caption is padded; with it, the decoder attends
        to exactly the same positions, so the tokens do not change. A caller's own
        ``decoder_input_ids``/``decoder_attention_mask`` are left as they are.
        """
        if "decoder_input_ids" in generation or "decoder_attention_mask" in generation:
            return generation
        return {**generation, "decoder_attention_mask": torch.ones(batch, 1, dtype=torch.long, device=device)}

    def tail_generate_ids(self, features, **generation):
        states = self.vision_tail(features)
        generation = self._with_decoder_mask(states.shape[0], states.device, generation)
        return self.model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=states), **generation)

    def full_generate_ids(self, pixel_values, **generation):
        generation = self._with_decoder_mask(pixel_values.shape[0], pixel_values.device, generation)
        return self.model.generate(pixel_values=pixel_values, **generation)

    def decoding(self, **generation) -> Decoding:
        config, model = self.model.generation_config, self.model

        def run(states, ids, cache=None):   # an all-ones mask, as generate passes (pads after a draft are never seen)
            seen = 0 if cache is None else cache.get_seq_length()
            mask = torch.ones(ids.shape[0], seen + ids.shape[1], dtype=torch.long, device=ids.device)
            out = model(encoder_outputs=BaseModelOutput(last_hidden_state=states), decoder_input_ids=ids,
                        decoder_attention_mask=mask, cache=cache, use_cache=True)
            return out.logits, out.cache

        start = config.decoder_start_token_id
        start = model.config.decoder_start_token_id if start is None else start
        return Decoding([self._ids(start)], self._ids(config.eos_token_id), self._ids(config.pad_token_id),
                        greedy_limit(model, 1, generation), run, run)


# --------------------------------------------------------------------------------- BLIP

@ADAPTERS.register("blip")
class BlipSplit(HFSplitModel):
    """``BlipForConditionalGeneration`` split inside ``vision_model`` at layer ``k``."""

    def __init__(self, model, tokenizer, split: int | None = None, image_processor=None, name: str = "blip"):
        vision = model.vision_model
        config = vision.config
        side = _side(config) // _patch(config)
        tower = VisionTower(lambda px: vision.embeddings(px), vision.encoder.layers, vision.post_layernorm,
                            1, (side, side), config.hidden_size, _side(config))
        super().__init__(model, tokenizer, tower, split, CLIP_MEAN_STD, image_processor, name)

    @classmethod
    def from_pretrained(cls, path: str | Path, split: int | None = None) -> "BlipSplit":
        from transformers import BlipForConditionalGeneration

        tokenizer, processor = _load_folder(path)
        model = _pretrained(BlipForConditionalGeneration, path)
        return cls(model, tokenizer, split, image_processor=processor, name=Path(path).name)

    def _input_ids(self, captions):
        text = self.model.config.text_config
        return self.caption_ids(captions, text.bos_token_id, text.sep_token_id, text.pad_token_id)

    def _logits_labels(self, image_states, captions):
        ids = self._input_ids(captions)
        mask = (ids != self.model.config.text_config.pad_token_id).long()
        out = self.model.text_decoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=image_states)
        labels = ids.masked_fill(mask == 0, -100)[:, 1:]
        return out.logits[:, :-1], labels

    def tail_logits(self, features, captions):
        return self._logits_labels(self.vision_tail(features), captions)

    def full_logits(self, pixel_values, captions):
        return self._logits_labels(self.model.vision_model(pixel_values=pixel_values).last_hidden_state, captions)

    def _generate(self, image_states, **generation):
        text = self.model.config.text_config
        b = image_states.shape[0]
        ids = torch.full((b, 1), text.bos_token_id, dtype=torch.long, device=image_states.device)
        out = self.model.text_decoder.generate(
            input_ids=ids, eos_token_id=text.sep_token_id, pad_token_id=text.pad_token_id,
            encoder_hidden_states=image_states,
            encoder_attention_mask=torch.ones(image_states.shape[:-1], dtype=torch.long, device=image_states.device),
            **generation)
        return out

    def tail_generate_ids(self, features, **generation):
        return self._generate(self.vision_tail(features), **generation)

    def decoding(self, **generation) -> Decoding:
        text, decoder = self.model.config.text_config, self.model.text_decoder

        def run(states, ids, cache=None):
            out = decoder(input_ids=ids, encoder_hidden_states=states, cache=cache, use_cache=True,
                          encoder_attention_mask=torch.ones(states.shape[:-1], dtype=torch.long, device=states.device))
            return out.logits, out.cache

        return Decoding([text.bos_token_id], text.sep_token_id, text.pad_token_id,
                        greedy_limit(decoder, 1, generation), run, run)

    def full_generate_ids(self, pixel_values, **generation):
        return self.model.generate(pixel_values=pixel_values, **generation)


# --------------------------------------------------------------------------------- GIT

class _StatesAsImageEncoder(nn.Module):
    """Stands in for GIT's image encoder during the tail: returns the given states, counts calls."""

    def __init__(self, states: torch.Tensor):
        super().__init__()
        self.states, self.calls = states, 0

    def forward(self, pixel_values, interpolate_pos_encoding=False, **kwargs):
        self.calls += 1
        return BaseModelOutput(last_hidden_state=self.states)


@ADAPTERS.register("git")
class GitSplit(HFSplitModel):
    """``GitForCausalLM`` split inside its CLIP image encoder at layer ``k``."""

    def __init__(self, model, tokenizer, split: int | None = None, image_processor=None, name: str = "git"):
        vision = model.git.image_encoder.vision_model
        config = vision.config
        side = _side(config) // _patch(config)
        tower = VisionTower(lambda px: vision.pre_layrnorm(vision.embeddings(px)), vision.encoder.layers,
                            vision.post_layernorm, 1, (side, side), config.hidden_size, _side(config),
                            layer_kwargs={"attention_mask": None})
        super().__init__(model, tokenizer, tower, split, CLIP_MEAN_STD, image_processor, name)
        self.last_image_encoder_calls = 0

    @classmethod
    def from_pretrained(cls, path: str | Path, split: int | None = None) -> "GitSplit":
        from transformers import GitForCausalLM

        tokenizer, processor = _load_folder(path)
        model = _pretrained(GitForCausalLM, path)
        return cls(model, tokenizer, split, image_processor=processor, name=Path(path).name)

    @contextlib.contextmanager
    def _image_states(self, states: torch.Tensor):
        git = self.model.git
        original = git.image_encoder
        stand_in = _StatesAsImageEncoder(states)
        git.image_encoder = stand_in
        try:
            yield torch.zeros(states.shape[0], 3, 1, 1, device=states.device)  # placeholder pixel_values
        finally:
            git.image_encoder = original
            self.last_image_encoder_calls = stand_in.calls

    def _input_ids(self, captions):
        c = self.model.config
        return self.caption_ids(captions, c.bos_token_id, c.eos_token_id, c.pad_token_id)

    def _logits_labels(self, captions, **image):
        ids = self._input_ids(captions)
        mask = (ids != self.model.config.pad_token_id).long()
        logits = self.model(input_ids=ids, attention_mask=mask, **image).logits
        n_image = logits.shape[1] - ids.shape[1]
        labels = ids.masked_fill(mask == 0, -100)[:, 1:]
        return logits[:, n_image:-1], labels

    def tail_logits(self, features, captions):
        with self._image_states(self.vision_tail(features)) as placeholder:
            return self._logits_labels(captions, pixel_values=placeholder)

    def full_logits(self, pixel_values, captions):
        return self._logits_labels(captions, pixel_values=pixel_values)

    def _start_ids(self, batch: int) -> torch.Tensor:
        return torch.full((batch, 1), self.model.config.bos_token_id, dtype=torch.long, device=self.device)

    def tail_generate_ids(self, features, **generation):
        with self._image_states(self.vision_tail(features)) as placeholder:
            return self.model.generate(pixel_values=placeholder, input_ids=self._start_ids(features.shape[0]),
                                       **generation)

    def full_generate_ids(self, pixel_values, **generation):
        return self.model.generate(pixel_values=pixel_values, input_ids=self._start_ids(pixel_values.shape[0]),
                                   **generation)

    def decoding(self, **generation) -> Decoding:
        config, model = self.model.generation_config, self.model

        image_tokens = []

        def prefill(states, ids):   # the image tokens enter the cache in front of the text, as in generate
            with self._image_states(states) as placeholder:
                out = model(input_ids=ids, pixel_values=placeholder, use_cache=True)
            image_tokens[:] = [out.cache.get_seq_length() - ids.shape[1]]
            return out.logits[:, -ids.shape[1]:], out.cache

        def extend(states, ids, cache):
            # text positions count text tokens only, as generate's position ids (from its attention
            # mask) do; GIT's own default would count the cached image tokens too
            done = cache.get_seq_length() - image_tokens[0]
            positions = torch.arange(done, done + ids.shape[1], device=ids.device).expand(ids.shape[0], -1)
            out = model(input_ids=ids, cache=cache, use_cache=True, position_ids=positions)
            return out.logits, out.cache

        bos = config.bos_token_id if config.bos_token_id is not None else model.config.bos_token_id
        return Decoding([self._ids(bos)], self._ids(config.eos_token_id), self._ids(config.pad_token_id),
                        greedy_limit(model, 1, generation), prefill, extend)
