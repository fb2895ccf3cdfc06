"""The one inference path: a device call (images to what the codec sends) and a receiver call (what
came off the link to captions). ``Flow``, ``.iflow`` files, the edge service, the device client,
evaluation and the latency measurements all go through these two.

::

    Device.encode:   images ─► codec input ─► codec.encode ─► Sent (bytes per image | symbols [B, n])
                     codec input: the images (takes "image"), the device's own captions ("caption"),
                     or the head's features on their grid [B, D, H, W] ("features")
    Receiver.captions: received ─► codec.decode ─► the model's input ─► captions
                     features: the tail; images: the whole model; captions: as they are

With a drafter (speculative captioning across tiers, :mod:`intelliflow.models.drafter`), the
device also drafts the caption from its head's features; the draft's tokens travel in the payload
(:class:`DraftTokens`: inside a feature codec's entropy-coded message, else in front; every bit
counted) and the receiver verifies them in one pass of the tail (:meth:`SplitModel.tail_verify`):
the caption is token for token the plain greedy one.

Prefix tokens (a CLS token and the like) are not on the grid a feature codec sees. With a byte
codec they travel 8-bit quantised in front of the codec's payload, counted in its bits
(:class:`PrefixTokens`), in training (straight-through) as at inference; beside analog symbols
they travel clean, in training as at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from intelliflow.codec.baselines import QuantizeCodec
from intelliflow.codec.bitstream import read_varint, write_varint
from intelliflow.errors import BitstreamError, ConfigError
from intelliflow.models import grid_to_tokens, tokens_to_grid


def trained_split(codec, model_name: str | None = None) -> int | None:
    """The split point a learned codec was trained for (its checkpoint's ``split``), or ``None`` for
    codecs that code any split (fixed baselines, image and caption codecs) and for a codec trained
    for another model than ``model_name`` (``None``: any model)."""
    trained = codec.trained_for
    if trained.get("split") is None:
        return None
    trained_model = trained.get("model")
    if model_name is not None and trained_model is not None \
            and Path(str(trained_model)).name != Path(str(model_name)).name:  # a folder counts by its name
        return None
    return int(trained["split"])


def split_for(codec, model_name: str, split: int | None) -> int | None:
    """The split point to load ``model_name`` at for ``codec``: ``split`` where given, else the one the
    codec was trained for, else ``None`` (the model's default)."""
    return split if split is not None else trained_split(codec, model_name)


def check_split(model, codec) -> None:
    """Refuse a learned codec on another split point than it was trained for: its features would have
    the same shape and decode to nonsense, silently."""
    if codec.takes != "features":
        return
    trained = trained_split(codec, getattr(model, "name", None))
    if trained is not None and getattr(model, "split", trained) != trained:
        raise ConfigError(f"codec {codec.name!r} was trained for split {trained} "
                          f"of {codec.trained_for.get('model', 'its model')}, but the model is split at {model.split}: "
                          f"load the model with split={trained} (--split {trained}), or train a codec for split "
                          f"{model.split}")


class PrefixTokens:
    """Carry a split model's prefix tokens [B, P, D] beside a byte codec's payload.

    Payload = ``varint(len(prefix part)) + prefix part + codec payload``; the prefix part is the
    tokens quantised to 8 bits by the ``quantize`` codec (so it has its own header and check).
    """

    codec = QuantizeCodec(bits=8)

    @classmethod
    def parts(cls, prefix: torch.Tensor) -> list[bytes]:
        """prefix [B, P, D] -> one length-prefixed part per image."""
        return [write_varint(len(p)) + p for p in cls.codec.encode(prefix.detach().transpose(1, 2).unsqueeze(-1))]

    @classmethod
    def split(cls, payloads: Sequence[bytes], expected: tuple[int, int] | None = None
              ) -> tuple[torch.Tensor, list[bytes]]:
        """Payloads -> (prefix [B, P, D], the codec's payloads); ``expected=(P, D)`` refuses other shapes."""
        parts, rest = [], []
        for data in payloads:
            data = bytes(data)
            length, pos = read_varint(data, 0)
            if pos + length > len(data):
                raise BitstreamError("the prefix-token part runs past the end of the payload")
            parts.append(data[pos:pos + length])
            rest.append(data[pos + length:])
        shape = None if expected is None else (expected[1], expected[0], 1)
        return cls.codec.decode(parts, expected=shape).squeeze(-1).transpose(1, 2), rest

    @classmethod
    def train_roundtrip(cls, prefix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: (the 8-bit tokens with a straight-through gradient [B, P, D], their bits [B])."""
        parts = cls.parts(prefix)
        decoded, _ = cls.split(parts)
        decoded = decoded.to(device=prefix.device, dtype=prefix.dtype)
        bits = torch.tensor([8.0 * len(p) for p in parts], device=prefix.device)
        return prefix + (decoded - prefix).detach(), bits


def draft_coder(drafter):
    """The :class:`~intelliflow.codec.tokens.TokenCoder` of a drafter's drafts (its n-gram counts)."""
    from intelliflow.codec.tokens import TokenCoder

    c = drafter.config
    return TokenCoder(drafter.ngrams, c.start, c.eos, c.max_new_tokens, c.vocab_size)


def check_drafter(model, codec, drafter) -> None:
    """Refuse a drafter that cannot ride with this model and codec."""
    if drafter is None:
        return
    if codec.takes != "features" or codec.sends != "bytes":
        raise ConfigError(f"a draft travels with a byte payload of features, and the {codec.name} codec sends "
                          f"{'symbols' if codec.sends == 'symbols' else codec.takes + 's'}: use a byte codec of "
                          "features (shapes-hyperprior, quantize-8, identity, ...) with a drafter")
    drafter.check_model(model)


class DraftTokens:
    """Carry drafts with byte payloads, coded by :class:`~intelliflow.codec.tokens.TokenCoder`: inside
    the codec's own entropy-coded message where it ``carries_side`` (the feature codecs: the draft
    then costs its information, no termination of its own), else as a self-delimiting part in
    front of the payload (``draft part + payload``, no length field)."""

    def __init__(self, drafter, codec):
        self.coder = draft_coder(drafter)
        self.inside = bool(codec.carries_side)

    def writers(self, drafts: Sequence[Sequence[int]]) -> list:
        """One ``writer(encoder)`` per draft, for the codec's ``encode(..., side=)``."""
        return [lambda encoder, d=list(d): self.coder.write(encoder, d) for d in drafts]

    def reader(self) -> "_DraftReader":
        """A ``reader(decoder)`` for the codec's ``decode(..., side=)``; ``.drafts`` holds what it read."""
        return _DraftReader(self.coder)

    def parts(self, drafts: Sequence[Sequence[int]]) -> list[bytes]:
        return [self.coder.encode(d) for d in drafts]

    def split(self, payloads: Sequence[bytes]) -> tuple[list[list[int]], list[bytes]]:
        """Payloads with a draft part in front -> (the drafts' token ids, the rest of each payload)."""
        drafts, rest = [], []
        for data in payloads:
            data = bytes(data)
            tokens, end = self.coder.decode(data)
            drafts.append(tokens)
            rest.append(data[end:])
        return drafts, rest


class _DraftReader:
    def __init__(self, coder):
        self.coder, self.drafts = coder, []

    def __call__(self, decoder) -> None:
        self.drafts.append(self.coder.read(decoder))


@dataclass
class Drafted:
    """What a receiver with a drafter decoded: features [B, N, D] and the draft per image."""

    features: torch.Tensor
    drafts: list[list[int]]


@dataclass
class Sent:
    """What the device hands the link for a batch.

    :ivar data: ``list[bytes]`` (one payload per image) or complex symbols [B, n].
    :ivar prefix: beside symbols, the prefix tokens [B, P, D] that travel clean (else ``None``).
    """

    data: list[bytes] | torch.Tensor
    prefix: torch.Tensor | None = None
    #: with a drafter: the device's drafts (:class:`~intelliflow.models.drafter.Draft`), which ride in
    #: ``data``, and their bits per image (inside :attr:`bits`: their information inside a feature codec's
    #: message, else their part's bits)
    draft: Any = None
    draft_bits: list[float] | None = None

    @property
    def bits(self) -> list[int] | None:
        """Payload bits per image (``None`` for symbols)."""
        return None if isinstance(self.data, torch.Tensor) else [8 * len(p) for p in self.data]


class Device:
    """Device side: the split model's head (or the whole model, for ``text``) and the codec's encoder.

    :param model: a :class:`~intelliflow.models.SplitModel`; :param codec: any codec
        (:class:`~intelliflow.codec.Codec`).

    >>> from intelliflow.models import load_split_model
    >>> from intelliflow.codec import resolve_codec
    >>> from intelliflow.data.shapes import make_sample
    >>> model, codec = load_split_model("shapes-captioner"), resolve_codec("shapes-hyperprior")
    >>> sent = Device(model, codec).encode([make_sample("test", 0).image], q=2.0)
    >>> Receiver(model, codec).captions(sent.data)
    ['a large yellow cross left of a small red triangle left of a small purple star']
    """

    def __init__(self, model, codec, drafter=None):
        check_split(model, codec)
        check_drafter(model, codec, drafter)
        self.model, self.codec, self.drafter = model, codec, drafter
        self.draft_tokens = DraftTokens(drafter, codec) if drafter is not None else None

    @torch.no_grad()
    def codec_input(self, images: Sequence | torch.Tensor) -> tuple[Any, torch.Tensor | None]:
        """PIL images -> (what the codec takes, prefix tokens [B, P, D] or ``None``): the device's compute.

        For a codec of features, ``images`` may also be pixel values [B, 3, H, W] that already went
        through ``model.preprocess`` (in a DataLoader worker, say)."""
        takes = self.codec.takes
        pixels = isinstance(images, torch.Tensor)
        if pixels and takes != "features":
            raise ConfigError(f"the {self.codec.name} codec takes {takes}s, not preprocessed pixels: give PIL images")
        if takes == "image":
            return list(images), None
        if takes == "caption":
            return self.model.caption(images), None
        if pixels:
            images = images.to(next(self.model.parameters()).device, non_blocking=True)
        features = self.model.head(images if pixels else self.model.preprocess(images))
        grid, prefix = tokens_to_grid(features, self.model.feature_grid, self.model.prefix_tokens)
        return grid, (prefix if self.model.prefix_tokens else None)

    @torch.no_grad()
    def draft(self, x: Any, prefix: torch.Tensor | None = None):
        """The drafter's :class:`~intelliflow.models.drafter.Draft` of what :meth:`codec_input` returned
        (``None`` without a drafter): the device's own early caption, from its head's features."""
        return None if self.drafter is None else self.drafter.draft(grid_to_tokens(x, prefix))

    @torch.no_grad()
    def encode_input(self, x: Any, prefix: torch.Tensor | None = None, stream=None, draft=None, **options) -> Sent:
        """The codec's encoder on what :meth:`codec_input` returned.

        :param stream: a :class:`~intelliflow.codec.bitstream.StreamContext` from the codec's
            ``stream_context`` (stream mode), or ``None``: self-contained payloads.
        :param draft: with a drafter, a :meth:`draft` already made (else it is made here);
        :param options: the codec's rate knob (``q``, ``symbols``), ``target_bytes`` (per image,
            the draft and prefix parts included) and ``snr_db``; those the codec does not take are ignored.
        """
        options = self.codec.rate_options(**options)
        if stream is not None:
            options["stream"] = stream
        if self.codec.sends == "symbols":
            return Sent(self.codec.encode(x, **options), prefix)
        front, draft_bits = [b""] * len(x), None
        if self.drafter is not None:   # the device drafts from its own head's features
            draft = draft if draft is not None else self.draft(x, prefix)
            if self.draft_tokens.inside:   # its bits: its information inside the codec's message
                options["side"] = self.draft_tokens.writers(draft.tokens)
                draft_bits = [self.draft_tokens.coder.bits(d) for d in draft.tokens]
            else:                          # its bits: the part in front
                front = self.draft_tokens.parts(draft.tokens)
                draft_bits = [8.0 * len(p) for p in front]
        if prefix is not None:
            front = [f + p for f, p in zip(front, PrefixTokens.parts(prefix))]
        if "target_bytes" in options:  # the budget covers the draft and prefix parts too
            budgets = options["target_bytes"]
            budgets = [budgets] * len(front) if isinstance(budgets, (int, float)) else budgets
            options["target_bytes"] = [max(1, int(t) - len(p)) for t, p in zip(budgets, front)]
        payloads = [p + payload for p, payload in zip(front, self.codec.encode(x, **options))]
        return Sent(payloads, draft=draft, draft_bits=draft_bits)

    def encode(self, images: Sequence, stream=None, **options) -> Sent:
        """PIL images -> :class:`Sent` (see :meth:`encode_input` for ``stream`` and ``options``)."""
        return self.encode_input(*self.codec_input(images), stream=stream, **options)


class Receiver:
    """Receiver side (edge or cloud): the codec's decoder and the rest of the model.

    :meth:`decode` and :meth:`finish` are the two halves of :meth:`captions`, for a service that
    decodes requests one by one (a broken payload fails alone) and finishes them in one batch.
    """

    def __init__(self, model, codec, drafter=None):
        check_split(model, codec)
        check_drafter(model, codec, drafter)
        self.model, self.codec, self.drafter = model, codec, drafter
        self.draft_tokens = DraftTokens(drafter, codec) if drafter is not None else None

    @property
    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def decode(self, received, snr_db=None, noise: torch.Tensor | None = None,
               prefix: torch.Tensor | None = None, stream=None) -> Any:
        """What came off the link -> the model's input: features [B, N, D], images or captions.

        :param received: payloads (``list[bytes]``) or received symbols [B, n] (complex);
        :param snr_db, noise: the analog channel's SNR and per-symbol noise level [B, n];
        :param prefix: the prefix tokens that travelled clean beside symbols;
        :param stream: the stream context the payloads were coded in (stream mode), else ``None``.
        """
        codec, model = self.codec, self.model
        if codec.takes != "features":
            return codec.decode(received)
        drafts = None
        if codec.sends == "symbols":
            grid = codec.decode(received, snr_db, noise=noise, grid=model.feature_grid)
        else:  # shapes are checked against the model before any decoding work
            side = None
            if self.draft_tokens is not None and self.draft_tokens.inside:
                side = self.draft_tokens.reader()
            elif self.draft_tokens is not None:
                drafts, received = self.draft_tokens.split(received)
            if model.prefix_tokens:
                prefix, received = PrefixTokens.split(received, expected=(model.prefix_tokens, model.feature_dim))
            grid = codec.decode(received, expected=(model.feature_dim, *model.feature_grid),
                                **({"stream": stream} if stream is not None else {}),
                                **({"side": side} if side is not None else {}))
            if side is not None:
                drafts = side.drafts
        device = self._device
        features = grid_to_tokens(grid.to(device), None if prefix is None else prefix.to(device))
        model.check_features(features)
        return features if drafts is None else Drafted(features, drafts)

    @torch.no_grad()
    def finish(self, decoded: Any, **generation) -> list[str]:
        """The model's input -> captions (the tail for features, the whole model for images)."""
        return self.finish_verified(decoded, **generation)[0]

    @torch.no_grad()
    def finish_verified(self, decoded: Any, **generation) -> tuple[list[str], Any]:
        """:meth:`finish`, and with drafts the :class:`~intelliflow.models.speculative.Verified`
        record of each (accepted tokens, decoder passes; else ``None``)."""
        takes = self.codec.takes
        if takes == "caption":
            return list(decoded), None
        if takes == "image":
            return self.model.full_generate(self.model.preprocess(decoded), **generation), None
        if isinstance(decoded, Drafted):
            verified = self.model.tail_verify(decoded.features, decoded.drafts, **generation)
            return self.model.decode_ids(verified.ids), verified
        return self.model.tail_generate(decoded, **generation), None

    def join(self, parts: Sequence[Any]) -> Any:
        """Several :meth:`decode` results -> one batch for :meth:`finish`."""
        parts = list(parts)
        if parts and isinstance(parts[0], Drafted):
            return Drafted(torch.cat([p.features for p in parts]), [d for p in parts for d in p.drafts])
        if self.codec.takes == "features":
            return torch.cat(parts)
        return [item for part in parts for item in part]

    def captions(self, received, snr_db=None, noise: torch.Tensor | None = None,
                 prefix: torch.Tensor | None = None, stream=None, **generation) -> list[str]:
        """What came off the link -> one caption per image."""
        return self.finish(self.decode(received, snr_db, noise=noise, prefix=prefix, stream=stream), **generation)
