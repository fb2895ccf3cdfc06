"""``Flow``: head (device) + codec + channel + tail (server) as one module.

::

    pixels ─► head ─► tokens [B, N, D] ─► grid [B, D, H, W] ─► codec ─┬─ bytes:   payload per image ─► link ─► payload | lost
                                                                    └─ symbols: [B, n] ─► channel ─► [B, n]
           tail ◄─ tokens ◄─ grid ◄──────────────── codec decode ◄──┘

Training (:meth:`Flow.forward`) returns the transmitted features and the rate, with gradients to
the codec (and to head/tail where the recipe unfreezes them): byte codecs use their training pass
(CompressAI's additive-noise proxy and likelihood rate); symbol codecs run the channel in the
forward pass. Inference (:meth:`Flow.caption`) runs the real thing through the one inference path
(:class:`~intelliflow.flow.endpoints.Device`, the link, :class:`~intelliflow.flow.endpoints.Receiver`):
payloads over an ideal link or the 5G-style :class:`~intelliflow.channels.DigitalLink` at the
adaptive (or a fixed) MCS, lost packets giving no caption; symbols through the channel.

Prefix tokens (CLS) are handled as :class:`~intelliflow.flow.endpoints.PrefixTokens` says, in
training as at inference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn

from intelliflow.codec import resolve_codec
from intelliflow.errors import ConfigError
from intelliflow.models import grid_to_tokens, tokens_to_grid

from .endpoints import Device, PrefixTokens, Receiver, Sent


#: the digital link's defaults at inference: HARQ with incremental redundancy, up to 4 transmissions
#: (redundancy versions 0, 2, 3, 1), as a 5G uplink retransmits a failed transport block
DEFAULT_LINK = {"max_transmissions": 4, "harq": "ir"}


@dataclass
class FlowResult:
    """Inference on a batch: one entry per image.

    :ivar captions: ``str`` per image (``""`` where the payload was lost).
    :ivar payload_bits: ``int`` per image (``None`` for symbols).
    :ivar channel_uses: ``int`` per image (``None`` over an ideal link).
    :ivar lost: ``bool`` per image: the digital link did not deliver the payload.
    :ivar mcs: MCS index per image over a digital link (else ``None``).
    :ivar transmissions: HARQ rounds per image over a digital link (else ``None``).
    :ivar first_failed: per image over a digital link, whether its first transmission failed.

    The link's lists (``mcs``, ``transmissions``, ``first_failed``) may be left out: they are then
    ``None`` per image, so every list has one entry per caption.
    """

    captions: list[str]
    payload_bits: list[int | None]
    channel_uses: list[int | None]
    lost: list[bool]
    mcs: list[int | None] | None = None
    transmissions: list[int | None] | None = None
    first_failed: list[bool | None] | None = None

    draft: "DraftReport | None" = None

    def __post_init__(self):
        for name in ("mcs", "transmissions", "first_failed"):
            if getattr(self, name) is None:
                setattr(self, name, [None] * len(self.captions))


@dataclass
class DraftReport:
    """What drafting did, one entry per image (with a drafter; :attr:`FlowResult.draft`).

    :ivar captions: the device's drafts as text: its early answer, before the receiver's;
    :ivar confidence: the drafter's probability of its draft (0..1), for an early-answer threshold;
    :ivar bits: the draft's bits inside ``payload_bits``: its information under the drafter's n-gram
        model where the codec codes it in its own message (a feature codec), else its part's bits;
    :ivar drafted, accepted: draft tokens received and kept by the receiver (``None`` where lost);
    :ivar passes: the receiver's decoder passes for the caption (``None`` where lost);
    :ivar greedy_passes: plain greedy decoding's passes for the same caption (its tokens).
    """

    captions: list[str]
    confidence: list[float]
    bits: list[float]
    drafted: list[int | None]
    accepted: list[int | None]
    passes: list[int | None]
    greedy_passes: list[int | None]


@dataclass
class Delivery:
    """One batch's trip from the device's codec input to the receiver's decode (:meth:`Flow.transmit`).

    :ivar decoded: what :meth:`~intelliflow.flow.endpoints.Receiver.decode` made of the delivered
        items, in batch order (features [b, N, D], a ``Drafted``, images or captions), ``None`` when
        nothing was delivered;
    :ivar delivered: the batch indices of those items;
    :ivar sent: what the device sent (:class:`~intelliflow.flow.endpoints.Sent`);
    :ivar payload_bits, channel_uses, lost, mcs, transmissions, first_failed: per item, as in :class:`FlowResult`.
    """

    decoded: Any
    delivered: list[int]
    sent: Sent
    payload_bits: list[int | None]
    channel_uses: list[int | None]
    lost: list[bool]
    mcs: list[int | None] | None = None
    transmissions: list[int | None] | None = None
    first_failed: list[bool | None] | None = None

    def __post_init__(self):
        for name in ("mcs", "transmissions", "first_failed"):
            if getattr(self, name) is None:
                setattr(self, name, [None] * len(self.lost))


class Flow(nn.Module):
    """A split model, a codec and a channel composed for training and inference.

    :param model: a :class:`~intelliflow.models.SplitModel`.
    :param codec: any :class:`~intelliflow.codec.Codec` (or a name :func:`~intelliflow.codec.resolve_codec`
        takes); ``None`` is the identity codec (the clean features).
    :param channel: an analog channel, its name or config (``"none"``: an ideal link).
    :param trainable: which part of the split model learns: ``"none"`` (frozen; gradients still
        flow through the tail to the codec), ``"tail"`` or ``"all"`` (the head too).
    :param link: options of the :class:`~intelliflow.channels.DigitalLink` that carries byte
        payloads at inference when the channel is not ``none`` (e.g. ``{"num_iter": 12}``); by
        default HARQ as a 5G link runs it (:data:`DEFAULT_LINK`: up to 4 transmissions with
        incremental redundancy), ``{"max_transmissions": 1}`` sends each block once.
    :param drafter: a :class:`~intelliflow.models.drafter.Drafter` (or its name): the device drafts
        each caption, the draft rides in front of the payload and the receiver verifies it
        (:meth:`caption` then reports :class:`DraftReport`); the captions do not change.
    :param framing: how byte payloads are framed at inference: ``"stream"`` (default: model, split,
        codec, grid and rate point are agreed once per connection, so a payload is the codec's body,
        plus a rate-point byte where a budget picks it per image; no check inside, the link checks
        each code block) or ``"file"`` (self-contained payloads, each with its header and CRC-16, as
        ``.iflow`` files carry them). Codecs without a per-image header (images, captions) send the
        same bytes either way (:mod:`intelliflow.codec.bitstream`).

    .. code-block:: python

        flow = Flow(load_split_model("shapes-captioner"), resolve_codec("shapes-jscc-awgn"), "awgn")
        out = flow(pixel_values, snr_db=torch.full((8,), 5.0))      # training: out["features_hat"]
        result = flow.caption(images, snr_db=5.0)                    # inference: result.captions
    """

    def __init__(self, model, codec=None, channel: Any = "none", trainable: str = "none",
                 link: dict | None = None, framing: str = "stream", drafter=None):
        super().__init__()
        from intelliflow.channels import build_channel
        from intelliflow.channels.analog import AnalogChannel

        self.model = model
        if codec is None or isinstance(codec, str):
            codec = resolve_codec(codec or "identity")
        self.codec = codec  # a submodule where it has weights: moves with .to() and trains
        self.channel = channel if isinstance(channel, AnalogChannel) else build_channel(channel)
        self.channel_name = getattr(self.channel, "name", "none")
        if trainable not in ("none", "tail", "all"):
            raise ConfigError(f"trainable must be 'none', 'tail' or 'all', got {trainable!r}")
        self.trainable = trainable
        if framing not in ("stream", "file"):
            raise ConfigError(f"framing must be 'stream' or 'file', got {framing!r}")
        self.framing = framing
        self.train_head = trainable == "all"
        self.link_options = {**DEFAULT_LINK, **(link or {})}
        self._link = None
        if isinstance(drafter, str):
            from intelliflow.models.drafter import load_drafter

            drafter = load_drafter(drafter)
        self.drafter = drafter
        self.device_side = Device(model, codec, drafter)      # the one inference path (flow.endpoints)
        self.receiver_side = Receiver(model, codec, drafter)
        # the head runs without autograd unless trainable == "all", so with "tail" only the
        # parameters the tail uses receive gradients
        for p in model.parameters():
            p.requires_grad_(trainable != "none")

    @property
    def kind(self) -> str:
        """The codec's family: ``identity``, ``learned``, ``analog`` or ``bytes``."""
        return self.codec.family

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
        "likelihoods", "aux_loss" (learned byte codecs), "channel_uses" int or None}``.

        :param snr_db: float or [B] tensor (symbol codecs); :param q: rate point(s) of a variable-rate
        byte codec; :param symbols: symbol channels a JSCC codec sends; :param features: head
        output computed elsewhere (then ``pixel_values`` is not needed).
        """
        codec = self.codec
        f = self.features(pixel_values) if features is None else features
        grid, prefix = tokens_to_grid(f, self.model.feature_grid, self.model.prefix_tokens)
        out: dict = {"features": f, "bits": None, "likelihoods": None, "channel_uses": None}
        if codec.takes != "features":
            raise ConfigError(f"{codec.name} sends the {codec.takes}, not features: it has no training pass; "
                              "use Flow.caption")
        if codec.sends == "symbols":
            if snr_db is None:
                raise ConfigError("an analog codec needs snr_db")
            x = codec.encode(grid, snr_db, symbols)
            received = self.channel(x, snr_db if isinstance(snr_db, torch.Tensor) else float(snr_db))
            out["channel_uses"] = int(received.channel_uses)
            grid_hat = codec.decode(received.y, snr_db, noise=received.no_eff, grid=tuple(grid.shape[-2:]))
        else:
            coded = codec.train_pass(grid, q=q)
            grid_hat = coded["f_hat"]
            out.update({k: coded[k] for k in ("likelihoods", "bits", "aux_loss") if k in coded})
            if self.model.prefix_tokens:  # 8-bit, counted, as at inference
                prefix, prefix_bits = PrefixTokens.train_roundtrip(prefix)
                out["bits"] = prefix_bits if out["bits"] is None else out["bits"] + prefix_bits
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

    def stream_context(self, q=None, per_image: bool = False):
        """The stream context :meth:`caption` codes in (``None``: self-contained payloads, under
        ``framing="file"`` or for a codec without stream mode): the model's feature grid and the
        rate point ``q`` (a number; ``None`` the codec's default), or the rate point per payload
        where ``per_image`` (a byte budget) or ``q`` is a tensor."""
        if self.framing != "stream":
            return None
        return self.codec.stream_for(self.model.feature_grid, q=q, target_bytes=True if per_image else None)

    def _link_checks(self, snr_db, ideal: bool, channel_uses: int | None) -> bool:
        """Refuse what this link cannot carry before any work; returns whether the link is ideal."""
        codec = self.codec
        ideal = ideal or self.channel_name == "none"
        if not ideal and snr_db is None:
            raise ConfigError(f"channel {self.channel_name!r} needs an SNR")
        if codec.sends == "bytes" and codec.ideal_link_only and not ideal:
            raise ConfigError(f"the {codec.name} codec sends raw float32 features: it is meant for an ideal link; "
                              "use channel 'none'")
        if codec.sends == "bytes" and channel_uses is not None and (ideal or not codec.learned):
            raise ConfigError("a channel-use budget needs a learned byte codec and a channel")
        return ideal

    @torch.no_grad()
    def caption(self, images: Sequence, snr_db: float | None = None, q=None, symbols: int | None = None,
                mcs: int | str = "auto", channel_uses: int | None = None, ideal: bool = False,
                **generation) -> FlowResult:
        """Inference on PIL images at one SNR: real payloads through the channel, then captions.

        :param q: rate point of a variable-rate byte codec (default its highest).
        :param symbols: symbol channels a JSCC codec sends (default all).
        :param mcs: ``"auto"`` (adaptive to ``snr_db``) or a fixed MCS index, for byte payloads.
        :param channel_uses: a budget per image for learned byte codecs: each image is coded to
            the largest payload that fits at the MCS; an image whose smallest payload does not fit is lost.
        :param ideal: send byte payloads over an error-free link whatever the channel.
        """
        self._link_checks(snr_db, ideal, channel_uses)
        x, prefix = self.device_side.codec_input(images)
        done = self.transmit(x, prefix, snr_db=snr_db, q=q, symbols=symbols, mcs=mcs, channel_uses=channel_uses,
                             ideal=ideal)
        captions = [""] * len(images)
        verified = None
        if done.delivered:
            finished, verified = self.receiver_side.finish_verified(done.decoded, **generation)
            for i, c in zip(done.delivered, finished):
                captions[i] = c
        draft = None if done.sent.draft is None else self._draft_report(done.sent, done.delivered, verified)
        return FlowResult(captions, done.payload_bits, done.channel_uses, done.lost, done.mcs, done.transmissions,
                          done.first_failed, draft)

    @torch.no_grad()
    def transmit(self, x: Any, prefix: torch.Tensor | None = None, snr_db: float | None = None, q=None,
                 symbols: int | None = None, mcs: int | str = "auto", channel_uses: int | None = None,
                 ideal: bool = False) -> Delivery:
        """The device's codec input over the link to the receiver's decode: :meth:`Device.encode_input`,
        an ideal link, the :class:`~intelliflow.channels.DigitalLink` (byte payloads) or the analog
        channel (symbols), then :meth:`Receiver.decode` of what arrived.

        :param x: what :meth:`Device.codec_input` returned: a grid [B, D, H, W] for a feature codec
            (images or captions for the others); :param prefix: the prefix tokens [B, P, D] or ``None``;
        the other options as :meth:`caption` takes them. Returns a :class:`Delivery`.
        """
        codec, b = self.codec, len(x)
        ideal = self._link_checks(snr_db, ideal, channel_uses)
        receiver = self.receiver_side
        if codec.sends == "symbols":  # an ideal link passes the symbols on (the decoder assumes 0 dB)
            snr = 0.0 if snr_db is None else float(snr_db)
            sent = self.device_side.encode_input(x, prefix, snr_db=snr, symbols=symbols)
            out = self.channel(sent.data, snr)
            decoded = receiver.decode(out.y, snr_db=snr, noise=out.no_eff, prefix=sent.prefix)
            return Delivery(decoded, list(range(b)), sent, [None] * b, [int(out.channel_uses)] * b, [False] * b)
        chosen = budgets = None
        if channel_uses is not None:
            # the MCS comes before the payload here: the one whose budget-filling payload meets the target
            chosen = [self.link.mcs_for_budget(float(snr_db), channel_uses) if mcs == "auto"
                      else self.link.resolve_mcs(mcs, [float(snr_db)])[0]] * b
            budgets = [self.link.max_payload_bytes(channel_uses, m) for m in chosen]
        stream = self.stream_context(q, per_image=budgets is not None)
        sent = self.device_side.encode_input(x, prefix, stream=stream, q=q,
                                             target_bytes=None if budgets is None else [max(1, n) for n in budgets])
        payloads: list[bytes | None] = list(sent.data)
        if budgets is not None:  # an image whose smallest payload does not fit is not sent
            payloads = [p if len(p) <= n else None for p, n in zip(payloads, budgets)]
        bits = [8 * len(p) if p is not None else None for p in payloads]
        rounds: list[int | None] = [None] * b
        first_failed: list[bool | None] = [None] * b
        used_mcs: list[int | None] = [None] * b
        if ideal:
            received, uses = payloads, [None] * b
        else:
            sendable = [i for i, p in enumerate(payloads) if p is not None]
            received, uses = [None] * b, [channel_uses] * b
            if sendable:
                # "auto": the link picks each payload's MCS for its own code blocks (and its outer loop
                # learns from the first transmissions); a budget's MCS was picked above, the same way
                result = self.link.transmit([payloads[i] for i in sendable], float(snr_db),
                                            mcs=mcs if chosen is None else [chosen[i].index for i in sendable],
                                            feedback=mcs == "auto")
                for i, r, u, t, f, m in zip(sendable, result.received, result.channel_uses_per_packet,
                                            result.transmissions_per_packet, result.first_failed_per_packet,
                                            result.mcs):
                    received[i], uses[i], rounds[i], first_failed[i], used_mcs[i] = r, u, t, f, m
        ok = [i for i, r in enumerate(received) if r is not None]
        decoded = receiver.decode([received[i] for i in ok], stream=stream) if ok else None
        if chosen is not None:   # an image that did not fit was not sent, at the MCS its budget assumed
            used_mcs = [m if m is not None else c.index for m, c in zip(used_mcs, chosen)]
        return Delivery(decoded, ok, sent, bits, uses, [r is None for r in received], used_mcs, rounds, first_failed)

    def _draft_report(self, sent, ok: list[int], verified) -> DraftReport:
        b = len(sent.draft.tokens)
        rows = {name: [None] * b for name in ("drafted", "accepted", "passes", "greedy_passes")}
        for j, i in enumerate(ok):
            for name, values in (("drafted", verified.drafted), ("accepted", verified.accepted),
                                 ("passes", verified.passes), ("greedy_passes", verified.new_tokens)):
                rows[name][i] = values[j]
        drafts = [torch.tensor([t]) for t in sent.draft.tokens]
        return DraftReport([self.model.decode_ids(d)[0] for d in drafts], list(sent.draft.confidence),
                           list(sent.draft_bits), **rows)

    def settle_link(self, snr_db: float | None = None, mcs: int | str = "auto", ideal: bool = False, **_) -> float:
        """Before a measurement at ``snr_db``: settle the digital link's outer loop (see
        :meth:`~intelliflow.channels.DigitalLink.settle`) and freeze it; a no-op (0) without one, for
        symbols, over an ideal link or at a fixed MCS. Returns the offset (dB)."""
        if ideal or snr_db is None or mcs != "auto" or self.codec.sends != "bytes" or self.channel_name == "none" \
                or self.codec.ideal_link_only:
            return 0.0
        return self.link.settle(float(snr_db))


__all__ = ["Delivery", "DraftReport", "Flow", "FlowResult"]
