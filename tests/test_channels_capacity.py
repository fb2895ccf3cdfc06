"""Capacity references, and the simulated link against them (never better, within 3 dB on AWGN)."""

import math

import numpy as np
import pytest
from scipy.special import exp1

from intelliflow.channels import (MCS_TABLE, LinkAdaptation, capacity, code_block_bits, shannon_channel_uses,
                                  shannon_limit_db)
from intelliflow.errors import ConfigError


def test_awgn_capacity_and_channel_uses():
    assert capacity(0.0) == pytest.approx(1.0)
    assert capacity(10.0) == pytest.approx(math.log2(11.0))
    assert shannon_channel_uses(1000, 0.0) == pytest.approx(1000.0)
    assert shannon_channel_uses(8 * 500, 20.0) == pytest.approx(4000 / math.log2(101.0))
    assert shannon_channel_uses(0, -3.0) == 0.0
    uses = shannon_channel_uses(np.array([100.0, 200.0]), np.array([0.0, 0.0]))
    assert np.allclose(uses, [100.0, 200.0])


def test_rayleigh_ergodic_capacity_matches_its_closed_form_and_jensen():
    for snr_db in (-10.0, 0.0, 10.0, 25.0):
        s = 10 ** (snr_db / 10)
        closed = math.exp(1 / s) * exp1(1 / s) / math.log(2)
        assert capacity(snr_db, "rayleigh") == pytest.approx(closed, rel=1e-7)
        assert capacity(snr_db, "rayleigh") < capacity(snr_db, "awgn")
        assert shannon_channel_uses(1000, snr_db, "rayleigh") > shannon_channel_uses(1000, snr_db, "awgn")
    # about 2.5 dB of fading loss at 20 dB: log2(1 + 10^(17.5/10)) ~ C_rayleigh(20 dB)
    assert capacity(20.0, "rayleigh") == pytest.approx(capacity(17.5, "awgn"), rel=0.01)


def test_shannon_limit_inverts_capacity():
    for se in (0.5, 1.0, 3.0, 5.5):
        for channel in ("awgn", "rayleigh"):
            assert capacity(shannon_limit_db(se, channel), channel) == pytest.approx(se, rel=1e-6)
    assert shannon_limit_db(1.0) == pytest.approx(0.0, abs=1e-12)


def test_unknown_channel_is_refused():
    with pytest.raises(ConfigError, match="allowed"):
        capacity(3.0, "rician")
    assert shannon_channel_uses(1000, 3.0, {"name": "none"}) == 0.0


@pytest.mark.parametrize("channel", ["awgn", "rayleigh"])
def test_simulated_link_never_beats_capacity(channel):
    la = LinkAdaptation(channel)
    for mcs in MCS_TABLE:
        limit = shannon_limit_db(mcs.spectral_efficiency, channel)
        for bits in (code_block_bits(24), code_block_bits(256)):
            # below the Shannon limit no MCS delivers a block at a BLER under 10 % (it is ~1 there)
            assert la.block_bler(mcs, bits, limit) > 0.5
            assert la.threshold_db(mcs, [bits]) > limit


def test_awgn_link_is_within_3_db_of_capacity_at_10_percent_bler_and_short_blocks_need_more():
    la = LinkAdaptation("awgn")
    gaps = {m.index: la.threshold_db(m, [code_block_bits(256)]) - shannon_limit_db(m.spectral_efficiency, "awgn")
            for m in MCS_TABLE}
    # 256-byte blocks (k = 2072): 1-2.6 dB up to 64-QAM at R = 0.89; the top entry (R = 948/1024) sits near
    # 3 dB, most of it the 64-QAM constellation itself (its capacity saturates at 6 bits)
    assert all(0.0 < g < 3.0 for i, g in gaps.items() if i < 28), gaps
    assert 0.0 < gaps[28] < 3.2, gaps
    # a 24-byte block (k = 216) has a shallower waterfall: the same MCS needs more SNR
    short = [la.threshold_db(m, [code_block_bits(24)]) - la.threshold_db(m, [code_block_bits(256)])
             for m in MCS_TABLE]
    assert np.mean(short) > 0.5 and min(short) > -0.1, short


def test_capacity_stays_the_function_whichever_name_of_its_module_is_imported_first():
    import subprocess
    import sys

    code = ("from intelliflow.channels import shannon_limit_db\n"
            "from intelliflow.channels import capacity\n"
            "print(callable(capacity), round(capacity(0.0), 6))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-1000:]
    assert out.stdout.split() == ["True", "1.0"]
