"""Choose how one image flows: paradigm, split point and codec rate point with the lowest expected
latency that still meets a caption-quality floor, from measured rate-quality tables.

Every candidate comes from a row of ``results.csv`` (``intelliflow eval`` / ``demo``), so its
quality is measured, not modelled:

- ``device-only``: the identity row's quality (the unsplit model), the text of the caption sent up;
- ``cloud-only``: each image-upload row (a codec that takes the image: ``jpeg-Q``, ``webp-Q``,
  ``avif-Q``) on the ideal link;
- ``device-edge``: each digital feature codec row (learned codecs and ``quantize-B``) on the ideal
  link (one per rate point; lost blocks are
  re-sent, which the link's BLER prices in) and each analog (JSCC) row measured on the link's
  channel at the highest SNR not above the link's (conservative; not on a fixed-rate bit link);
- ``device-edge-cloud``: each digital codec row again, the edge running ``edge_fraction`` of the
  tail and re-sending the same payload over the backhaul;
- ``device-edge-draft``: each digital feature codec row measured with a drafter (``eval --draft``):
  its payload carries the draft, its receiver passes and acceptance are measured. Where such rows
  exist, every paradigm's text decoding is priced per pass too (their ``greedy_passes``), so the
  comparison is like for like.

A candidate is out when its quality is under the floor, the link is in outage for it, or a node's
memory cannot hold its side of the model (``bytes_per_param`` per parameter). The plan keeps
every candidate with its latency and the reason it lost, so ``why()`` can say what decided.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

from intelliflow.errors import ConfigError
from intelliflow.models.costs import SplitCost

from .latency import Backhaul, NodeProfile, PRESETS, Scenario, WirelessLink, breakdown


def codec_takes(codec: str, kind: str | None = None) -> str | None:
    """What a results row's codec takes on the device (``features``, ``image`` or ``caption``), from
    the codec registry; a learned codec whose checkpoint is not here takes features."""
    from intelliflow.codec.registry import codec_class

    cls = codec_class(codec)
    if cls is not None:
        return cls.takes
    return "features" if kind in ("learned", "analog") else None


@dataclass(frozen=True)
class Candidate:
    """One way to caption an image: a paradigm with a measured (payload, quality) operating point."""

    paradigm: str
    method: str
    codec: str
    split: int | None
    quality: float
    payload_bits: float = 0.0
    channel_uses: float | None = None  # analog payloads: complex symbols per image
    rate_point: float | None = None
    snr_db: float | None = None       # the SNR the quality was measured at (analog)
    receiver_passes: float | None = None  # device-edge-draft: the edge's decoder passes (measured)
    draft_tokens: float | None = None     # device-edge-draft: tokens drafted per caption (measured)

    @property
    def label(self) -> str:
        where = f" k={self.split}" if self.paradigm.startswith("device-edge") and self.split is not None else ""
        rate = f" q={self.rate_point:g}" if self.rate_point is not None else ""
        size = (f"{self.channel_uses:.0f} channel uses" if self.channel_uses else f"{self.payload_bits:.0f} bits")
        return f"{self.paradigm}{where}: {self.codec}{rate} ({size})"


@dataclass
class Option:
    """A candidate priced at one link state: its latency breakdown and, if out, why."""

    candidate: Candidate
    ms: dict
    rejected: str = ""

    @property
    def total(self) -> float:
        return self.ms["total"]


@dataclass
class Plan:
    """The planner's answer for one link state."""

    wireless: WirelessLink
    floor: float
    clean: float
    options: list[Option] = field(default_factory=list)

    @property
    def feasible(self) -> list[Option]:
        return sorted((o for o in self.options if not o.rejected), key=lambda o: o.total)

    @property
    def choice(self) -> Option | None:
        """The fastest candidate that meets the floor; ``None`` when none does."""
        return self.feasible[0] if self.feasible else None

    def best_per_paradigm(self) -> dict[str, Option]:
        """The fastest feasible option of each paradigm (the fastest rejected one where none is)."""
        best: dict[str, Option] = {}
        for o in sorted(self.options, key=lambda o: (bool(o.rejected), o.total)):
            best.setdefault(o.candidate.paradigm, o)
        return best

    def why(self) -> str:
        """The choice and what decided it, in a few lines."""
        link = self.wireless
        rate = (f"{link.bit_rate / 1e6:g} Mbit/s" if link.bit_rate else f"{link.bandwidth_hz / 1e6:g} MHz")
        lines = [f"link: {rate} uplink at {link.snr_db:g} dB ({link.channel}); quality floor CIDEr-D "
                 f"{self.floor:.3f} ({self.floor / self.clean:.0%} of clean {self.clean:.3f})"]
        choice = self.choice
        if choice is None:
            from collections import Counter

            kinds = Counter("outage" if "outage" in o.rejected else "memory" if "holds" in o.rejected
                            else "under the floor" for o in self.options)
            lines.append("no candidate meets the floor: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
            reachable = [o for o in self.options if "outage" not in o.rejected]
            if reachable:
                best = max(reachable, key=lambda o: o.candidate.quality)
                lines.append(f"  the best quality the link still carries: {best.candidate.label}, CIDEr-D "
                             f"{best.candidate.quality:.3f}, {best.total:.3g} ms")
            return "\n".join(lines)
        c = choice.candidate
        stages = ", ".join(f"{k} {v:.3g}" for k, v in choice.ms.items() if k != "total" and v > 0)
        lines.append(f"choice: {c.label}: {choice.total:.3g} ms ({stages}); CIDEr-D {c.quality:.3f}")
        for paradigm, o in self.best_per_paradigm().items():
            if o is choice:
                continue
            if o.rejected:
                lines.append(f"  {paradigm}: out ({o.candidate.label}: {o.rejected})")
            else:
                lines.append(f"  {paradigm}: best is {o.candidate.label}: {o.total:.3g} ms, "
                             f"{o.total / choice.total:.2g}x slower")
        return "\n".join(lines)


class Planner:
    """Prices every measured candidate at a link state and picks the fastest one above the floor.

    :param rows: ``results.csv`` rows (``intelliflow.evaluation.results.load_results``)
    :param costs: ``{split: SplitCost}`` (:mod:`intelliflow.models.costs`) of the model the rows were measured with
    :param quality: the floor as a fraction of the clean CIDEr-D (the identity row)
    :param codec_flops: FLOPs of one side (encoder or decoder) of each codec, per image
    :param measured_ms: measured compute per paradigm and stage, replacing FLOPs / throughput
    :param drafter_flops_per_token: the drafter's FLOPs per drafted token (``device-edge-draft``)
    """

    def __init__(self, rows: Sequence[dict], costs: Mapping[int, SplitCost], device: NodeProfile = PRESETS["phone"],
                 edge: NodeProfile = PRESETS["edge-gpu"], cloud: NodeProfile = PRESETS["cloud-gpu"],
                 backhaul: Backhaul | None = None, quality: float = 0.95, clean: float | None = None,
                 codec_flops: Mapping[str, float] | None = None, edge_fraction: float = 0.5,
                 bytes_per_param: float = 2.0, text_bits: float | None = None, measured_ms: dict | None = None,
                 drafter_flops_per_token: float = 0.0):
        from intelliflow.evaluation.results import clean_cider

        self.rows, self.costs = list(rows), dict(costs)
        if not self.costs:
            raise ConfigError("the planner needs the model's costs at one split point at least")
        self.device, self.edge, self.cloud = device, edge, cloud
        self.backhaul = backhaul or Backhaul()
        self.clean = clean if clean is not None else clean_cider(self.rows)
        if self.clean is None:
            raise ConfigError("the results have no identity row: give the clean CIDEr-D (clean=...) or evaluate "
                              "--codec identity")
        if not 0 < quality <= 1.5:
            raise ConfigError(f"quality floor {quality!r}: give a fraction of the clean CIDEr-D, e.g. 0.95")
        self.quality, self.floor = quality, quality * self.clean
        self.codec_flops = dict(codec_flops or {})
        self.edge_fraction, self.bytes_per_param = edge_fraction, bytes_per_param
        self.measured_ms = dict(measured_ms or {})  # {paradigm: {stage: ms}} measured compute (Scenario.measured_ms)
        texts = [r["payload_bits"] for r in self.rows if codec_takes(str(r.get("codec"))) == "caption"
                 and r.get("channel") == "none"
                 and r.get("payload_bits")]
        self.text_bits = text_bits if text_bits is not None else (texts[0] if texts else 8 * 60.0)
        self.default_split = next(iter(self.costs))
        self.drafter_flops_per_token = float(drafter_flops_per_token)
        drafted = [r["greedy_passes"] for r in self.rows if r.get("drafter") and r.get("greedy_passes")]
        #: plain greedy decoding's passes per caption, priced per pass where drafted rows measured them
        self.caption_tokens = sum(drafted) / len(drafted) if drafted else 0.0

    # ------------------------------------------------------------------ candidates
    def candidates(self, wireless: WirelessLink) -> list[Candidate]:
        """Every measured operating point usable at this link state."""
        out = [Candidate("device-only", "device-only", "text", None, self.clean, self.text_bits)]
        analog: dict[tuple, dict] = {}
        for r in self.rows:
            if r.get("CIDEr-D") is None:
                continue
            kind, codec, channel = r.get("kind"), str(r.get("codec")), str(r.get("channel") or "none")
            split = int(r["split"]) if r.get("split") not in (None, "") else self.default_split
            if kind == "analog" and not wireless.bit_rate and channel.split(":")[0] == wireless.channel and r.get("snr_db") is not None \
                    and r["snr_db"] <= wireless.snr_db and r.get("channel_uses"):
                key = (r["method"], codec, split, r["channel_uses"])
                if key not in analog or r["snr_db"] > analog[key]["snr_db"]:
                    analog[key] = r  # the highest measured SNR not above the link's
            if channel != "none" or not r.get("payload_bits"):
                continue
            takes = codec_takes(codec, kind)
            if r.get("drafter"):   # its payload carries the draft: the speculative paradigm only
                if takes == "features" and kind in ("learned", "bytes") and split in self.costs \
                        and r.get("receiver_passes") and r.get("draft_acceptance"):
                    out.append(Candidate("device-edge-draft", r["method"], codec, split, r["CIDEr-D"],
                                         r["payload_bits"], rate_point=r.get("rate_point"),
                                         receiver_passes=r["receiver_passes"],
                                         draft_tokens=r["draft_accepted_tokens"] / r["draft_acceptance"]))
                continue
            if takes == "image":
                out.append(Candidate("cloud-only", r["method"], codec, None, r["CIDEr-D"], r["payload_bits"]))
            elif takes == "features" and kind in ("learned", "bytes") and split in self.costs:
                for paradigm in ("device-edge", "device-edge-cloud"):
                    out.append(Candidate(paradigm, r["method"], codec, split, r["CIDEr-D"], r["payload_bits"],
                                         rate_point=r.get("rate_point")))
        for (method, codec, split, uses), r in analog.items():
            if split in self.costs:
                out.append(Candidate("device-edge", method, codec, split, r["CIDEr-D"], channel_uses=uses,
                                     snr_db=r["snr_db"]))
        return out

    def scenario(self, candidate: Candidate, wireless: WirelessLink) -> Scenario:
        """The latency model's inputs for one candidate."""
        split = candidate.split if candidate.split is not None else self.default_split
        cost = self.costs[split]
        flops = self.codec_flops.get(candidate.codec, 0.0)
        return Scenario(device=self.device, edge=self.edge, cloud=self.cloud, wireless=wireless,
                        backhaul=self.backhaul, head_flops=cost.device_flops, tail_flops=cost.server_flops,
                        edge_extra_flops=self.edge_fraction * cost.server_flops, codec_flops=flops,
                        payload_bits=candidate.payload_bits, payload_channel_uses=candidate.channel_uses,
                        image_bits=candidate.payload_bits, text_bits=self.text_bits,
                        backhaul_bits=candidate.payload_bits, measured_ms=self.measured_ms,
                        caption_tokens=self.caption_tokens, receiver_passes=candidate.receiver_passes or 0.0,
                        draft_tokens=candidate.draft_tokens or 0.0,
                        drafter_flops=self.drafter_flops_per_token * (candidate.draft_tokens or 0.0))

    def _memory_problem(self, candidate: Candidate) -> str:
        split = candidate.split if candidate.split is not None else self.default_split
        cost = self.costs[split]
        full = cost.device_params + cost.server_params
        need = {"device-only": [(self.device, full)], "cloud-only": [(self.cloud, full)],
                "device-edge": [(self.device, cost.device_params), (self.edge, cost.server_params)],
                "device-edge-draft": [(self.device, cost.device_params), (self.edge, cost.server_params)],
                "device-edge-cloud": [(self.device, cost.device_params),
                                      (self.edge, self.edge_fraction * cost.server_params),
                                      (self.cloud, (1 - self.edge_fraction) * cost.server_params)]}[candidate.paradigm]
        for node, params in need:
            if node.memory_bytes and params * self.bytes_per_param > node.memory_bytes:
                return (f"{node.name} holds {node.memory_bytes / 1e9:g} GB, its side of the model needs "
                        f"{params * self.bytes_per_param / 1e9:.3g} GB")
        return ""

    def plan(self, wireless: WirelessLink) -> Plan:
        """Price every candidate at ``wireless`` and choose."""
        plan = Plan(wireless, self.floor, self.clean)
        for c in self.candidates(wireless):
            ms = breakdown(self.scenario(c, wireless), c.paradigm)
            if ms["total"] == float("inf"):
                why = f"the link is in outage at {wireless.snr_db:g} dB"
            elif c.quality < self.floor - 1e-9:
                why = f"CIDEr-D {c.quality:.3f} is under the floor {self.floor:.3f}"
            else:
                why = self._memory_problem(c)
            plan.options.append(Option(c, ms, why))
        return plan

    def comparison(self, plan: Plan) -> Scenario:
        """One scenario holding the best operating point of every paradigm in ``plan`` (for
        crossovers and plots: the split's payload, the upload's image, the text)."""
        best = plan.best_per_paradigm()
        split = best.get("device-edge") or best.get("device-edge-cloud")
        base = self.scenario(split.candidate, plan.wireless) if split else Scenario(
            device=self.device, edge=self.edge, cloud=self.cloud, wireless=plan.wireless, backhaul=self.backhaul,
            head_flops=self.costs[self.default_split].device_flops, tail_flops=self.costs[self.default_split].server_flops,
            text_bits=self.text_bits, caption_tokens=self.caption_tokens)
        upload = best.get("cloud-only")
        return replace(base, image_bits=upload.candidate.payload_bits if upload else 0.0)

    def replan(self, links: Sequence[WirelessLink]) -> list[tuple[Plan, bool]]:
        """Plans for a sequence of link states (SNR or bandwidth changing); ``True`` where the
        choice differs from the previous state's."""
        out, previous = [], None
        for link in links:
            plan = self.plan(link)
            c = plan.choice.candidate if plan.choice else None
            current = c and (c.paradigm, c.codec, c.split, c.rate_point, c.payload_bits, c.channel_uses)
            out.append((plan, bool(out) and current != previous))
            previous = current
        return out


def links_over(base: WirelessLink, snr_db: Sequence[float] = (), bandwidth_hz: Sequence[float] = (),
               bit_rate: Sequence[float] = ()) -> list[WirelessLink]:
    """Link states for every (bit rate, bandwidth, SNR) combination, the base link's values where a
    list is empty (a fixed bit rate carries digital payloads; bandwidth and SNR still set analog ones)."""
    snrs = list(snr_db) or [base.snr_db]
    bands = list(bandwidth_hz) or [base.bandwidth_hz]
    rates = list(bit_rate) or [base.bit_rate]
    return [replace(base, snr_db=float(s), bandwidth_hz=float(b), bit_rate=None if r is None else float(r))
            for r in rates for b in bands for s in snrs]
