"""Split adapters for transformers' image-text-to-text models: LLaVA, LLaVA-NeXT, Qwen2-VL,
PaliGemma, Idefics3 / SmolVLM and BLIP-2 (with OPT).

A multimodal LLM turns an image into tokens the language model reads::

    pixels ─► vision tower (layers 0 .. L-1) ─► [Q-Former] ─► projector ─► image tokens ─► LLM ─► caption

The device runs the front of that path, the server the rest and the LLM. Split points, by name
(:attr:`VisionLanguageSplit.split_names`; the integer ``split`` indexes that list):

- ``"vision.k"``: the input of tower layer ``k`` (``vision.0``: right after the patch embedding),
  for every layer the model's image features still depend on;
- ``"qformer"`` (BLIP-2): the Q-Former's query outputs, 32 tokens that lie on no grid;
- ``"projector"`` (the default): the projector's output, the tokens the LLM reads.

How the server runs the tail without re-implementing any model: it calls the model's own
``generate`` (or forward) with *placeholder* pixels (sample ``i`` filled with ``i + 1``, so beam
search's copies still say which image they are) while the modules in front of the split point are
bypassed for the call: the patch embedding returns zeros of its shape, tower layers before the
split return their input, and the module at the split point takes (or returns) the decoded
features. Everything after the split point is the model's own code on the model's own path, so
head + tail give the unsplit model's tokens exactly, greedy or beam, and the vision path runs
once per ``generate`` (:attr:`VisionLanguageSplit.last_vision_calls`). The head is the model's
own forward, stopped at the split point.

Prompts come from the folder's processor (its chat template where it has one, else the family's
plain prompt format) and are fixed per model: images are resized to one size
(``image_size``, default the tower's), so every image gives the same number of image tokens.

.. code-block:: python

    model = load_split_model("/models/llava-1.5-7b-hf", split="projector")
    features = model.head(model.preprocess(images))         # [B, 576, 4096]
    captions = model.tail_generate(features, max_new_tokens=30)
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from intelliflow.errors import ConfigError, ShapeError

from .hf_adapters import _load_folder, _pretrained
from .protocol import SplitModel, square_grid
from .registry import ADAPTERS


class _Stop(Exception):
    """Raised by the head's hook once the features at the split point are in hand."""


def _first_tensor(args, kwargs, name="hidden_states") -> torch.Tensor:
    return args[0] if args else kwargs[name]


class VisionLanguageSplit(SplitModel):
    """Shared machinery of the image-text-to-text adapters (see the module docstring).

    Subclasses name the model's parts (:meth:`parts`), how many tower layers feed the image
    features (:meth:`used_layers`), the family's plain prompt (:attr:`plain_prompt`) and, where the
    raw tensors at a split point are not ``[B, N, D]``, how they map to tokens
    (:meth:`to_tokens`/:meth:`from_tokens`).
    """

    #: the captioning instruction when none is given
    default_prompt = "Describe the image in one short sentence."
    #: the family's prompt format without a chat template; ``{prompt}`` is the instruction
    plain_prompt = "<image>\n{prompt}"
    #: the transformers class of the whole model
    model_class_name = ""

    def __init__(self, model: nn.Module, processor, split: int | str | None = None, prompt: str | None = None,
                 image_size: int | None = None, name: str = "model"):
        super().__init__()
        self.model, self.processor, self.name = model.eval(), processor, name
        self.tokenizer = processor.tokenizer
        parts = self.parts()
        self._embed, self._layers = parts["embeddings"], parts["layers"]
        self._qformer, self._projector = parts.get("qformer"), parts["projector"]
        self.image_size = int(image_size or self.native_image_size())
        self.prompt = prompt or self.default_prompt
        names = [f"vision.{k}" for k in range(self.used_layers())]
        names += (["qformer"] if self._qformer is not None else []) + ["projector"]
        self.split_names: list[str] = names
        self.split = self._split_index(split)
        self.last_vision_calls = 0
        # a tail bypasses modules for its call: heads and tails of one model take turns
        self._lock = threading.RLock()
        self._prompt_inputs = self._build_prompt()
        self._layout()

    # ---------------------------------------------------------------- what a family declares
    def parts(self) -> dict[str, Any]:
        """``embeddings`` (the module that reads the pixels), ``layers`` (the tower's layers),
        ``projector`` (its output is the ``"projector"`` point), optionally ``qformer``."""
        raise NotImplementedError

    def used_layers(self) -> int:
        """How many tower layers (from the first) the image features depend on."""
        return len(self._layers)

    def native_image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    def to_tokens(self, point: str, raw: torch.Tensor, batch: int) -> torch.Tensor:
        """The tensor the model computes at ``point`` -> features [B, N, D] (prefix, then the grid row-major)."""
        return raw.reshape(batch, -1, raw.shape[-1])

    def from_tokens(self, point: str, tokens: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_tokens`."""
        return tokens.reshape(self._raw_shape(point, tokens.shape[0]))

    def model_pixels(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Batch-first pixels from :meth:`preprocess` -> the model's image inputs."""
        return {"pixel_values": pixels}

    # ---------------------------------------------------------------- split points
    def _split_index(self, split) -> int:
        if split is None:
            return len(self.split_names) - 1
        if isinstance(split, str) and not split.lstrip("-").isdigit():
            if split not in self.split_names:
                raise ConfigError(f"{self.name}: unknown split point {split!r}; the points are "
                                  f"{self.split_names[0]} .. {self.split_names[-1]}")
            return self.split_names.index(split)
        index = int(split)
        if not 0 <= index < len(self.split_names):
            raise ConfigError(f"split must be in 0..{len(self.split_names) - 1} for {self.name} "
                              f"({self.split_names[0]} .. {self.split_names[-1]}), got {split}")
        return index

    @property
    def default_split(self) -> int:
        return len(self.split_names) - 1

    @property
    def num_split_points(self) -> int:
        return len(self.split_names)

    @property
    def point(self) -> str:
        """The name of the split point."""
        return self.split_names[self.split]

    @property
    def feature_grid(self) -> tuple[int, int]:
        return self._grid[self.point]

    @property
    def feature_dim(self) -> int:
        return self._dims[self.point]

    @property
    def on_grid(self) -> bool:
        """Whether the features lie on a spatial grid (False for Q-Former queries, laid out 1 x N)."""
        return self.point != "qformer"

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def grid_for(self, point: str, tokens: int) -> tuple[int, tuple[int, int]]:
        """``(prefix_tokens, (H', W'))`` of ``tokens`` features at ``point``: a square grid behind
        the prefix (a CLS token) where there is one, else one row."""
        return square_grid(tokens) or (0, (1, tokens))

    def _layout(self) -> None:
        """One forward pass on a blank image learns each point's raw shape and token layout, the
        shape the patch embedding returns per image and its rows of pixels per image."""
        blank = self.preprocess([np.zeros((self.image_size, self.image_size, 3), np.uint8)])
        self._pixel_shape = tuple(blank.shape[1:])
        caught: dict[str, torch.Tensor] = {}

        def embedded(module, args, kwargs, output):
            self._rows_per_sample = _first_tensor(args, kwargs, "pixel_values").shape[0]
            self._embed_raw = tuple(output.shape)
        handles = [self._embed.register_forward_hook(embedded, with_kwargs=True)]
        handles += [self._hook(point, caught, stop=point == self.split_names[-1]) for point in self.split_names]
        self._run(blank, handles)
        self._raw, self._grid, self._dims, self._prefix = {}, {}, {}, {}
        for point in self.split_names:
            if point not in caught:
                raise ConfigError(f"{self.name}: the forward pass never reached split point {point!r}")
            self._raw[point] = tuple(caught[point].shape)
            tokens = self.to_tokens(point, caught[point], 1)
            self._prefix[point], self._grid[point] = self.grid_for(point, tokens.shape[1])
            self._dims[point] = tokens.shape[-1]
        self.prefix_tokens = self._prefix[self.point] if self.on_grid else 0

    def _raw_shape(self, point: str, batch: int) -> tuple[int, ...]:
        raw = self._raw[point]
        return (raw[0] * batch, *raw[1:])

    # ---------------------------------------------------------------- prompts and pixels
    def prompt_text(self) -> str:
        """The prompt the processor expands: the chat template's where the processor has one."""
        template = getattr(self.processor, "chat_template", None)
        if template:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True)
        return self.plain_prompt.format(prompt=self.prompt)

    #: extra keywords the family's processor takes (Idefics3: no tiling)
    processor_kwargs: dict = {}

    def _build_prompt(self) -> dict[str, torch.Tensor]:
        from PIL import Image

        blank = Image.new("RGB", (self.image_size, self.image_size))
        inputs = self.processor(text=[self.prompt_text()], images=self._image_list([blank]), return_tensors="pt",
                                **self.processor_kwargs)
        return {k: v for k, v in inputs.items() if k not in ("pixel_values", "labels") and isinstance(v, torch.Tensor)}

    def _image_list(self, images: list) -> list:
        """Images as the family's processor takes a batch of them (Idefics3: a list per prompt)."""
        return images

    def prompt_inputs(self, batch: int) -> dict[str, torch.Tensor]:
        """The prompt's model inputs for ``batch`` images (input ids [B, T] and the family's extras)."""
        device = self.device
        return {k: v.repeat(batch, *([1] * (v.dim() - 1))).to(device) for k, v in self._prompt_inputs.items()}

    def _image_processor_pixels(self, images: list) -> torch.Tensor:
        out = self.processor.image_processor(images=self._image_list(images), return_tensors="pt",
                                             **self.processor_kwargs)
        return out["pixel_values"]

    def preprocess(self, images: Sequence, device: torch.device | str | None = None) -> torch.Tensor:
        """PIL images or uint8 arrays -> batch-first pixels [B, ...] (the folder's image processor,
        after resizing to ``image_size`` square so every image gives as many tokens)."""
        from PIL import Image

        resized = []
        for image in images:
            if not isinstance(image, Image.Image):
                image = Image.fromarray(np.asarray(image, dtype=np.uint8))
            image = image.convert("RGB")
            if image.size != (self.image_size, self.image_size):
                image = image.resize((self.image_size, self.image_size), Image.BICUBIC)
            resized.append(image)
        pixels = self._image_processor_pixels(resized)
        pixels = pixels.reshape(len(resized), -1, *pixels.shape[1:]) if pixels.shape[0] != len(resized) else pixels
        return pixels.to(self.device if device is None else device)

    def _placeholder(self, batch: int) -> dict[str, torch.Tensor]:
        """Pixels that say which image they are (sample ``i`` is all ``i + 1``), in the model's form."""
        shape = self._pixel_shape
        values = torch.arange(1, batch + 1, dtype=torch.float32, device=self.device)
        return self.model_pixels(values.view(batch, *([1] * len(shape))).expand(batch, *shape).contiguous())

    # ---------------------------------------------------------------- head
    def _hook(self, point: str, caught: dict, stop: bool):
        """A hook that puts the raw tensor the model computes at ``point`` into ``caught[point]``
        (the input of a tower layer, the output of the Q-Former or projector); ``stop`` ends the
        forward pass there."""
        def keep(tensor):
            caught[point] = tensor
            if stop:
                raise _Stop
        if point.startswith("vision."):
            return self._layers[int(point.split(".")[1])].register_forward_pre_hook(
                lambda module, args, kwargs: keep(_first_tensor(args, kwargs)), with_kwargs=True)
        module = self._qformer if point == "qformer" else self._projector
        return module.register_forward_hook(lambda module, args, output: keep(
            output[0] if isinstance(output, (tuple, list)) else getattr(output, "last_hidden_state", output)))

    def _run(self, pixels: torch.Tensor, handles: list) -> None:
        """The model's forward on the prompt and ``pixels`` until a hook stops it; the hooks go after."""
        try:
            with self._lock:
                self.model(**self.prompt_inputs(pixels.shape[0]), **self.model_pixels(pixels))
        except _Stop:
            pass
        finally:
            for handle in handles:
                handle.remove()

    def _capture(self, pixels: torch.Tensor, point: str) -> torch.Tensor:
        """The raw tensor the model computes at ``point`` on ``pixels``: its forward, stopped there."""
        caught: dict[str, torch.Tensor] = {}
        self._run(pixels, [self._hook(point, caught, stop=True)])
        if point not in caught:
            raise ConfigError(f"{self.name}: the forward pass never reached split point {point!r}")
        return caught[point]

    def head(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Device side: batch-first pixels -> features [B, N, D] at the split point."""
        raw = self._capture(pixel_values, self.point)
        return self.to_tokens(self.point, raw, pixel_values.shape[0])

    # ---------------------------------------------------------------- tail
    @contextlib.contextmanager
    def _features_at_split(self, features: torch.Tensor):
        """Bypass the vision path in front of the split point and put ``features`` there."""
        self.check_features(features)
        point, batch = self.point, features.shape[0]
        exact = {torch.bfloat16: 256, torch.float16: 2048}.get(next(self.model.parameters()).dtype, 1 << 24)
        if batch > exact:   # placeholder pixels say i + 1: integers the model's dtype holds exactly
            raise ConfigError(f"{self.name}: a tail batch of at most {exact} images in this dtype, got {batch}")
        raw_all = self.from_tokens(point, features)            # [B * rows, ...]
        per_sample = raw_all.shape[0] // batch
        state = {"calls": 0}
        embed_out = self._embed_raw

        def embed(*args, **kwargs):
            pixels = _first_tensor(args, kwargs, "pixel_values")
            rows = pixels.reshape(pixels.shape[0], -1)[:, 0].round().long() - 1      # one per pixel row
            samples = rows[:: self._rows_per_sample]
            if samples.min() < 0 or samples.max() >= batch:
                raise ConfigError(f"{self.name}: the tail saw pixels that are not its placeholders")
            state["samples"], state["calls"] = samples, state["calls"] + 1
            return torch.zeros(samples.shape[0] * embed_out[0], *embed_out[1:], dtype=features.dtype,
                               device=features.device)

        def chosen() -> torch.Tensor:   # the features of the images in this call, beams repeated
            picked = raw_all.reshape(batch, per_sample, *raw_all.shape[1:])[state["samples"]]
            return picked.reshape(-1, *raw_all.shape[1:])

        def passthrough(*args, **kwargs):
            return _first_tensor(args, kwargs)

        patched: list[tuple[nn.Module, Callable]] = [(self._embed, embed)]
        pre_hooks: list[tuple[nn.Module, Callable]] = []
        if point.startswith("vision."):
            # the features are what layer k-1 returns (the hidden states the model records agree),
            # or, at k = 0, what layer 0 is given
            k = int(point.split(".")[1])
            patched += [(layer, passthrough) for layer in self._layers[: max(k - 1, 0)]]
            if k > 0:
                patched.append((self._layers[k - 1], lambda *args, **kwargs: chosen()))
            else:
                def substituted(module, args, kwargs):
                    if args:
                        return (chosen(), *args[1:]), kwargs
                    return args, {**kwargs, "hidden_states": chosen()}
                pre_hooks.append((self._layers[0], substituted))
        else:
            patched += [(layer, passthrough) for layer in self._layers]
            if self._qformer is not None:
                query_shape = self._raw["qformer"]

                def qformer(*args, **kwargs):
                    if point == "qformer":
                        states = chosen()
                    else:
                        states = torch.zeros(state["samples"].shape[0] * query_shape[0], *query_shape[1:],
                                             dtype=features.dtype, device=features.device)
                    return BaseModelOutputWithPooling(last_hidden_state=states)
                patched.append((self._qformer, qformer))
            if point == "projector":
                patched.append((self._projector, lambda *args, **kwargs: chosen()))
        saved: list[tuple[nn.Module, Callable | None]] = []
        handles = []
        with self._lock:
            try:
                handles += [module.register_forward_pre_hook(hook, with_kwargs=True) for module, hook in pre_hooks]
                for module, forward in patched:
                    saved.append((module, module.__dict__.get("forward")))   # an instance forward of its own
                    module.forward = forward
                yield
            finally:
                for module, before in saved:
                    module.__dict__.pop("forward", None)     # the class's forward again
                    if before is not None:
                        module.forward = before
                for handle in handles:
                    handle.remove()
                self.last_vision_calls = state["calls"]

    def _generate(self, batch: int, pixels: dict, generation: dict) -> torch.Tensor:
        """Generated ids [B, T] without the prompt (the decoder-only LLMs return prompt + new tokens)."""
        generation = {"pad_token_id": self._pad_id(), **generation}
        ids = self.model.generate(**self.prompt_inputs(batch), **pixels, **generation)
        return ids[:, self._prompt_inputs["input_ids"].shape[1]:]

    def tail_generate_ids(self, features: torch.Tensor, **generation) -> torch.Tensor:
        with self._features_at_split(features):
            return self._generate(features.shape[0], self._placeholder(features.shape[0]), generation)

    def full_generate_ids(self, pixel_values: torch.Tensor, **generation) -> torch.Tensor:
        return self._generate(pixel_values.shape[0], self.model_pixels(pixel_values), generation)

    # ---------------------------------------------------------------- teacher forcing
    def _eos_id(self) -> int:
        eos = self.model.generation_config.eos_token_id
        eos = self.tokenizer.eos_token_id if eos is None else eos
        return int(eos[0] if isinstance(eos, (list, tuple)) else eos)

    def _pad_id(self) -> int:
        pad = self.model.generation_config.pad_token_id
        pad = self.tokenizer.pad_token_id if pad is None else pad
        pad = self._eos_id() if pad is None else pad
        return int(pad[0] if isinstance(pad, (list, tuple)) else pad)

    def _teacher_inputs(self, captions: Sequence[str]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Prompt + caption + end token per image, right-padded: (model inputs, labels [B, T + C])."""
        batch = len(captions)
        inputs = self.prompt_inputs(batch)
        prompt = inputs["input_ids"]
        rows = [self.tokenizer(c, add_special_tokens=False)["input_ids"] + [self._eos_id()] for c in captions]
        length = max(len(r) for r in rows)
        text = torch.full((batch, length), self._pad_id(), dtype=torch.long, device=prompt.device)
        mask = torch.zeros(batch, length, dtype=torch.long, device=prompt.device)
        for i, r in enumerate(rows):
            text[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        inputs["input_ids"] = torch.cat([prompt, text], dim=1)
        prompt_mask = inputs.get("attention_mask", torch.ones_like(prompt))
        inputs["attention_mask"] = torch.cat([prompt_mask, mask], dim=1)
        for key, value in list(inputs.items()):   # per-token extras grow with the caption
            if key not in ("input_ids", "attention_mask") and value.dim() == 2 and value.shape == prompt.shape:
                # PaliGemma's token types mark the caption as the suffix its prefix-LM predicts;
                # Qwen2-VL's multimodal token types are 0 (text) on the caption
                grown = mask if key == "token_type_ids" else torch.zeros_like(mask)
                inputs[key] = torch.cat([value, grown.to(value.dtype)], dim=1)
        labels = torch.cat([torch.full_like(prompt, -100), text.masked_fill(mask == 0, -100)], dim=1)
        return inputs, labels

    def _logits(self, captions: Sequence[str], pixels: dict) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, labels = self._teacher_inputs(captions)
        logits = self.model(**inputs, **pixels).logits
        start = self._prompt_inputs["input_ids"].shape[1]
        return logits[:, start - 1: -1], labels[:, start:]

    def tail_logits(self, features, captions):
        with self._features_at_split(features):
            return self._logits(captions, self._placeholder(features.shape[0]))

    def full_logits(self, pixel_values, captions):
        return self._logits(captions, self.model_pixels(pixel_values))

    def decode_ids(self, ids: torch.Tensor) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def check_features(self, features: torch.Tensor) -> None:
        n = self._prefix[self.point] + self.feature_grid[0] * self.feature_grid[1]
        if features.dim() != 3 or tuple(features.shape[1:]) != (n, self.feature_dim):
            raise ShapeError(f"features must be [B, {n}, {self.feature_dim}] at split {self.point} of "
                             f"{self.name}, got {list(features.shape)}")

    # ---------------------------------------------------------------- loading
    @classmethod
    def from_pretrained(cls, path: str | Path, split: int | str | None = None, prompt: str | None = None,
                        image_size: int | None = None) -> "VisionLanguageSplit":
        import transformers
        from transformers import AutoProcessor

        path = Path(path)
        _load_folder(path)   # the folder and tokenizer checks, one line each
        try:
            processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"model folder {path}: no processor for {cls.model_class_name} can be read "
                              f"({str(exc)[:120]}); save it beside the weights: processor.save_pretrained(folder)") from exc
        model = _pretrained(getattr(transformers, cls.model_class_name), path)
        return cls(model, processor, split=split, prompt=prompt, image_size=image_size, name=path.name)


# --------------------------------------------------------------------------------- the families

def _feature_layer_index(layer, num_layers: int) -> int:
    """The earliest hidden-state index (0: embeddings, ``i``: after layer ``i - 1``) the feature
    layers select (LLaVA concatenates every one of a list): a split point may not lie after it."""
    layers = layer if isinstance(layer, (list, tuple)) else [layer]
    return min(int(i) % (num_layers + 1) for i in layers)


@ADAPTERS.register("llava")
class LlavaSplit(VisionLanguageSplit):
    """``LlavaForConditionalGeneration``: a CLIP (or SigLIP) tower, its ``vision_feature_layer``
    (by default the second last), the MLP projector, then the LLM."""

    model_class_name = "LlavaForConditionalGeneration"
    plain_prompt = "USER: <image>\n{prompt} ASSISTANT:"

    def _tower(self):
        tower = self.model.model.vision_tower
        return getattr(tower, "vision_model", tower)

    def parts(self):
        tower = self._tower()
        return {"embeddings": tower.embeddings, "layers": tower.encoder.layers,
                "projector": self.model.model.multi_modal_projector}

    def used_layers(self):
        # the (earliest) selected hidden state is the input of layer i: layers 0 .. i-1 feed it
        # (layer i too runs, unused or for a later selected state; a point at its input is the
        # selected state itself); a point after i would leave that state to the bypassed layers
        i = _feature_layer_index(self.model.config.vision_feature_layer, len(self._layers))
        return min(i + 1, len(self._layers))


@ADAPTERS.register("llava_next")
class LlavaNextSplit(LlavaSplit):
    """``LlavaNextForConditionalGeneration`` (any-resolution LLaVA): the image is cut into tiles
    (a resized whole image plus crops); features are every tile's tokens, the tiles' CLS tokens
    first, the tiles' grids stacked top to bottom."""

    model_class_name = "LlavaNextForConditionalGeneration"
    plain_prompt = "[INST] <image>\n{prompt} [/INST]"

    def native_image_size(self):
        pinpoints = self.model.config.image_grid_pinpoints
        return int(min(min(p) for p in pinpoints)) if pinpoints else super().native_image_size()

    def to_tokens(self, point, raw, batch):
        tiles = raw.shape[0] // batch
        x = raw.reshape(batch, tiles, *raw.shape[1:])
        if point.startswith("vision.") and self._cls:
            return torch.cat([x[:, :, 0], x[:, :, 1:].reshape(batch, -1, x.shape[-1])], dim=1)
        return x.reshape(batch, -1, x.shape[-1])

    def from_tokens(self, point, tokens):
        batch, tiles = tokens.shape[0], self._raw[point][0]
        if point.startswith("vision.") and self._cls:
            cls, grid = tokens[:, :tiles], tokens[:, tiles:].reshape(batch, tiles, -1, tokens.shape[-1])
            return torch.cat([cls.unsqueeze(2), grid], dim=2).reshape(batch * tiles, -1, tokens.shape[-1])
        return tokens.reshape(batch * tiles, -1, tokens.shape[-1])

    @property
    def _cls(self) -> bool:
        config = self.model.config.vision_config
        side = config.image_size // config.patch_size
        return self._embed_raw[1] == side * side + 1

    def grid_for(self, point, tokens):
        tiles = self._raw[point][0]
        prefix = tiles if point.startswith("vision.") and self._cls else 0
        side = int(round(((tokens - prefix) // tiles) ** 0.5))
        return prefix, (tiles * side, side)


@ADAPTERS.register("paligemma")
class PaliGemmaSplit(VisionLanguageSplit):
    """``PaliGemmaForConditionalGeneration``: a SigLIP tower (no CLS), a linear projector, Gemma;
    the processor writes the image tokens and the BOS token in front of the task prefix."""

    model_class_name = "PaliGemmaForConditionalGeneration"
    default_prompt = "caption en"
    plain_prompt = "<image>{prompt}"

    def parts(self):
        tower = self.model.model.vision_tower
        tower = getattr(tower, "vision_model", tower)
        return {"embeddings": tower.embeddings, "layers": tower.encoder.layers,
                "projector": self.model.model.multi_modal_projector}


@ADAPTERS.register("idefics3")
class Idefics3Split(VisionLanguageSplit):
    """``Idefics3ForConditionalGeneration``: a SigLIP-style tower, a pixel-shuffle connector that
    trades tokens for width (``scale_factor``), then the LLM. Images are not split into tiles
    (one image, ``image_size`` square)."""

    model_class_name = "Idefics3ForConditionalGeneration"
    plain_prompt = "User:<image>{prompt}<end_of_utterance>\nAssistant:"

    def parts(self):
        inner = self.model.model
        return {"embeddings": inner.vision_model.embeddings, "layers": inner.vision_model.encoder.layers,
                "projector": inner.connector}

    processor_kwargs = {"do_image_splitting": False}

    def _image_list(self, images):
        return [[image] for image in images]


@ADAPTERS.register("smolvlm")
class SmolVLMSplit(Idefics3Split):
    """``SmolVLMForConditionalGeneration``: Idefics3's architecture with SmolLM."""

    model_class_name = "SmolVLMForConditionalGeneration"


@ADAPTERS.register("qwen2_vl")
class Qwen2VLSplit(VisionLanguageSplit):
    """``Qwen2VLForConditionalGeneration``: a ViT over 14-pixel patches with 2-D rotary positions,
    then the merger (2 x 2 patches per token, projected to the LLM's width). The tower keeps each
    2 x 2 block of patches together; features here lie row-major on the patch grid."""

    model_class_name = "Qwen2VLForConditionalGeneration"
    plain_prompt = ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{prompt}<|im_end|>\n"
                    "<|im_start|>assistant\n")

    def parts(self):
        visual = self.model.model.visual
        return {"embeddings": visual.patch_embed, "layers": visual.blocks, "projector": visual.merger}

    def native_image_size(self):
        config = self.model.config.vision_config
        unit = config.patch_size * config.spatial_merge_size
        most = getattr(self.processor.image_processor, "max_pixels", None) or \
            (self.processor.image_processor.size or {}).get("longest_edge")
        side = 16 if not most else max(1, min(16, int(most ** 0.5) // unit))
        return int(unit * side)   # 448 for 14-pixel patches: 256 tokens after the merger

    def model_pixels(self, pixels):   # [B, n, C*T*P*P] -> the processor's flat rows
        return {"pixel_values": pixels.reshape(-1, pixels.shape[-1])}

    @property
    def _block_order(self) -> torch.Tensor:
        """Row-major index of each patch in the tower's order (2 x 2 blocks together)."""
        _, h, w = (int(v) for v in self._prompt_inputs["image_grid_thw"][0])
        m = self.model.config.vision_config.spatial_merge_size
        index = torch.arange(h * w).view(h // m, m, w // m, m)
        return index.permute(0, 2, 1, 3).reshape(-1)

    def to_tokens(self, point, raw, batch):
        tokens = raw.reshape(batch, -1, raw.shape[-1])
        if point.startswith("vision."):
            order = self._block_order.to(raw.device)
            tokens = tokens[:, torch.argsort(order)]
        return tokens

    def from_tokens(self, point, tokens):
        if point.startswith("vision."):
            tokens = tokens[:, self._block_order.to(tokens.device)]
        return tokens.reshape(-1, tokens.shape[-1])


@ADAPTERS.register("blip-2")
class Blip2Split(VisionLanguageSplit):
    """``Blip2ForConditionalGeneration``: a ViT tower, the Q-Former (32 learned queries read the
    image), the language projection, then OPT. Split inside the tower, after the Q-Former
    (``"qformer"``: 32 query tokens on no grid, laid out 1 x 32) or after the projection."""

    model_class_name = "Blip2ForConditionalGeneration"
    default_prompt = ""
    plain_prompt = "{prompt}"

    def parts(self):
        if getattr(self.model.config.text_config, "is_encoder_decoder", False):
            raise ConfigError(f"{self.name}: BLIP-2 with an encoder-decoder language model (Flan-T5) is not "
                              "supported; the BLIP-2 OPT models are")
        vision = self.model.vision_model
        return {"embeddings": vision.embeddings, "layers": vision.encoder.layers, "qformer": self.model.qformer,
                "projector": self.model.language_projection}

    def grid_for(self, point, tokens):
        if point in ("qformer", "projector"):
            return 0, (1, tokens)
        return super().grid_for(point, tokens)

    @property
    def on_grid(self):
        return self.point.startswith("vision.")
