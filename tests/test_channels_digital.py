"""The digital link: round trips, losses, retransmissions, channel-use accounting, MCS table and selection."""

import math

import numpy as np
import pytest

from intelliflow.channels import MCS_TABLE, DigitalLink, build_channel, get_mcs, select_mcs, shannon_channel_uses
from intelliflow.errors import ConfigError
from intelliflow.seeding import seed_everything


def payload(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


# TS 38.214 Table 5.1.3.2-1 transport block sizes (bits) near the partial blocks used below
TBS_BITS = (24, 32, 40, 48, 56, 64, 72, 80, 88, 96, 104, 112, 120, 128, 136, 144, 152, 160, 168, 176, 184, 192,
            208, 224, 240, 256, 272, 288, 304, 320, 336, 352, 368, 384, 408, 432, 456, 480, 504, 528, 552, 576,
            608, 640, 672, 704, 736, 768, 808, 848, 888, 928, 984, 1032, 1064, 1128, 1160, 1192, 1224, 1256, 1288,
            1320, 1352, 1416, 1480, 1544, 1608, 1672, 1736, 1800, 1864, 1928, 2024, 2088)


def expected_uses(nbytes, mcs, block_bytes=256):
    m = get_mcs(mcs)
    sizes = [block_bytes] * (nbytes // block_bytes) + ([nbytes % block_bytes] if nbytes % block_bytes or not nbytes else [])
    sizes = [b if b == block_bytes else min(block_bytes, next(t // 8 for t in TBS_BITS if t >= 8 * b)) for b in sizes]
    return sum(math.ceil((8 * b + 24) / (m.code_rate * m.bits_per_symbol) - 1e-9) for b in sizes)


def test_mcs_table_follows_ts38214_as_sionna_decodes_it():
    from sionna.phy.nr.utils import decode_mcs_index

    assert len(MCS_TABLE) >= 10 and [m.index for m in MCS_TABLE] == list(range(3, 29))
    assert {m.modulation for m in MCS_TABLE} == {"qpsk", "16qam", "64qam"}
    for m in MCS_TABLE:
        qm, rate = decode_mcs_index(m.index, table_index=1, is_pusch=False)
        assert int(qm) == m.bits_per_symbol
        assert float(rate) == pytest.approx(m.code_rate, abs=1e-6)
    with pytest.raises(ConfigError, match="allowed"):
        get_mcs(2)
    with pytest.raises(ConfigError, match="allowed"):
        get_mcs(29)


@pytest.mark.parametrize("mcs", [4, 14, 27])
def test_round_trip_at_high_snr_and_channel_uses(mcs):
    seed_everything(20, sionna=True)
    link = DigitalLink("awgn")
    data = payload(600, mcs)                                 # blocks of 256, 256 and 88 bytes
    result = link.transmit(data, 30.0, mcs)
    received, uses = result                                  # the DESIGN contract unpacks to two values
    assert received == data
    assert uses == expected_uses(600, mcs) == link.channel_uses(600, mcs)
    assert (result.blocks, result.block_errors, result.blocks_lost, result.transmissions) == (3, 0, 0, 3)
    assert result.mcs == [mcs]


def test_loss_at_low_snr_is_reported_not_hidden():
    seed_everything(21, sionna=True)
    result = DigitalLink("awgn").transmit(payload(512), -5.0, 20)
    assert result.received is None
    assert result.block_errors == result.blocks == result.blocks_lost == 2
    assert result.channel_uses == expected_uses(512, 20)


def test_packets_with_their_own_snr():
    seed_everything(22, sionna=True)
    packets = [payload(300, 1), payload(40, 2), b""]
    result = DigitalLink("awgn").transmit(packets, [-3.0, 25.0, 25.0], 16)
    assert result.received == [None, packets[1], b""]
    # an empty payload (a stream image that codes to nothing) is still a block: its CRC says it came
    assert result.channel_uses_per_packet == [expected_uses(300, 16), expected_uses(40, 16), expected_uses(0, 16)] \
        and expected_uses(0, 16) > 0
    assert result.channel_uses == sum(result.channel_uses_per_packet)


def test_harq_incremental_redundancy_recovers_and_counts_every_use():
    seed_everything(23, sionna=True)
    data = payload(1024, 3)
    single = DigitalLink("awgn").transmit(data, -1.5, 5)
    assert single.received is None                          # one transmission is 0.7 dB short
    harq = DigitalLink("awgn", max_transmissions=4, harq="ir").transmit(data, -1.5, 5)
    assert harq.received == data
    assert harq.transmissions > harq.blocks == 4
    per_block = expected_uses(256, 5)
    assert harq.channel_uses == harq.transmissions * per_block
    assert harq.block_errors == harq.transmissions - harq.blocks


def test_chase_and_arq_count_retransmissions():
    seed_everything(24, sionna=True)
    data = payload(256, 4)
    arq = DigitalLink("awgn", max_transmissions=3, harq="arq").transmit(data, -8.0, 10)
    assert arq.received is None and arq.transmissions == 3 and arq.block_errors == 3
    assert arq.channel_uses == 3 * expected_uses(256, 10)
    chase = DigitalLink("awgn", max_transmissions=4, harq="chase").transmit(data, -1.0, 5)
    assert chase.received == data and chase.channel_uses == chase.transmissions * expected_uses(256, 5)


@pytest.mark.parametrize("cfg", [{"name": "rayleigh", "csi": "estimated", "block_length": 200, "num_pilots": 8},
                                 {"name": "ofdm-tdl"}])
def test_link_over_fading_channels_counts_their_overhead(cfg):
    seed_everything(25, sionna=True)
    channel = build_channel(cfg)
    data = payload(700, 5)
    result = DigitalLink(channel).transmit(data, 30.0, 11)
    assert result.received == data
    assert result.channel_uses == channel.channel_uses(expected_uses(700, 11)) > expected_uses(700, 11)


def test_partial_blocks_are_padded_to_a_transport_block_size_and_stripped():
    link = DigitalLink("awgn")
    assert [link.padded_size(b) for b in (1, 3, 25, 188, 255, 256)] == [3, 3, 26, 193, 256, 256]
    data = payload(25, 9)
    result = link.transmit(data, 30.0, 9)
    assert result.received == data                          # the padding does not come back
    assert result.channel_uses == expected_uses(25, 9) > expected_uses(25, 9, block_bytes=25)
    plain = DigitalLink("awgn", tbs_padding=False)
    assert plain.channel_uses(25, 9) == expected_uses(25, 9, block_bytes=25)


def test_auto_mcs_delivers_near_capacity_but_never_beyond():
    seed_everything(26, sionna=True)
    link = DigitalLink("awgn")
    data = payload(1024, 6)
    for snr in (2.0, 9.0, 17.0):
        result = link.transmit(data, snr, "auto")
        assert result.mcs[0] == select_mcs(snr, block_bits=link.code_block_bits(len(data))).index
        floor = shannon_channel_uses(8 * len(data), snr, "awgn")
        assert result.channel_uses > floor
        if result.received == data:
            assert result.channel_uses < 4 * floor


def test_bad_inputs():
    link = DigitalLink("awgn")
    with pytest.raises(ConfigError, match="bytes"):
        link.transmit(["text"], 10.0, 5)
    with pytest.raises(ConfigError, match="2 SNR values for 3 packets"):
        link.transmit([b"a", b"b", b"c"], [1.0, 2.0], 5)
    with pytest.raises(ConfigError, match="auto"):
        link.transmit(b"abc", 10.0, "fast")
    with pytest.raises(ConfigError, match="block_bytes"):
        DigitalLink("awgn", block_bytes=1000)
    with pytest.raises(ConfigError, match="cn_update"):
        DigitalLink("awgn", cn_update="sum-product")
    with pytest.raises(ConfigError, match="harq"):
        DigitalLink("awgn", harq="soft")


def test_block_constants_are_the_links():
    from intelliflow.channels import CRC_BITS, DEFAULT_BLOCK_BITS, DEFAULT_BLOCK_BYTES
    from intelliflow.system.latency import WirelessLink

    link = DigitalLink("awgn")
    assert (CRC_BITS, DEFAULT_BLOCK_BYTES, DEFAULT_BLOCK_BITS) == (24, 256, 2048)
    assert link.block_bytes == DEFAULT_BLOCK_BYTES
    mcs = get_mcs(13)
    assert link.codeword_bits(DEFAULT_BLOCK_BYTES, mcs) == \
        math.ceil((DEFAULT_BLOCK_BITS + CRC_BITS) / (mcs.code_rate * mcs.bits_per_symbol) - 1e-9) * mcs.bits_per_symbol
    # the latency model prices a payload with the link's channel uses (a CRC per code block, padding)
    fixed, adaptive = WirelessLink(bit_rate=1e6), WirelessLink(snr_db=20.0, bandwidth_hz=1e6)
    assert fixed.digital_ms(3 * DEFAULT_BLOCK_BITS) == pytest.approx(1e3 * 3 * DEFAULT_BLOCK_BITS / 1e6)
    rate, bler, index = adaptive.digital_rate(3 * DEFAULT_BLOCK_BITS)
    assert index == link.select_mcs(20.0, 3 * DEFAULT_BLOCK_BYTES).index
    assert rate == pytest.approx(1e6 * 3 * DEFAULT_BLOCK_BITS / link.channel_uses(3 * DEFAULT_BLOCK_BYTES, index))
    expected = sum(bler ** k for k in range(adaptive.max_transmissions))   # HARQ rounds
    assert adaptive.digital_ms(3 * DEFAULT_BLOCK_BITS) == pytest.approx(
        1e3 * link.channel_uses(3 * DEFAULT_BLOCK_BYTES, index) / 1e6 * expected + adaptive.harq_rtt_ms * (expected - 1))
