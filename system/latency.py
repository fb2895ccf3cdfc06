"""Latency of one image across device, edge and cloud: node and link profiles, paradigms, breakdowns.

A *node* computes at an effective throughput (FLOP/s actually reached on this kind of model, not
the datasheet peak); a *wireless link* (device to edge) carries digital payloads at the spectral
efficiency of the MCS its SNR allows (with that MCS's block error rate: a lost payload is sent
again, so the expected time is divided by ``1 - BLER``) or analog symbols at one channel use per
``1 / bandwidth`` seconds; a *backhaul* (edge to cloud) has a bit rate and a round-trip time.

Paradigms (same image, same model):

- ``device-only``: the whole model on the device; only the caption goes up (as text).
- ``cloud-only``: upload the compressed image (information flow), the whole model in the cloud.
- ``device-edge``: head on the device, our codec over the wireless link, tail on the edge.
- ``device-edge-cloud``: head on the device, more layers on the edge, the features re-encoded over
  the backhaul, the rest in the cloud.
- ``device-edge-draft``: ``device-edge`` with speculative captioning: the device also drafts the
  caption (a small drafter, ``draft_tokens`` sequential passes), the draft rides in the payload,
  and the edge verifies it: ``receiver_passes`` sequential decoder passes (prefill, the verify
  pass, the tokens after the first mismatch; measured by ``intelliflow eval --draft``) instead of
  one per caption token.

A text decoder's passes are sequential: at batch 1 each costs at least the node's ``pass_ms``
(kernel launches, reading the weights) whatever its FLOPs. Where a scenario states
``caption_tokens`` (plain greedy decoding's passes per caption), every paradigm's decoding node
adds ``pass_ms`` per pass; speculation changes the number of passes, not the FLOPs.

Every latency is in milliseconds and broken down into ``device``, ``encode``, ``uplink``,
``edge``, ``backhaul``, ``cloud``, ``decode``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from intelliflow.errors import ConfigError
from intelliflow.plots import save_figure

STAGES = ("device", "encode", "uplink", "edge", "backhaul", "cloud", "decode")
PARADIGMS = ("device-only", "cloud-only", "device-edge", "device-edge-cloud", "device-edge-draft")


@dataclass(frozen=True)
class NodeProfile:
    """A compute node: effective FLOP/s on transformer inference, optional memory limit, and why."""

    name: str
    flops_per_s: float
    memory_bytes: float | None = None
    source: str = ""
    #: the least time of one sequential forward pass at batch 1 (a text decoder's step), in ms
    pass_ms: float = 0.0

    def __post_init__(self):
        if self.flops_per_s <= 0:
            raise ConfigError(f"node {self.name!r}: flops_per_s must be positive, got {self.flops_per_s}")

    def compute_ms(self, flops: float) -> float:
        return 1e3 * flops / self.flops_per_s


#: Effective throughputs, stated with their assumption (datasheet peak x a typical utilisation of
#: batch-1 transformer inference). Replace them with your own measurements in a YAML profile.
PRESETS = {
    "wearable": NodeProfile("wearable", 10e9, 512e6,
                            "watch or IoT-class SoC with a micro-NPU (Arm Ethos-U65 class, ~0.5 TOP/s int8 peak): "
                            "~10 GFLOP/s reached on a batch-1 transformer layer, where the NPU runs it at all; "
                            "a decoder pass at least 2 ms", pass_ms=2.0),
    "phone": NodeProfile("phone", 0.4e12, 8e9,
                         "phone-class SoC GPU/NPU: ~2 TFLOP/s FP16 peak (e.g. Adreno 740), ~20 % reached at batch 1; "
                         "a decoder pass at least 1 ms (dispatch of its kernels)", pass_ms=1.0),
    "jetson": NodeProfile("jetson", 2.0e12, 8e9,
                          "embedded GPU board (Jetson Orin Nano class): ~10 TFLOP/s dense FP16, ~20 % reached; "
                          "a decoder pass at least 0.8 ms", pass_ms=0.8),
    "edge-gpu": NodeProfile("edge-gpu", 30e12, 24e9,
                            "edge GPU server (NVIDIA L4 class): ~120 TFLOP/s dense FP16, ~25 % reached; a decoder "
                            "pass at least 0.5 ms (eager kernel launches of a small decoder)", pass_ms=0.5),
    "cloud-gpu": NodeProfile("cloud-gpu", 200e12, 80e9,
                             "cloud GPU (NVIDIA H100 class): ~800 TFLOP/s dense FP16, ~25 % reached; a decoder "
                             "pass at least 0.4 ms", pass_ms=0.4),
}


@lru_cache(maxsize=8)
def _digital_link(channel: str) -> Any:
    from intelliflow.channels import DigitalLink

    return DigitalLink(channel, olla=False)


@dataclass(frozen=True)
class WirelessLink:
    """Device-to-edge radio: bandwidth (Hz), SNR (dB, Es/N0) and channel (``awgn`` or ``rayleigh``).

    ``bit_rate`` (bit/s), when given, replaces the adaptive MCS for digital payloads: a link of a
    fixed rate and no losses (a stated "10 Mbit/s uplink", or a ``tc``-shaped emulated link).
    ``rtt_ms`` is added once per request (scheduling, propagation and the answer's way back);
    ``overhead_bits`` per request count protocol headers (HTTP, TCP/IP) on top of the payload.
    A failed transport block is sent again, HARQ as in 5G: up to ``max_transmissions`` in all,
    each retransmission ``harq_rtt_ms`` after the previous one (the 4 ms default: about 8 slots of
    0.5 ms, NR at 30 kHz subcarrier spacing)."""

    bandwidth_hz: float = 10e6
    snr_db: float = 10.0
    channel: str = "awgn"
    rtt_ms: float = 0.0
    bit_rate: float | None = None
    overhead_bits: float = 0.0
    max_transmissions: int = 4
    harq_rtt_ms: float = 4.0

    def digital_rate(self, payload_bits: float = 2048) -> tuple[float, float, int | None]:
        """(information bit/s, first-transmission BLER, MCS index) of a ``payload_bits`` packet at
        this SNR, with the MCS link adaptation picks for its code blocks (Sionna's BLER per MCS and
        code-block size; CRC, transport-block padding and pilots count against the rate);
        (0, 1, None) in outage; (bit_rate, 0, None) on a fixed-rate link."""
        if self.bit_rate:
            return float(self.bit_rate), 0.0, None
        link = _digital_link(self.channel)
        nbytes = max(1, math.ceil(float(payload_bits) / 8))
        mcs = link.select_mcs(self.snr_db, nbytes)
        if mcs is None:
            return 0.0, 1.0, None
        bler = link.link_adaptation.packet_bler(mcs, link.code_block_bits(nbytes), self.snr_db)
        return self.bandwidth_hz * 8 * nbytes / link.channel_uses(nbytes, mcs), bler, mcs.index

    def transmissions(self, payload_bits: float = 2048) -> tuple[float, float]:
        """(expected transmissions, residual loss) of a ``payload_bits`` packet under HARQ: with
        its first-transmission BLER ``p`` taken for every round (conservative: incremental
        redundancy makes later rounds likelier to succeed), ``sum p^k`` for k < N rounds, and
        ``p^N`` lost."""
        return self._harq_rounds(self.digital_rate(payload_bits)[1])

    def _harq_rounds(self, bler: float) -> tuple[float, float]:
        """(expected transmissions, residual loss) for a first-transmission BLER (see :meth:`transmissions`)."""
        n = max(1, int(self.max_transmissions))
        return sum(bler ** k for k in range(n)), bler ** n

    def digital_ms(self, payload_bits: float) -> float:
        """Expected time to deliver ``payload_bits`` (plus ``overhead_bits``): airtime times the
        expected HARQ transmissions, plus a HARQ round trip per retransmission."""
        bits = float(payload_bits) + self.overhead_bits
        rate, bler, _ = self.digital_rate(bits)
        if rate <= 0:
            return float("inf")
        expected, _ = self._harq_rounds(bler)
        return self.rtt_ms + 1e3 * bits / rate * expected + self.harq_rtt_ms * (expected - 1)

    def analog_ms(self, channel_uses: float) -> float:
        """Time for ``channel_uses`` complex symbols at one symbol per ``1 / bandwidth`` seconds."""
        return self.rtt_ms + 1e3 * channel_uses / self.bandwidth_hz


@dataclass(frozen=True)
class Backhaul:
    """Edge-to-cloud link: bit rate and round-trip time."""

    bits_per_s: float = 1e9
    rtt_ms: float = 20.0

    def ms(self, bits: float) -> float:
        """Time the backhaul adds to one answer: ``bits`` forward, then the caption back (a whole
        round trip plus the transfer)."""
        return self.rtt_ms + 1e3 * bits / self.bits_per_s


@dataclass
class Scenario:
    """Everything a latency estimate needs: nodes, links, the model's costs and the payloads."""

    device: NodeProfile = PRESETS["phone"]
    edge: NodeProfile = PRESETS["edge-gpu"]
    cloud: NodeProfile = PRESETS["cloud-gpu"]
    wireless: WirelessLink = field(default_factory=WirelessLink)
    backhaul: Backhaul = field(default_factory=Backhaul)
    head_flops: float = 0.0       # device side of the split (FLOPs per image)
    tail_flops: float = 0.0       # server side of the split
    edge_extra_flops: float = 0.0  # device-edge-cloud: layers the edge runs before re-encoding
    codec_flops: float = 0.0      # encoder (and decoder) of our codec, per image
    payload_bits: float = 0.0     # our codec's payload
    image_bits: float = 0.0       # the cloud-only upload (JPEG/WebP)
    text_bits: float = 0.0        # the caption as text (device-only)
    backhaul_bits: float = 0.0    # device-edge-cloud: features re-encoded at the edge
    payload_channel_uses: float | None = None  # an analog (JSCC) payload: complex symbols per image
    caption_tokens: float = 0.0   # plain greedy decoding's sequential passes per caption (0: not priced)
    receiver_passes: float = 0.0  # device-edge-draft: the edge's passes with the draft (measured)
    draft_tokens: float = 0.0     # device-edge-draft: the drafter's sequential passes on the device
    drafter_flops: float = 0.0    # device-edge-draft: the drafter's FLOPs per caption
    #: measured compute in ms that replaces FLOPs / throughput: ``{paradigm: {stage: ms}}`` for
    #: the compute stages (``device``, ``encode``, ``edge``, ``decode``, ``cloud``); the link
    #: stages (``uplink``, ``backhaul``) always come from the link model
    measured_ms: dict = field(default_factory=dict)

    @property
    def full_flops(self) -> float:
        return self.head_flops + self.tail_flops


def breakdown(scenario: Scenario, paradigm: str) -> dict[str, float]:
    """Latency in ms per stage (``STAGES``) and ``total`` for one image under ``paradigm``."""
    if paradigm not in PARADIGMS:
        raise ConfigError(f"unknown paradigm {paradigm!r}; allowed: {list(PARADIGMS)}")
    s = scenario
    t = dict.fromkeys(STAGES, 0.0)
    passes = s.caption_tokens   # the decoding node's sequential passes (0: FLOPs alone)
    if paradigm.startswith("device-edge"):  # both splits: head and encoder on the device, our payload up
        t["device"] = s.device.compute_ms(s.head_flops)
        t["encode"] = s.device.compute_ms(s.codec_flops)
        t["uplink"] = (s.wireless.analog_ms(s.payload_channel_uses) if s.payload_channel_uses
                       else s.wireless.digital_ms(s.payload_bits))
    if paradigm == "device-only":
        t["device"] = s.device.compute_ms(s.full_flops) + passes * s.device.pass_ms
        t["uplink"] = s.wireless.digital_ms(s.text_bits)
    elif paradigm == "cloud-only":
        t["uplink"] = s.wireless.digital_ms(s.image_bits)
        t["backhaul"] = s.backhaul.ms(s.image_bits)
        t["cloud"] = s.cloud.compute_ms(s.full_flops) + passes * s.cloud.pass_ms
    elif paradigm == "device-edge":
        t["decode"] = s.edge.compute_ms(s.codec_flops)
        t["edge"] = s.edge.compute_ms(s.tail_flops) + passes * s.edge.pass_ms
    elif paradigm == "device-edge-draft":   # the device drafts too; the edge verifies in fewer passes
        t["device"] += s.device.compute_ms(s.drafter_flops) + s.draft_tokens * s.device.pass_ms
        t["decode"] = s.edge.compute_ms(s.codec_flops)
        t["edge"] = s.edge.compute_ms(s.tail_flops) + s.receiver_passes * s.edge.pass_ms
    else:  # device-edge-cloud: the edge decodes, runs more layers and re-encodes for the backhaul
        t["edge"] = s.edge.compute_ms(s.codec_flops + s.edge_extra_flops + s.codec_flops)
        t["backhaul"] = s.backhaul.ms(s.backhaul_bits)
        t["cloud"] = s.cloud.compute_ms(s.codec_flops + s.tail_flops - s.edge_extra_flops) + passes * s.cloud.pass_ms
    measured = s.measured_ms.get(paradigm, {})
    unknown = set(measured) - {"device", "encode", "edge", "decode", "cloud"}
    if unknown:
        raise ConfigError(f"measured_ms[{paradigm!r}]: {sorted(unknown)} are not compute stages")
    t.update({k: float(v) for k, v in measured.items()})
    t["total"] = sum(t[k] for k in STAGES)
    return t


def early_answer_ms(scenario: Scenario) -> float:
    """``device-edge-draft``: when the device can show its own draft (head, then drafting), before
    the edge's verified caption comes back."""
    s = scenario
    return s.device.compute_ms(s.head_flops + s.drafter_flops) + s.draft_tokens * s.device.pass_ms



def _log_bisect(gap, low: float, high: float) -> float | None:
    """Where ``gap`` changes sign between ``low`` and ``high`` (bisection in log scale); ``None`` if it does not."""
    import math

    below = gap(low) < 0
    if below == (gap(high) < 0):
        return None
    lo, hi = math.log(low), math.log(high)
    for _ in range(60):
        mid = (lo + hi) / 2
        if (gap(math.exp(mid)) < 0) == below:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def with_uplink(wireless: WirelessLink, value: float) -> WirelessLink:
    """The link with its uplink set to ``value``: the bit rate (bit/s) of a fixed-rate link, else
    the bandwidth (Hz)."""
    from dataclasses import replace

    return replace(wireless, bit_rate=value) if wireless.bit_rate else replace(wireless, bandwidth_hz=value)


def crossover_bandwidth(scenario: Scenario, a: str = "device-edge", b: str = "cloud-only",
                        low: float = 1e3, high: float = 1e10) -> float | None:
    """The uplink bandwidth (Hz; bit/s on a fixed-rate link) at which ``a`` and ``b`` answer
    equally fast (``a`` wins on one side); ``None`` when one is faster over the whole range."""
    from dataclasses import replace

    def gap(bw):
        s = replace(scenario, wireless=with_uplink(scenario.wireless, bw))
        return breakdown(s, a)["total"] - breakdown(s, b)["total"]

    return _log_bisect(gap, low, high)


def crossover_device_speed(scenario: Scenario, a: str = "device-edge", b: str = "device-only",
                           low: float = 1e8, high: float = 1e16) -> float | None:
    """The device FLOP/s under which ``a`` beats ``b`` (``device-only`` gets faster with the device)."""
    from dataclasses import replace

    def gap(speed):
        s = replace(scenario, device=replace(scenario.device, flops_per_s=speed))
        return breakdown(s, a)["total"] - breakdown(s, b)["total"]

    return _log_bisect(gap, low, high)


def node_from_dict(data: dict | str, role: str) -> NodeProfile:
    """A node from a preset name or a mapping (``{preset: phone, flops_per_s: ...}`` overrides)."""
    if isinstance(data, str):
        if data not in PRESETS:
            raise ConfigError(f"profile {role}: unknown preset {data!r}; presets: {sorted(PRESETS)}")
        return PRESETS[data]
    base = asdict(PRESETS[data["preset"]]) if "preset" in data else {"name": role}
    unknown = sorted(set(data) - {"preset", "name", "flops_per_s", "memory_bytes", "source", "pass_ms"})
    if unknown:
        raise ConfigError(f"profile {role}: unknown key(s) {unknown}; allowed: preset, name, flops_per_s, "
                          "memory_bytes, source, pass_ms")
    base.update({k: _number(v, f"{role}.{k}") if k in ("flops_per_s", "memory_bytes", "pass_ms") and v is not None
                 else v for k, v in data.items() if k != "preset"})
    return NodeProfile(**base)


def _number(value, key: str) -> float:
    """YAML 1.1 reads ``1.0e12`` (no exponent sign) as text: accept it as a number."""
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"profile key {key!r}: expected a number, got {value!r}") from exc


def read_profile(path: str | Path) -> dict:
    """A YAML profile: ``device``, ``edge``, ``cloud`` (preset names or mappings), ``wireless``
    (bandwidth_hz, snr_db, channel, rtt_ms, bit_rate, overhead_bits) and ``backhaul`` (bits_per_s, rtt_ms)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"profile file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - {"device", "edge", "cloud", "wireless", "backhaul"})
    if unknown:
        raise ConfigError(f"profile {path}: unknown key(s) {unknown}; allowed: device, edge, cloud, wireless, backhaul")
    try:
        return {"device": node_from_dict(data.get("device", "phone"), "device"),
                "edge": node_from_dict(data.get("edge", "edge-gpu"), "edge"),
                "cloud": node_from_dict(data.get("cloud", "cloud-gpu"), "cloud"),
                "wireless": WirelessLink(**{k: v if k == "channel" else _number(v, f"wireless.{k}")
                                            for k, v in (data.get("wireless") or {}).items()}),
                "backhaul": Backhaul(**{k: _number(v, f"backhaul.{k}") for k, v in (data.get("backhaul") or {}).items()})}
    except TypeError as exc:
        raise ConfigError(f"profile {path}: {exc}") from exc


def plot_latency(scenario: Scenario, path: str | Path, paradigms=None, low: float = 1e4,
                 high: float = 1e9, title: str = "") -> Path:
    """Latency against uplink bandwidth (bit rate on a fixed-rate link), one line per paradigm
    (default: every paradigm the scenario prices; ``device-edge-draft`` where it states the
    receiver's passes); the bandwidths where the split meets cloud upload and device-only are marked."""
    if paradigms is None:
        paradigms = [p for p in PARADIGMS if p != "device-edge-draft" or scenario.receiver_passes]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from dataclasses import replace

    bandwidths = np.logspace(np.log10(low), np.log10(high), 80)
    fig, ax = plt.subplots(figsize=(8, 5))
    for p in paradigms:
        totals = [breakdown(replace(scenario, wireless=with_uplink(scenario.wireless, b)), p)["total"]
                  for b in bandwidths]
        ax.plot(bandwidths, totals, label=p)
    unit = "Mbit/s" if scenario.wireless.bit_rate else "MHz"
    for other, style in (("cloud-only", ":"), ("device-only", "--")):
        cross = crossover_bandwidth(scenario, "device-edge", other, low, high) if other in paradigms else None
        if cross:
            ax.axvline(cross, color="k", ls=style, lw=1)
            ax.text(cross, 0.02, f" split = {other} at {cross / 1e6:.3g} {unit}", rotation=90, va="bottom",
                    fontsize=8, transform=ax.get_xaxis_transform())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("uplink bit rate (bit/s)" if scenario.wireless.bit_rate else "uplink bandwidth (Hz)")
    ax.set_ylabel("latency per image (ms)")
    ax.set_title(title or f"SNR {scenario.wireless.snr_db:g} dB, {scenario.wireless.channel}; device "
                          f"{scenario.device.name}, edge {scenario.edge.name}, cloud {scenario.cloud.name}")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save_figure(fig, path)
