"""A drafter: a small caption decoder on the device that reads the head's own features.

In speculative captioning across tiers the device, idle while its payload is on the air, drafts
the caption; the receiver verifies the draft in one pass (:mod:`.speculative`). The drafter is a
"familial" member of the split model: it reads the features the device's head already computed
(no second vision model), writes the verifier's own token ids (its tokenizer, start and end
tokens), and learns by distillation from the verifier's greedy captions::

    features [B, N, D] (the head's, at the split) ─► LayerNorm ─► Linear(D, width) ─► memory [B, N, width]
    per token: embedding + attention over the memory (queried by the state) ─► GRU cells ─► next token

Why a GRU and not a small transformer decoder: the drafter runs its passes one after the other on
the device, at batch 1, where a pass costs what its kernel launches cost: a GRU cell and one
attention read are a handful of operations per token (a 2-layer GPT-2 of the same width took
about half the verifier's own greedy time per caption on the CPU here, leaving little to gain).

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

from intelliflow.errors import CheckpointError, ConfigError, RegistryError

from .registry import WEIGHTS_DIR

SHIPPED_DRAFTERS = {"shapes-drafter": WEIGHTS_DIR / "shapes-drafter"}


@dataclass
class DrafterConfig:
    """What a drafter is and whom it drafts for.

    :ivar model: the verifier (a shipped model's name or a folder's name); :ivar split: its split point;
    :ivar feature_dim: ``D`` at that split; :ivar vocab_size: the verifier's vocabulary;
    :ivar start, eos, pad: the verifier's generation start ids, end and pad ids;
    :ivar max_new_tokens: the longest draft; :ivar width, layers: the GRU's size.
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
    layers: int = 1


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
        if config.width < 1 or config.layers < 1:
            raise ConfigError(f"a drafter needs width and layers >= 1, got {config.width}, {config.layers}")
        self.config = config
        w = config.width
        self.adapter = nn.Sequential(nn.LayerNorm(config.feature_dim), nn.Linear(config.feature_dim, w))
        self.embed = nn.Embedding(config.vocab_size, w)
        self.initial = nn.Linear(w, w * config.layers)
        self.query = nn.Linear(w, w, bias=False)
        self.cells = nn.ModuleList([nn.GRUCell(2 * w if i == 0 else w, w) for i in range(config.layers)])
        self.out = nn.Linear(2 * w, config.vocab_size)
        #: n-gram counts of the training captions: {"a b": {"c": count}} (space-joined token ids), for the draft coder
        self.ngrams: dict[str, dict[str, int]] = {}

    @classmethod
    def for_model(cls, model, width: int = 128, layers: int = 1) -> "Drafter":
        """A randomly initialised drafter for a :class:`~intelliflow.models.SplitModel` at its split."""
        decoding = model.decoding()
        vocab = getattr(model.tokenizer, "vocab_size", None)
        vocab = max(len(model.tokenizer), vocab or 0)
        return cls(DrafterConfig(str(getattr(model, "name", "model")), int(model.split), int(model.feature_dim),
                                 int(vocab), [int(t) for t in decoding.start], int(decoding.eos),
                                 int(decoding.pad), int(decoding.max_new_tokens), width, layers))

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

    def _begin(self, memory: torch.Tensor) -> list[torch.Tensor]:
        """The GRU state before the first token: from the mean of the memory [B, N, width]."""
        return list(torch.tanh(self.initial(memory.mean(1))).chunk(self.config.layers, -1))

    def _step(self, memory: torch.Tensor, token: torch.Tensor, state: list[torch.Tensor]):
        """One token [B] in -> (next-token logits [B, V], the new state)."""
        scores = torch.bmm(memory, self.query(state[-1]).unsqueeze(-1)).squeeze(-1) / math.sqrt(self.config.width)
        context = torch.bmm(scores.softmax(-1).unsqueeze(1), memory).squeeze(1)
        x, new = torch.cat([self.embed(token), context], -1), []
        for cell, h in zip(self.cells, state):
            x = cell(x, h)
            new.append(x)
        return self.out(torch.cat([x, context], -1)), new

    def loss(self, features: torch.Tensor, tokens: Sequence[Sequence[int]]) -> torch.Tensor:
        """Teacher-forced cross-entropy of the verifier's captions (token ids after the start): a scalar."""
        c = self.config
        rows = [list(t)[: c.max_new_tokens] for t in tokens]
        length = max(1, max(len(t) for t in rows))
        labels = torch.full((len(rows), length), -100, dtype=torch.long)
        inputs = torch.full((len(rows), length), c.pad, dtype=torch.long)
        for i, t in enumerate(rows):
            labels[i, :len(t)] = torch.tensor(t, dtype=torch.long)
            inputs[i, 1:len(t)] = torch.tensor(t[:-1], dtype=torch.long)
        labels, inputs = labels.to(self.device), inputs.to(self.device)
        memory = self.memory(features)
        state = self._begin(memory)
        for token in c.start[:-1]:   # start tokens before the last only move the state
            _, state = self._step(memory, torch.full((len(rows),), token, device=self.device), state)
        inputs[:, 0] = c.start[-1]
        logits = []
        for t in range(length):
            out, state = self._step(memory, inputs[:, t], state)
            logits.append(out)
        logits = torch.stack(logits, 1)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)

    @torch.no_grad()
    def draft(self, features: torch.Tensor, max_new_tokens: int | None = None) -> Draft:
        """Greedy drafts of head features [B, N, D] (see :class:`Draft`); rows that ended keep being
        fed their end token until all have."""
        c = self.config
        memory = self.memory(features.to(self.device))
        b = memory.shape[0]
        state = self._begin(memory)
        token = None
        for start in c.start:
            token = torch.full((b,), start, dtype=torch.long, device=self.device)
            logits, state = self._step(memory, token, state)
        tokens: list[list[int]] = [[] for _ in range(b)]
        total = torch.zeros(b, dtype=torch.float64)
        open_rows = torch.ones(b, dtype=torch.bool)
        for _ in range(max_new_tokens or c.max_new_tokens):
            logits = logits.float()
            token = logits.argmax(-1)
            logp = torch.log_softmax(logits, -1).gather(1, token[:, None])[:, 0].double().cpu()
            for i in torch.nonzero(open_rows).flatten().tolist():
                tokens[i].append(int(token[i]))
                total[i] += logp[i]
            open_rows &= (token != c.eos).cpu()
            if not open_rows.any():
                break
            logits, state = self._step(memory, token, state)
        return Draft(tokens, [math.exp(float(t)) for t in total])

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
