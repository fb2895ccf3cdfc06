"""A drafter: a small caption decoder on the device that reads the head's own features.

In speculative captioning across tiers the device, idle while its payload is on the air, drafts
the caption; the receiver verifies the draft in one pass (:mod:`.speculative`). The drafter is a
"familial" member of the split model: it reads the features the device's head already computed
(no second vision model), writes the verifier's own token ids (its tokenizer, start and end
tokens), and learns by distillation from the verifier's greedy captions::

    features [B, N, D] (the head's, at the split) ─► LayerNorm ─► Linear(D, width) ─► memory [B, N, width]
    start tokens ─► GPT-2 decoder (``layers`` x ``width``, cross-attention to the memory) ─► draft tokens

It also carries the n-gram statistics of the captions it was trained on (:attr:`Drafter.ngrams`),
from which :mod:`intelliflow.codec.tokens` codes a draft compactly.

>>> import torch
>>> from intelliflow.models import load_split_model
>>> from intelliflow.models.drafter import load_drafter
>>> from intelliflow.data.shapes import make_sample
>>> model, drafter = load_split_model("shapes-captioner"), load_drafter("shapes-drafter")
>>> with torch.no_grad():
...     features = model.head(model.preprocess([make_sample("test", 1).image]))
>>> draft = drafter.draft(features)
>>> model.decode_ids(torch.tensor(draft.tokens))
['a small cyan square']
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from intelliflow.errors import CheckpointError, ConfigError, RegistryError

from .registry import WEIGHTS_DIR

SHIPPED_DRAFTERS = {"shapes-drafter": WEIGHTS_DIR / "shapes-drafter"}


@dataclass
class DrafterConfig:
    """What a drafter is and whom it drafts for.

    :ivar model: the verifier (a shipped model's name or a folder's name); :ivar split: its split point;
    :ivar feature_dim: ``D`` at that split; :ivar vocab_size: the verifier's vocabulary;
    :ivar start, eos, pad: the verifier's generation start ids, end and pad ids;
    :ivar max_new_tokens: the longest draft; :ivar width, layers, heads: the decoder's size.
    """

    model: str
    split: int
    feature_dim: int
    vocab_size: int
    start: list[int]
    eos: int
    pad: int
    max_new_tokens: int
    width: int = 128
    layers: int = 2
    heads: int = 4


@dataclass
class Draft:
    """Drafts of a batch: ``tokens`` per image (after the start, with the end token where the drafter
    ended) and ``confidence`` per image, the drafter's own probability of its greedy draft (0..1)."""

    tokens: list[list[int]]
    confidence: list[float] = field(default_factory=list)


class Drafter(nn.Module):
    """The device-side draft decoder (see the module docstring).

    :param config: a :class:`DrafterConfig` (:meth:`for_model` fills it from a split model).
    """

    def __init__(self, config: DrafterConfig):
        super().__init__()
        if config.width % config.heads:
            raise ConfigError(f"drafter width {config.width} must be a multiple of heads {config.heads}")
        self.config = config
        self.adapter = nn.Sequential(nn.LayerNorm(config.feature_dim), nn.Linear(config.feature_dim, config.width))
        self.decoder = GPT2LMHeadModel(GPT2Config(
            vocab_size=config.vocab_size, n_positions=len(config.start) + config.max_new_tokens + 1,
            n_embd=config.width, n_layer=config.layers, n_head=config.heads, add_cross_attention=True,
            is_decoder=True, bos_token_id=config.start[-1], eos_token_id=config.eos, pad_token_id=config.pad,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
        #: n-gram counts of the training captions: {"a b": {"c": count}} (space-joined token ids), for the draft coder
        self.ngrams: dict[str, dict[str, int]] = {}

    @classmethod
    def for_model(cls, model, width: int = 128, layers: int = 2, heads: int = 4) -> "Drafter":
        """A randomly initialised drafter for a :class:`~intelliflow.models.SplitModel` at its split."""
        decoding = model.decoding()
        vocab = getattr(model.tokenizer, "vocab_size", None)
        vocab = max(len(model.tokenizer), vocab or 0)
        return cls(DrafterConfig(str(getattr(model, "name", "model")), int(model.split), int(model.feature_dim),
                                 int(vocab), [int(t) for t in decoding.start], int(decoding.eos),
                                 int(decoding.pad), int(decoding.max_new_tokens), width, layers, heads))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_model(self, model) -> None:
        """Refuse a split model this drafter was not made for (another split, feature width or vocabulary)."""
        c = self.config
        if int(model.split) != c.split or int(model.feature_dim) != c.feature_dim:
            raise ConfigError(f"the drafter reads {c.model} features at split {c.split} (width {c.feature_dim}); "
                              f"the model is split at {model.split} (width {model.feature_dim}): load the model "
                              f"with split={c.split} (--split {c.split})")
        decoding = model.decoding()
        if list(decoding.start) != c.start or decoding.eos != c.eos:
            raise ConfigError(f"the drafter writes {c.model}'s tokens (start {c.start}, end {c.eos}); this model "
                              f"starts with {decoding.start} and ends with {decoding.eos}")

    def memory(self, features: torch.Tensor) -> torch.Tensor:
        """Head features [B, N, D] -> the decoder's memory [B, N, width]."""
        if features.dim() != 3 or features.shape[-1] != self.config.feature_dim:
            raise ConfigError(f"the drafter reads features [B, N, {self.config.feature_dim}], "
                              f"got {list(features.shape)}")
        return self.adapter(features)

    def targets(self, tokens: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Captions as token ids (after the start) -> (decoder input [B, S + T - 1], labels [B, T] with -100)."""
        c = self.config
        length = max(1, max(len(t) for t in tokens))
        inputs = torch.full((len(tokens), len(c.start) + length - 1), c.pad, dtype=torch.long)
        labels = torch.full((len(tokens), length), -100, dtype=torch.long)
        for i, t in enumerate(tokens):
            t = list(t)[: c.max_new_tokens]
            row = c.start + t[:-1]
            inputs[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            labels[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        return inputs.to(self.device), labels.to(self.device)

    def loss(self, features: torch.Tensor, tokens: Sequence[Sequence[int]]) -> torch.Tensor:
        """Teacher-forced cross-entropy of the verifier's captions (token ids after the start): a scalar."""
        inputs, labels = self.targets(tokens)
        # pads only follow a caption's end and the decoder is causal: an all-ones mask is exact
        logits = self.decoder(input_ids=inputs, attention_mask=torch.ones_like(inputs),
                              encoder_hidden_states=self.memory(features)).logits
        s = len(self.config.start)
        logits = logits[:, s - 1:]
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)

    @torch.no_grad()
    def draft(self, features: torch.Tensor, max_new_tokens: int | None = None) -> Draft:
        """Greedy drafts of head features [B, N, D] (see :class:`Draft`)."""
        c = self.config
        memory = self.memory(features.to(self.device))
        b = memory.shape[0]
        start = torch.tensor([c.start] * b, dtype=torch.long, device=self.device)
        out = self.decoder.generate(
            input_ids=start, attention_mask=torch.ones_like(start), encoder_hidden_states=memory,
            encoder_attention_mask=torch.ones(memory.shape[:-1], dtype=torch.long, device=self.device),
            max_new_tokens=max_new_tokens or c.max_new_tokens, do_sample=False, num_beams=1,
            eos_token_id=c.eos, pad_token_id=c.pad, output_scores=True, return_dict_in_generate=True)
        new = out.sequences[:, len(c.start):]
        logp = torch.stack([torch.log_softmax(s.float(), -1) for s in out.scores], 1) if out.scores else None
        tokens, confidence = [], []
        for i in range(b):
            row = new[i].tolist()
            row = row[: row.index(c.eos) + 1] if c.eos in row else row
            tokens.append(row)
            total = 0.0 if logp is None else float(logp[i, torch.arange(len(row)), torch.tensor(row)].sum()) if row else 0.0
            confidence.append(math.exp(total))
        return Draft(tokens, confidence)

    def count_ngrams(self, tokens: Sequence[Sequence[int]], order: int = 3) -> None:
        """Add captions (token ids after the start) to :attr:`ngrams` (contexts of ``order - 1`` tokens)."""
        start = [str(t) for t in self.config.start]
        for row in tokens:
            history = list(start)
            for t in row:
                context = " ".join(history[-(order - 1):])
                counts = self.ngrams.setdefault(context, {})
                counts[str(t)] = counts.get(str(t), 0) + 1
                history.append(str(t))

    # -- persistence
    def save(self, folder: str | Path, card: str | None = None) -> None:
        """Write safetensors weights and the JSON config (with the n-gram counts) to ``folder``."""
        from intelliflow.checkpoint import save_checkpoint

        folder = Path(folder)
        save_checkpoint(folder, self.state_dict(), {"drafter": asdict(self.config), "ngrams": self.ngrams})
        if card:
            (folder / "README.md").write_text(card)

    @classmethod
    def load(cls, folder: str | Path) -> "Drafter":
        """Load what :meth:`save` wrote."""
        from intelliflow.checkpoint import load_checkpoint

        tensors, meta = load_checkpoint(folder)
        if not isinstance(meta.get("drafter"), dict):
            raise ConfigError(f"{folder} is not a drafter (its config.json has no 'drafter' object)")
        drafter = cls(DrafterConfig(**meta["drafter"]))
        drafter.load_state_dict(tensors, strict=True)
        drafter.ngrams = {k: dict(v) for k, v in meta.get("ngrams", {}).items()}
        return drafter.eval()


def load_drafter(name_or_path: str | Path) -> Drafter:
    """A shipped drafter (``"shapes-drafter"``) or a drafter folder that :meth:`Drafter.save` wrote."""
    folder = SHIPPED_DRAFTERS.get(str(name_or_path))
    if folder is not None:
        if not (folder / "model.safetensors").is_file():
            raise CheckpointError(f"the weights of {name_or_path!r} are not in this installation ({folder}); "
                                  "train them with: intelliflow train recipes/shapes/drafter.yaml")
        return Drafter.load(folder)
    folder = Path(name_or_path)
    if not (folder / "config.json").is_file():
        raise RegistryError(f"unknown drafter {str(name_or_path)!r}: not one of {sorted(SHIPPED_DRAFTERS)} and not "
                            "a folder with a config.json")
    return Drafter.load(folder)
