"""Reference figures: uncoded BER through the channels against closed forms computed here."""

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import erfc

from intelliflow.channels import ber_theory, build_channel, simulate_ber
from intelliflow.errors import ConfigError
from intelliflow.seeding import seed_everything


def q(x):
    return 0.5 * erfc(x / math.sqrt(2.0))


def independent_theory(modulation, snr_db):
    """Textbook Gray-coded BER at Es/N0 (written out separately from the library's general formula)."""
    s = 10 ** (snr_db / 10)
    if modulation == "bpsk":
        return q(math.sqrt(2 * s))
    if modulation == "qpsk":
        return q(math.sqrt(s))
    if modulation == "16qam":
        a = math.sqrt(s / 5)
        return (3 * q(a) + 2 * q(3 * a) - q(5 * a)) / 4
    raise ValueError(modulation)


@pytest.mark.parametrize("modulation", ["bpsk", "qpsk", "16qam"])
def test_library_theory_equals_the_textbook_forms(modulation):
    for snr in np.arange(-4.0, 16.0, 1.0):
        assert ber_theory(modulation, snr) == pytest.approx(independent_theory(modulation, snr), rel=1e-9)


def test_rayleigh_theory():
    for snr in (0.0, 7.0, 20.0):
        s = 10 ** (snr / 10)
        assert ber_theory("bpsk", snr, "rayleigh") == pytest.approx(0.5 * (1 - math.sqrt(s / (1 + s))), rel=1e-12)
        # QPSK is two BPSK rails at Es/(2 N0): closed form versus the library's numerical average
        assert ber_theory("qpsk", snr, "rayleigh") == pytest.approx(0.5 * (1 - math.sqrt(s / (2 + s))), rel=1e-6)
    # the numerical average over |h|^2 ~ Exp(1) reproduces the BPSK closed form
    s = 10 ** 0.5
    value, _ = integrate.quad(lambda g: q(math.sqrt(2 * g * s)) * math.exp(-g), 0, np.inf)
    assert value == pytest.approx(ber_theory("bpsk", 5.0, "rayleigh"), rel=1e-6)


def test_theory_refuses_channels_without_a_closed_form():
    with pytest.raises(ConfigError, match="rayleigh"):
        ber_theory("qpsk", 5.0, {"name": "rayleigh", "csi": "estimated"})
    with pytest.raises(ConfigError, match="ofdm-tdl"):
        ber_theory("qpsk", 5.0, "ofdm-tdl")
    with pytest.raises(ConfigError, match="allowed"):
        ber_theory("8psk", 5.0)


@pytest.mark.parametrize("modulation", ["bpsk", "qpsk", "16qam"])
def test_uncoded_ber_over_awgn_matches_closed_form(modulation):
    seed_everything(11, sionna=True)
    channel = build_channel("awgn")
    checked = 0
    for snr in np.arange(0.0, 14.0, 2.0):
        theory = independent_theory(modulation, snr)
        if theory <= 1e-3:
            continue
        ber, bits, low, high, _ = simulate_ber(channel, modulation, float(snr), 1_000_000)
        assert bits >= 1_000_000
        assert ber == pytest.approx(theory, rel=0.10), (modulation, snr)
        assert low < ber < high and high - low < 0.1 * theory
        checked += 1
    assert checked >= 3


def test_uncoded_bpsk_over_rayleigh_with_perfect_csi_matches_closed_form():
    seed_everything(12, sionna=True)
    channel = build_channel({"name": "rayleigh", "csi": "perfect", "block_length": 1})
    for snr in (0.0, 5.0, 10.0, 15.0, 20.0):
        s = 10 ** (snr / 10)
        theory = 0.5 * (1 - math.sqrt(s / (1 + s)))
        ber = simulate_ber(channel, "bpsk", snr, 1_000_000).ber
        assert ber == pytest.approx(theory, rel=0.10), snr


def test_default_rayleigh_sees_a_fade_per_symbol_and_its_interval_holds_the_closed_form():
    """A Rayleigh channel that fades once per example used to be simulated in rows of 1024 symbols
    (a thousand fades per million bits: 13 % and 23 % under the closed form at 16 and 20 dB); one
    symbol per row gives a million fades, and the 95 % interval comes from the rows' spread."""
    seed_everything(15, sionna=True)
    channel = build_channel({"name": "rayleigh", "csi": "perfect"})
    for snr in (16.0, 20.0):
        s = 10 ** (snr / 10)
        theory = 0.5 * (1 - math.sqrt(s / (1 + s)))
        est = simulate_ber(channel, "bpsk", snr, 1_000_000)
        assert est.rows == 1_000_000 and est.ber == pytest.approx(theory, rel=0.10), snr
        assert est.low <= theory <= est.high
    blocks = simulate_ber(channel, "bpsk", 20.0, 1_000_000, symbols_per_row=1024)   # the old way: few fades
    assert blocks.rows == 977 and blocks.high - blocks.low > 3 * (est.high - est.low)


def test_no_error_gives_the_rule_of_three():
    est = simulate_ber(build_channel("none"), "qpsk", 10.0, 20_000)
    assert est.ber == 0.0 and est.low == 0.0 and est.high == pytest.approx(3 / est.bits)


def test_estimated_csi_costs_ber_and_more_pilots_cost_less():
    seed_everything(13, sionna=True)
    cfg = {"name": "rayleigh", "block_length": 32, "csi": "estimated"}
    perfect = simulate_ber(build_channel({**cfg, "csi": "perfect"}), "qpsk", 10.0, 400_000).ber
    one = simulate_ber(build_channel({**cfg, "num_pilots": 1}), "qpsk", 10.0, 400_000).ber
    eight = simulate_ber(build_channel({**cfg, "num_pilots": 8}), "qpsk", 10.0, 400_000).ber
    assert perfect < eight < one
    assert perfect == pytest.approx(ber_theory("qpsk", 10.0, "rayleigh"), rel=0.1)


def test_ofdm_tdl_at_high_snr_is_nearly_error_free():
    seed_everything(14, sionna=True)
    ber = simulate_ber(build_channel({"name": "ofdm-tdl"}), "qpsk", 30.0, 200_000).ber
    low = simulate_ber(build_channel({"name": "ofdm-tdl"}), "qpsk", 5.0, 200_000).ber
    assert ber < 3e-3 < 0.05 < low
