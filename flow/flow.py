"""``Flow``: head (device) + codec + channel + tail (server) as one module.

::

    pixels ─► head ─► tokens [B, N, D] ─► grid [B, D, H, W] ─► codec ─┬─ digital: ŷ (noise proxy) + rate estimate
                                                                    │           bytes ─► DigitalLink ─► bytes | lost
                                                                    └─ analog:  symbols ─► channel ─► symbols
           tail ◄─ tokens ◄─ grid ◄──────────────── codec decode ◄──┘

Training (:meth:`Flow.forward`) returns the transmitted features and the rate, with gradients to
the codec (and to head/tail where the recipe unfreezes them): digital codecs use CompressAI's
additive-noise proxy and likelihood rate; analog codecs run the channel in the forward pass.
Inference (:meth:`Flow.caption`) runs the real thing: bitstreams through an ideal link or the
5G-style :class:`~intelliflow.channels.DigitalLink` at the adaptive (or a fixed) MCS, lost packets
giving no caption; analog symbols through the channel.

Prefix tokens (CLS) are not on the grid: digital payloads carry them at 8 bits beside the
codec's bitstream (:mod:`intelliflow.flow.files`); analog codecs pass them on clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from intelliflow.codec.baselines import IdentityCodec
from intelliflow.codec.digital import FeatureCodec
from intelliflow.errors import ConfigError
from intelliflow.models import grid_to_tokens, tokens_to_grid

from .files import device_payloads, receiver_captions


def codec_kind(codec) -> str:
    """``"identity"`` (clean features), ``"analog"`` (symbols), ``"learned"`` (a trainable
    digital feature codec) or ``"bytes"`` (a fixed byte-payload baseline)."""
    if codec is None or isinstance(codec, IdentityCodec):
        return "identity"
    if hasattr(codec, "encode") and hasattr(codec, "decode") and not hasattr(codec, "compress"):
        return "analog"
    if isinstance(codec, FeatureCodec):
        return "learned"
    return "bytes"


@dataclass
class FlowResult:
    """Inference on a batch: one entry per image.

    :ivar captions: ``str`` per image (``""`` where the payload was lost).
    :ivar payload_bits: ``int`` per image (``None`` for analog and identity).
    :ivar channel_uses: ``int`` per image (``None`` over an ideal link).
    :ivar lost: ``bool`` per image: the digital link did not deliver the payload.
    :ivar mcs: MCS index per image over a digital link (else ``None``).
    """

    captions: list[str]
    payload_bits: list[int | None]
    channel_uses: list[int | None]
    lost: list[bool]
    mcs: list[int | None] = field(default_factory=list)


class Flow(nn.Module):
    """A split model, a codec and a channel composed for training and inference.

    :param model: a :class:`~intelliflow.models.SplitModel`.
    :param codec: a digital feature codec, a JSCC codec, a baseline codec, or ``None`` (identity).
    :param channel: an analog channel, its name or config (``"none"``: an ideal link).
    :param trainable: which part of the split model learns: ``"none"`` (frozen; gradients still
        flow through the tail to the codec), ``"tail"`` or ``"all"`` (the head too).
    :param link: options of the :class:`~intelliflow.channels.DigitalLink` that carries byte
        payloads at inference when the channel is not ``none`` (e.g. ``{"num_iter": 12}``).

    .. code-block:: python

        flow = Flow(load_split_model("shapes-captioner"), load_codec("runs/jscc/codec"), "awgn")
        out = flow(pixel_values, snr_db=torch.full((8,), 5.0))      # training: out["features_hat"]
        result = flow.caption(images, snr_db=5.0)                    # inference: result.captions
    """

    def __init__(self, model, codec=None, channel: Any = "none", trainable: str = "none",
                 link: dict | None = None):
        super().__init__()
        from intelliflow.channels import build_channel
        from intelliflow.channels.analog import AnalogChannel

        self.model = model
        self.codec = codec if isinstance(codec, nn.Module) else None
        self._codec = codec
        self.kind = codec_kind(codec)
        self.channel = channel if isinstance(channel, AnalogChannel) else build_channel(channel)
        self.channel_name = getattr(self.channel, "name", "none")
        if trainable not in ("none", "tail", "all"):
            raise ConfigError(f"trainable must be 'none', 'tail' or 'all', got {trainable!r}")
        self.trainable = trainable
        self.train_head = trainable == "all"
        self.link_options = dict(link or {})
        self._link = None
        # the head runs without autograd unless trainable == "all", so with "tail" only the
        # parameters the tail uses receive gradients
        for p in model.parameters():
            p.requires_grad_(trainable != "none")

    # ------------------------------------------------------------------ training
    def features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Device side: ``pixel_values`` [B, 3, H, W] -> tokens [B, N, D] (no autograd unless ``train_head``)."""
        if self.train_head:
            return self.model.head(pixel_values)
        with torch.no_grad():
            return self.model.head(pixel_values)

    def forward(self, pixel_values: torch.Tensor | None = None, snr_db=None, q=None, symbols: int | None = None,
                features: torch.Tensor | None = None) -> dict:
        """Training pass: ``{"features" [B, N, D], "features_hat" [B, N, D], "bits" [B] or None,
        "likelihoods", "aux_loss" (digital), "channel_uses" int or None}``.

        :param snr_db: float or [B] tensor (analog codecs); :param q: rate point(s) of a variable-rate
        digital codec; :param symbols: symbol channels a JSCC codec sends; :param features: head
        output computed elsewhere (then ``pixel_values`` is not needed).
        """
        f = self.features(pixel_values) if features is None else features
        grid, prefix = tokens_to_grid(f, self.model.feature_grid, self.model.prefix_tokens)
        out: dict = {"features": f, "bits": None, "likelihoods": None, "channel_uses": None}
        if self.kind == "identity":
            out["features_hat"] = f
            return out
        if self.kind == "learned":
            coded = self.codec(grid, q)
            out["likelihoods"] = coded["likelihoods"]
            out["bits"] = self.codec.likelihood_bits(coded["likelihoods"])
            out["aux_loss"] = self.codec.aux_loss()  # CompressAI's quantile fit, inside forward for DDP
            grid_hat = coded["f_hat"]
        elif self.kind == "analog":
            if snr_db is None:
                raise ConfigError("an analog codec needs snr_db")
            x = self.codec.encode(grid, snr_db, symbols)
            received = self.channel(x, snr_db if isinstance(snr_db, torch.Tensor) else float(snr_db))
            out["channel_uses"] = int(received.channel_uses)
            grid_hat = self.codec.decode(received.y, snr_db, noise=received.no_eff, grid=tuple(grid.shape[-2:]))
        else:
            raise ConfigError(f"{type(self._codec).__name__} is a fixed baseline: it has no training pass; "
                              "use Flow.caption")
        out["features_hat"] = grid_to_tokens(grid_hat, prefix)
        return out

    # ------------------------------------------------------------------ inference
    @property
    def link(self):
        """The digital link of byte payloads (built on first use)."""
        if self._link is None:
            from intelliflow.channels import DigitalLink

            self._link = DigitalLink(self.channel, **self.link_options)
        return self._link

    def _budget_bytes(self, uses: int, mcs) -> int:
        """Most payload bytes one transmission at ``mcs`` fits in ``uses`` channel uses."""
        lo, hi = 0, 1
        while self.link.channel_uses(hi, mcs) <= uses:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.link.channel_uses(mid, mcs) <= uses else (lo, mid)
        return lo

    @torch.no_grad()
    def caption(self, images: Sequence, snr_db: float | None = None, q=None, symbols: int | None = None,
                mcs: int | str = "auto", channel_uses: int | None = None, ideal: bool = False,
                **generation) -> FlowResult:
        """Inference on PIL images at one SNR: real payloads through the channel, then captions.

        :param q: rate point of a variable-rate digital codec (default its highest).
        :param mcs: ``"auto"`` (adaptive to ``snr_db``) or a fixed MCS index, for byte payloads.
        :param channel_uses: a budget per image for learned digital codecs: each image is coded to
            the largest payload that fits at the MCS; an image whose smallest payload does not fit is lost.
        :param ideal: send byte payloads over an error-free link whatever the channel.
        """
        b = len(images)
        ideal = ideal or self.channel_name == "none"
        if not ideal and snr_db is None:
            raise ConfigError(f"channel {self.channel_name!r} needs an SNR")
        if self.kind == "identity":
            if not ideal:
                raise ConfigError("the identity codec sends float features: it has no channel path; "
                                  "use channel 'none'")
            captions = self.model.tail_generate(self.features(self.model.preprocess(images)), **generation)
            return FlowResult(captions, [None] * b, [None] * b, [False] * b, [None] * b)
        if self.kind == "analog":
            f = self.features(self.model.preprocess(images))
            out = self.forward(features=f, snr_db=0.0 if snr_db is None else snr_db, symbols=symbols)
            captions = self.model.tail_generate(out["features_hat"], **generation)
            return FlowResult(captions, [None] * b, [out["channel_uses"]] * b, [False] * b, [None] * b)

        chosen = None
        if not ideal:
            chosen = self.link._resolve_mcs(mcs, [float(snr_db)] * b)
        if channel_uses is not None:
            if self.kind != "learned" or ideal:
                raise ConfigError("a channel-use budget needs a learned digital codec and a channel")
            budgets = [self._budget_bytes(channel_uses, m) for m in chosen]
            payloads = self._budgeted_payloads(images, budgets)
        else:
            payloads = device_payloads(self.model, self._codec, images, compress_options={"q": q})
        bits = [8 * len(p) if p is not None else None for p in payloads]
        if ideal:
            received, uses = payloads, [None] * b
        else:
            sendable = [i for i, p in enumerate(payloads) if p is not None]
            received, uses = [None] * b, [channel_uses] * b
            if sendable:
                result = self.link.transmit([payloads[i] for i in sendable], float(snr_db),
                                            mcs=[chosen[i].index for i in sendable])
                for i, r, u in zip(sendable, result.received, result.channel_uses_per_packet):
                    received[i], uses[i] = r, u
        ok = [i for i, r in enumerate(received) if r is not None]
        captions = [""] * b
        if ok:
            for i, c in zip(ok, receiver_captions(self.model, self._codec, [received[i] for i in ok], **generation)):
                captions[i] = c
        return FlowResult(captions, bits, uses, [r is None for r in received],
                          [m.index for m in chosen] if chosen else [None] * b)

    def _budgeted_payloads(self, images, budgets: list[int]) -> list[bytes | None]:
        """Payloads that fit ``budgets`` bytes, ``None`` where even the lowest rate point does not."""
        payloads = device_payloads(self.model, self._codec, images,
                                   compress_options={"target_bytes": [max(1, x) for x in budgets]})
        return [p if len(p) <= x else None for p, x in zip(payloads, budgets)]


def draw_snr(batch: int, low: float, high: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """SNRs in dB, uniform in ``[low, high]``: [B]."""
    return low + (high - low) * torch.rand(batch, generator=generator)


def draw_rate_points(batch: int, max_q: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rate points uniform in ``[0, max_q]``: [B]."""
    return max_q * torch.rand(batch, generator=generator)


__all__ = ["Flow", "FlowResult", "codec_kind", "draw_snr", "draw_rate_points"]
