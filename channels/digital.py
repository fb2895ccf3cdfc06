"""The digital link: bytes ─► CRC ─► 5G LDPC ─► QAM ─► analog channel ─► demap ─► decode ─► CRC ─► bytes.

Separate source and channel coding, the information-flow path of intelliflow, built from
Sionna's blocks (``CRCEncoder``/``CRCDecoder``, ``LDPC5GEncoder``/``LDPC5GDecoder``,
``Mapper``/``Demapper``) and any analog channel of :mod:`intelliflow.channels.analog`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from intelliflow.devices import device_string
from intelliflow.errors import ConfigError

from .link_adaptation import CRC_BITS, LinkAdaptation, OuterLoop, code_block_bits
from .mcs import MCS, MCS_TABLE, get_mcs

__all__ = ["DigitalLink", "LinkResult", "CN_UPDATES", "HARQ_MODES", "RV_SEQUENCE", "CRC_BITS",
           "DEFAULT_BLOCK_BYTES", "DEFAULT_BLOCK_BITS"]

CN_UPDATES = ("boxplus-phi", "boxplus", "minsum", "offset-minsum")
HARQ_MODES = ("ir", "chase", "arq")
RV_SEQUENCE = (0, 2, 3, 1)  # redundancy versions of successive HARQ-IR transmissions (TS 38.321)
CRC_DEGREE = "CRC24A"
DEFAULT_BLOCK_BYTES = 256  # payload bytes per code block of a DigitalLink
DEFAULT_BLOCK_BITS = 8 * DEFAULT_BLOCK_BYTES
# Transport block sizes up to 3824 bits (TS 38.214 Table 5.1.3.2-1), in bytes: a code block is
# zero-padded to the next one, as 5G sizes transport blocks (the receiver knows the size from the
# control channel and strips the padding). This bounds the number of distinct LDPC codes, each of
# which takes Sionna a while to build, and its cost is counted in the channel uses.
TBS_BYTES = tuple(b // 8 for b in (
    24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128, 136, 144, 152, 160, 168, 176, 184, 192, 208,
    224, 240, 256, 272, 288, 304, 320, 336, 352, 368, 384, 408, 432, 456, 480, 504, 528, 552, 576, 608, 640,
    672, 704, 736, 768, 808, 848, 888, 928, 984, 1032, 1064, 1128, 1160, 1192, 1224, 1256, 1288, 1320, 1352,
    1416, 1480, 1544, 1608, 1672, 1736, 1800, 1864, 1928, 2024, 2088, 2152, 2216, 2280, 2408, 2472, 2536,
    2600, 2664, 2728, 2792, 2856, 2976, 3104, 3240, 3368, 3496, 3624, 3752, 3824))
MAX_BLOCK_BYTES = 477  # k = 8 * 477 + 24 = 3840, the largest k base graph 2 takes (rates <= 1/4)


@dataclass
class LinkResult:
    """What :meth:`DigitalLink.transmit` returns.

    Unpacks like the DESIGN contract, ``received, channel_uses = link.transmit(...)``.

    :ivar received: ``bytes`` (or ``None`` when lost) for one payload; a list of them for a list.
    :ivar channel_uses: ``int``. Complex channel uses spent on all packets, retransmissions and
        pilots/cyclic prefix included.
    :ivar block_errors: ``int``. Code blocks whose CRC failed, counted once per transmission.
    :ivar blocks: ``int``. Code blocks in the payload(s).
    :ivar blocks_lost: ``int``. Code blocks still failing after the last transmission.
    :ivar transmissions: ``int``. Code-block transmissions, retransmissions included.
    :ivar mcs: list of ``int``. MCS index used per packet.
    :ivar channel_uses_per_packet: list of ``int``.
    :ivar first_block_errors: ``int``. Code blocks whose first transmission failed (the BLER that
        link adaptation aims at is ``first_block_errors / blocks``).
    :ivar transmissions_per_packet: list of ``int``: the HARQ rounds each packet took (1: its first
        transmission got through; ``max_transmissions`` and lost is possible).
    :ivar first_failed_per_packet: list of ``bool``: a block of the packet failed its first transmission.
    """

    received: Any = field(repr=False)
    channel_uses: int
    block_errors: int
    blocks: int
    blocks_lost: int
    transmissions: int
    mcs: list[int] = field(default_factory=list)
    channel_uses_per_packet: list[int] = field(default_factory=list)
    first_block_errors: int = 0
    transmissions_per_packet: list[int] = field(default_factory=list)
    first_failed_per_packet: list[bool] = field(default_factory=list)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.received, self.channel_uses))


@dataclass
class _Block:
    packet: int
    position: int
    data: bytes
    mcs: MCS
    length: int  # payload bytes before padding
    llrs: list = field(default_factory=list)   # one [n] LLR tensor per transmission
    ok: bool = False
    decoded: bytes = b""


class DigitalLink:
    """A 5G-style digital link over an analog channel.

    Each packet (e.g. the bytes of one image) is split into code blocks of at most
    ``block_bytes`` bytes; each gets a CRC24A, is encoded with Sionna's 5G LDPC at the MCS code
    rate (``n = ceil((8 b + 24) / (R Q_m)) * Q_m`` coded bits, rate-matched and interleaved by
    ``LDPC5GEncoder``), mapped to Gray QAM and sent; the blocks of a packet travel as one row of
    symbols through the channel (so ``rayleigh`` with ``block_length=None`` fades a whole packet with
    one gain). The receiver demaps to LLRs with the channel's post-equalisation noise variance,
    decodes with ``LDPC5GDecoder`` and checks the CRC. A packet whose blocks all pass is received;
    otherwise it is lost, unless retransmission is on (``max_transmissions > 1``): failed blocks are
    sent again with HARQ incremental redundancy (``"ir"``, redundancy versions 0, 2, 3, 1 combined
    in the decoder), Chase combining (``"chase"``, LLRs added) or plain ARQ (``"arq"``), every
    extra channel use counted.

    :param channel: an analog channel, its name or its config (``"awgn"``, ``{"name": "rayleigh", ...}``).
    :param block_bytes: payload bytes per code block (1 to 477).
    :param cn_update: Sionna's check-node update (``"boxplus-phi"``, ``"boxplus"``, ``"offset-minsum"``,
        ``"minsum"``). In Sionna 2 (PyTorch) an iteration costs the same with each of them, and
        ``boxplus-phi`` decodes best, hence the default (see ``benchmarks/channels_throughput.py``).
    :param num_iter: belief-propagation iterations (Sionna runs all of them, no early stop): the
        decoder's time grows linearly with it; 20 (default) is about 0.6 dB better at 10 % BLER than
        12 and 1.4 dB better than 8.
    :param demapping: ``"app"`` or ``"maxlog"``.
    :param max_transmissions: transmissions per block (1: no retransmission).
    :param harq: ``"ir"``, ``"chase"`` or ``"arq"``.
    :param target_bler: first-transmission BLER that ``mcs="auto"`` aims at (per packet, over its
        actual code-block sizes; see :mod:`~intelliflow.channels.link_adaptation`).
    :param olla: outer-loop link adaptation for ``mcs="auto"``: an SNR offset per mean SNR learnt
        from each packet's first-transmission ACK/NACK. ``None`` (default): on for fading channels,
        where the abstraction is only approximate (several fades per packet, estimated CSI), off
        over AWGN, where Sionna's tables are the link.
    :param olla_delta_up: dB the offset grows after a failed first transmission.
    :param tbs_padding: zero-pad each code block to the next 5G transport block size (the padding's
        channel uses are counted; the receiver strips it), so only a few LDPC codes are ever built.
    :param device: torch device of the Sionna blocks and the channel.

    .. code-block:: python

        link = DigitalLink("awgn")
        received, uses = link.transmit(b"hello" * 100, snr_db=8.0, mcs=13)
        result = link.transmit([b"a" * 300, b"b" * 40], snr_db=[3.0, 12.0], mcs="auto")
        result.received, result.channel_uses, result.block_errors, result.mcs
    """

    def __init__(self, channel: Any = "awgn", block_bytes: int = DEFAULT_BLOCK_BYTES, cn_update: str = "boxplus-phi",
                 num_iter: int = 20, demapping: str = "app", max_transmissions: int = 1, harq: str = "ir",
                 target_bler: float = 0.1, tbs_padding: bool = True, olla: bool | None = None,
                 olla_delta_up: float = 1.0, device: str | torch.device = "cpu") -> None:
        from .analog import AnalogChannel
        from .registry import build_channel

        self.channel = channel if isinstance(channel, AnalogChannel) else build_channel(channel)
        if isinstance(block_bytes, bool) or not isinstance(block_bytes, int) or not 1 <= block_bytes <= MAX_BLOCK_BYTES:
            raise ConfigError(f"block_bytes must be an integer in 1..{MAX_BLOCK_BYTES}, got {block_bytes!r}")
        if cn_update not in CN_UPDATES:
            raise ConfigError(f"cn_update={cn_update!r} is not allowed; allowed: {list(CN_UPDATES)}")
        if isinstance(num_iter, bool) or not isinstance(num_iter, int) or num_iter < 1:
            raise ConfigError(f"num_iter must be a positive integer, got {num_iter!r}")
        if demapping not in ("app", "maxlog"):
            raise ConfigError(f"demapping={demapping!r} is not allowed; allowed: ['app', 'maxlog']")
        if isinstance(max_transmissions, bool) or not isinstance(max_transmissions, int) \
                or not 1 <= max_transmissions <= 8:
            raise ConfigError(f"max_transmissions must be an integer in 1..8, got {max_transmissions!r}")
        if harq not in HARQ_MODES:
            raise ConfigError(f"harq={harq!r} is not allowed; allowed: {list(HARQ_MODES)}")
        if not (isinstance(target_bler, (int, float)) and 0.0 < target_bler < 1.0):
            raise ConfigError(f"target_bler must be in (0, 1), got {target_bler!r}")
        self.block_bytes = block_bytes
        self.cn_update = cn_update
        self.num_iter = num_iter
        self.demapping = demapping
        self.max_transmissions = max_transmissions
        self.tbs_padding = bool(tbs_padding)
        self.harq = harq
        self.target_bler = float(target_bler)
        self.olla = OuterLoop(self.target_bler, olla_delta_up) if (
            olla if olla is not None else self.channel.name not in ("awgn", "none")) else None
        dev = torch.device(device)
        self.device = dev
        self._dev = device_string(dev)
        self._cache: OrderedDict[tuple, Any] = OrderedDict()

    # ------------------------------------------------------------------ sizes

    @staticmethod
    def codeword_bits(payload_bytes: int, mcs: int | MCS) -> int:
        """Coded bits ``n`` of one code block carrying ``payload_bytes`` bytes at ``mcs``."""
        mcs = get_mcs(mcs)
        k = code_block_bits(payload_bytes)
        m = mcs.bits_per_symbol
        return int(math.ceil(k / (mcs.code_rate * m) - 1e-9)) * m

    def block_sizes(self, payload_bytes: int) -> list[int]:
        """Payload bytes of each code block of a packet of ``payload_bytes`` bytes (before padding); an
        empty payload (a stream image whose body codes to nothing) is still one block: its CRC tells the
        receiver the image arrived."""
        full, rest = divmod(int(payload_bytes), self.block_bytes)
        return [self.block_bytes] * full + ([rest] if rest or not full else [])   # an empty payload: one block, its CRC

    def padded_size(self, block_bytes: int) -> int:
        """Bytes a code block of ``block_bytes`` occupies: the next transport block size (``TBS_BYTES``)
        when ``tbs_padding`` is on, at most ``block_bytes`` of the link (full blocks are not padded)."""
        if not self.tbs_padding or block_bytes >= self.block_bytes:
            return block_bytes
        return min(self.block_bytes, next((t for t in TBS_BYTES if t >= block_bytes), block_bytes))

    def data_symbols(self, payload_bytes: int, mcs: int | MCS) -> int:
        """QAM symbols of one transmission of a packet (before pilots/cyclic prefix)."""
        mcs = get_mcs(mcs)
        return sum(self.codeword_bits(self.padded_size(b), mcs) // mcs.bits_per_symbol
                   for b in self.block_sizes(payload_bytes))

    def channel_uses(self, payload_bytes: int, mcs: int | MCS) -> int:
        """Channel uses of one transmission of a packet, channel overhead included."""
        n = self.data_symbols(payload_bytes, mcs)
        return self.channel.channel_uses(n) if n else 0

    def spectral_efficiency(self, mcs: int | MCS, payload_bytes: int | None = None) -> float:
        """Payload (information) bits per channel use of one transmission (full blocks by default)."""
        payload_bytes = payload_bytes or self.block_bytes
        return 8.0 * payload_bytes / self.channel_uses(payload_bytes, mcs)

    def code_block_bits(self, payload_bytes: int) -> list[int]:
        """LDPC information bits (CRC included) of each code block of a ``payload_bytes`` packet,
        padding included: the code-block sizes its BLER depends on."""
        return [code_block_bits(self.padded_size(b)) for b in self.block_sizes(payload_bytes)]

    @cached_property
    def link_adaptation(self) -> LinkAdaptation:
        """BLER per MCS and code-block size over this link's channel (Sionna's PHY abstraction; built
        on first use, so a link over a channel without one still sends at a given MCS)."""
        return LinkAdaptation(self.channel, self.target_bler)

    def _adapted_snr(self, snr_db: float) -> float:
        """The SNR the MCS is chosen at: ``snr_db`` less the outer loop's offset, when it is on."""
        return snr_db - (self.olla.offset(snr_db) if self.olla else 0.0)

    def select_mcs(self, snr_db: float, payload_bytes: int = DEFAULT_BLOCK_BYTES) -> MCS | None:
        """Highest-rate MCS whose first-transmission BLER for a ``payload_bytes`` packet at
        ``snr_db`` (less the outer loop's offset, when on) is at most ``target_bler``."""
        return self.link_adaptation.select(self.code_block_bits(payload_bytes), self._adapted_snr(snr_db))

    def settle(self, snr_db: float, payload_bytes: int = 32, packets: int = 320, batch: int = 32) -> float:
        """Bring the outer loop to its steady state at ``snr_db`` with ``packets`` random probe payloads
        of ``payload_bytes`` bytes (sent ``batch`` at a time, the random state as it is: seed it
        first), then freeze it, so what follows measures a settled link whose MCS choice no longer
        depends on the packets before it; returns the offset (dB). Without an outer loop: 0."""
        if self.olla is None:
            return 0.0
        self.olla.frozen = False
        self.olla.reset(snr_db)
        for start in range(0, packets, batch):
            probe = torch.randint(0, 256, (min(batch, packets - start), payload_bytes), dtype=torch.uint8)
            self.transmit([bytes(row.tolist()) for row in probe], snr_db, "auto")
        self.olla.frozen = True
        return self.olla.offset(snr_db)

    # ------------------------------------------------------------------ Sionna blocks

    def _cached(self, key: tuple, make) -> Any:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = make()
        self._cache[key] = value
        while len(self._cache) > 96:
            self._cache.popitem(last=False)
        return value

    def _codec(self, nbytes: int, mcs: MCS) -> dict:
        from sionna.phy.fec.crc import CRCDecoder, CRCEncoder
        from sionna.phy.fec.ldpc import LDPC5GDecoder, LDPC5GEncoder

        def make() -> dict:
            k = code_block_bits(nbytes)
            crc = CRCEncoder(CRC_DEGREE, k=8 * nbytes, device=self._dev)
            enc = LDPC5GEncoder(k, self.codeword_bits(nbytes, mcs), num_bits_per_symbol=mcs.bits_per_symbol,
                                device=self._dev)
            dec = LDPC5GDecoder(enc, cn_update=self.cn_update, num_iter=self.num_iter, hard_out=True,
                                return_infobits=True, device=self._dev)
            return {"crc": crc, "crc_dec": CRCDecoder(crc, device=self._dev), "enc": enc, "dec": dec}

        return self._cached(("codec", nbytes, mcs.index), make)

    def _harq_decoder(self, nbytes: int, mcs: MCS) -> Any:
        from sionna.phy.fec.ldpc import LDPC5GDecoder

        enc = self._codec(nbytes, mcs)["enc"]
        return self._cached(("harq", nbytes, mcs.index), lambda: LDPC5GDecoder(
            enc, cn_update=self.cn_update, num_iter=self.num_iter, hard_out=True, return_infobits=True,
            harq_mode=True, device=self._dev))

    def _modem(self, m: int) -> tuple[Any, Any]:
        from sionna.phy.mapping import Demapper, Mapper

        return self._cached(("modem", m, self.demapping), lambda: (
            Mapper("qam", m, device=self._dev), Demapper(self.demapping, "qam", m, device=self._dev)))

    # ------------------------------------------------------------------ transmit

    def max_payload_bytes(self, channel_uses: int, mcs: int | MCS) -> int:
        """The most payload bytes one transmission at ``mcs`` fits in ``channel_uses`` (0 if none)."""
        lo, hi = 0, 1
        while self.channel_uses(hi, mcs) <= channel_uses:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.channel_uses(mid, mcs) <= channel_uses else (lo, mid)
        return lo

    def resolve_mcs(self, mcs: Any, snrs: list[float], payload_bytes: Sequence[int] | None = None) -> list[MCS]:
        """The MCS of each packet: ``"auto"`` (per SNR and packet size; the most robust where none
        meets the target), one index for all, or one per packet."""
        if isinstance(mcs, str):
            if mcs != "auto":
                raise ConfigError(f"mcs={mcs!r} is not allowed; allowed: 'auto' or an MCS index")
            sizes = list(payload_bytes) if payload_bytes is not None else [self.block_bytes] * len(snrs)
            return [self.select_mcs(snr, size) or MCS_TABLE[0] for snr, size in zip(snrs, sizes)]
        if isinstance(mcs, (list, tuple)):
            if len(mcs) != len(snrs):
                raise ConfigError(f"got {len(mcs)} MCS values for {len(snrs)} packets")
            return [get_mcs(m) for m in mcs]
        return [get_mcs(mcs)] * len(snrs)

    def mcs_for_budget(self, snr_db: float, channel_uses: int) -> MCS:
        """For a payload that will fill ``channel_uses`` (one transmission): the highest-rate MCS whose
        budget-filling payload meets ``target_bler`` at ``snr_db`` (less the outer loop's offset);
        the most robust MCS when none does."""
        la, best, snr = self.link_adaptation, MCS_TABLE[0], self._adapted_snr(snr_db)
        for mcs in MCS_TABLE:
            nbytes = self.max_payload_bytes(channel_uses, mcs)
            if nbytes and mcs.spectral_efficiency > best.spectral_efficiency \
                    and la.packet_bler(mcs, self.code_block_bits(nbytes), snr) <= self.target_bler:
                best = mcs
        return best

    @torch.no_grad()
    def transmit(self, payload: bytes | Sequence[bytes], snr_db: float | Sequence[float],
                 mcs: int | MCS | str | Sequence[int] = "auto", feedback: bool | None = None) -> LinkResult:
        """Send payload bytes through the link.

        :param payload: ``bytes`` (one packet) or a list of ``bytes`` (one packet each, e.g. per image).
        :param snr_db: Es/N0 in dB, one float or one per packet.
        :param mcs: an MCS index (3..28), an :class:`~intelliflow.channels.mcs.MCS`, one per packet,
            or ``"auto"`` (highest rate with tabulated BLER <= ``target_bler`` at each packet's SNR;
            the most robust MCS when none qualifies).
        :param feedback: whether the first transmissions' ACK/NACK teach the outer loop (default: when
            ``mcs="auto"``; ``True`` for an MCS the caller chose with :meth:`mcs_for_budget`).
        :output result: :class:`LinkResult`; ``received, channel_uses = result``.
        """
        single = isinstance(payload, (bytes, bytearray, memoryview))
        packets = [bytes(payload)] if single else list(payload)
        for i, p in enumerate(packets):
            if not isinstance(p, (bytes, bytearray, memoryview)):
                raise ConfigError(f"payload {i} must be bytes, got {type(p).__name__}")
        packets = [bytes(p) for p in packets]
        if isinstance(snr_db, torch.Tensor):
            snr_db = snr_db.detach().cpu().reshape(-1).tolist()
        snrs = [float(s) for s in snr_db] if isinstance(snr_db, (list, tuple, np.ndarray)) else [float(snr_db)]
        if len(snrs) == 1:
            snrs = snrs * len(packets)
        if len(snrs) != len(packets):
            raise ConfigError(f"got {len(snrs)} SNR values for {len(packets)} packets")
        if not all(math.isfinite(s) for s in snrs):
            raise ConfigError(f"snr_db must be finite, got {snr_db!r}")
        schemes = self.resolve_mcs(mcs, snrs, [len(p) for p in packets])
        learn = self.olla is not None and (isinstance(mcs, str) if feedback is None else bool(feedback))

        blocks: list[_Block] = []
        for i, data in enumerate(packets):
            offset = 0
            for j, size in enumerate(self.block_sizes(len(data))):
                chunk = data[offset:offset + size]
                blocks.append(_Block(i, j, chunk + bytes(self.padded_size(size) - size), schemes[i], size))
                offset += size

        uses = [0] * len(packets)
        rounds = [0] * len(packets)
        block_errors = transmissions = first_errors = 0
        for attempt in range(self.max_transmissions):
            pending = [b for b in blocks if not b.ok]
            if not pending:
                break
            rv = RV_SEQUENCE[attempt % len(RV_SEQUENCE)] if self.harq == "ir" else 0
            self._send(pending, rv, snrs, uses)
            self._decode(pending, attempt)
            transmissions += len(pending)
            block_errors += sum(not b.ok for b in pending)
            for b in pending:
                rounds[b.packet] = attempt + 1
            if attempt == 0:
                first_errors = sum(not b.ok for b in pending)
                first_failed = [any(not b.ok for b in blocks if b.packet == i) for i in range(len(packets))]
                if learn:   # one outer-loop step per mean SNR for the packets sent together
                    acks: dict[float, list[bool]] = {}
                    for snr, failed, data in zip(snrs, first_failed, packets):
                        if data:
                            acks.setdefault(snr, []).append(not failed)
                    for snr, packet_acks in acks.items():
                        self.olla.update(snr, packet_acks)

        received: list[bytes | None] = []
        for i, data in enumerate(packets):
            mine = [b for b in blocks if b.packet == i]
            received.append(b"".join(b.decoded[:b.length] for b in mine) if all(b.ok for b in mine) else None)
        return LinkResult(received=received[0] if single else received, channel_uses=int(sum(uses)),
                          block_errors=block_errors, blocks=len(blocks),
                          blocks_lost=sum(not b.ok for b in blocks), transmissions=transmissions,
                          mcs=[s.index for s in schemes], channel_uses_per_packet=uses,
                          first_block_errors=first_errors, transmissions_per_packet=rounds,
                          first_failed_per_packet=first_failed if blocks else [False] * len(packets))

    def _send(self, pending: list[_Block], rv: int, snrs: list[float], uses: list[int]) -> None:
        """Encode, map, send one transmission of the pending blocks; store their LLRs."""
        groups: dict[tuple[int, int], list[_Block]] = {}
        for b in pending:
            groups.setdefault((len(b.data), b.mcs.index), []).append(b)
        symbols: dict[int, torch.Tensor] = {}
        for (nbytes, _), members in groups.items():
            mcs = members[0].mcs
            codec = self._codec(nbytes, mcs)
            raw = np.frombuffer(b"".join(b.data for b in members), dtype=np.uint8)
            bits = torch.from_numpy(np.unpackbits(raw).astype(np.float32)).reshape(len(members), 8 * nbytes)
            bits = bits.to(self.device)
            cw = codec["enc"](codec["crc"](bits), rv=[rv]).squeeze(-2)
            mapper, _ = self._modem(mcs.bits_per_symbol)
            x = mapper(cw)
            for b, row in zip(members, x):
                symbols[id(b)] = row
        # one channel row per packet: its pending blocks back to back
        by_packet: dict[int, list[_Block]] = {}
        for b in pending:
            by_packet.setdefault(b.packet, []).append(b)
        order = sorted(by_packet)
        rows = [torch.cat([symbols[id(b)] for b in by_packet[p]]) for p in order]
        width = max(r.numel() for r in rows)
        x = torch.zeros(len(rows), width, dtype=rows[0].dtype, device=self.device)
        for r, row in enumerate(rows):
            x[r, :row.numel()] = row
        out = self.channel(x, torch.tensor([snrs[p] for p in order], device=self.device))
        y, no = out.unbiased()
        for r, p in enumerate(order):
            uses[p] += self.channel.channel_uses(rows[r].numel())
            # all blocks of a packet share its MCS: demap the row at once, then cut it per block
            n_row = rows[r].numel()
            _, demapper = self._modem(by_packet[p][0].mcs.bits_per_symbol)
            llr = demapper(y[r, :n_row], no[r, :n_row])
            start = 0
            for b in by_packet[p]:
                n_bits = symbols[id(b)].numel() * b.mcs.bits_per_symbol
                b.llrs.append(llr[start:start + n_bits])
                start += n_bits

    def _decode(self, pending: list[_Block], attempt: int) -> None:
        groups: dict[tuple[int, int], list[_Block]] = {}
        for b in pending:
            groups.setdefault((len(b.data), b.mcs.index), []).append(b)
        for (nbytes, _), members in groups.items():
            mcs = members[0].mcs
            codec = self._codec(nbytes, mcs)
            if attempt == 0 or self.harq == "arq":
                llr = torch.stack([b.llrs[-1] for b in members])
                bits = codec["dec"](llr)
            elif self.harq == "chase":
                llr = torch.stack([torch.stack(b.llrs).sum(0) for b in members])
                bits = codec["dec"](llr)
            else:
                rvs = [RV_SEQUENCE[t % len(RV_SEQUENCE)] for t in range(attempt + 1)]
                llr = torch.stack([torch.stack(b.llrs) for b in members])      # [blocks, rvs, n]
                bits = self._harq_decoder(nbytes, mcs)(llr, rv=rvs)
            info, valid = codec["crc_dec"](bits)
            info = info.to(torch.uint8).cpu().numpy()
            valid = valid.reshape(-1).cpu().numpy()
            for b, row, ok in zip(members, info, valid):
                if ok:
                    b.ok = True
                    b.decoded = np.packbits(row).tobytes()
            if self.harq == "arq":
                for b in members:
                    b.llrs.clear()
