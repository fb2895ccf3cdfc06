"""Analog channels: registry, shapes and errors, noise levels, CSI, overhead accounting, gradients."""

import math

import pytest
import torch

from intelliflow.channels import ChannelOutput, build_channel, channel_config, channel_name, channel_parameters
from intelliflow.errors import ConfigError, RegistryError, ShapeError
from intelliflow.seeding import seed_everything

GRAD_CONFIGS = [
    {"name": "awgn"},
    {"name": "rayleigh", "csi": "perfect", "equalizer": "zf"},
    {"name": "rayleigh", "csi": "perfect", "equalizer": "mmse", "block_length": 8},
    {"name": "rayleigh", "csi": "estimated", "equalizer": "zf", "block_length": 16, "num_pilots": 2},
    {"name": "rayleigh", "csi": "estimated", "equalizer": "mmse"},
    {"name": "ofdm-tdl", "csi": "estimated", "equalizer": "mmse"},
    {"name": "ofdm-tdl", "csi": "perfect", "equalizer": "zf", "tdl_model": "C", "max_speed": 30.0},
]


def unit_symbols(batch, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.complex(torch.randn(batch, n, generator=g), torch.randn(batch, n, generator=g))
    return x / x.abs().pow(2).mean().sqrt()


def test_unknown_name_lists_the_allowed_ones():
    with pytest.raises(RegistryError) as info:
        build_channel({"name": "rician"})
    for name in ("none", "awgn", "rayleigh", "ofdm-tdl"):
        assert name in str(info.value)


def test_unknown_parameter_lists_the_allowed_ones():
    with pytest.raises(ConfigError) as info:
        build_channel({"name": "rayleigh", "coherence": 4})
    assert "coherence" in str(info.value) and "block_length" in str(info.value) and "csi" in str(info.value)
    with pytest.raises(ConfigError, match="csi"):
        build_channel({"name": "rayleigh", "csi": "oracle"})
    with pytest.raises(ConfigError, match="tdl_model"):
        build_channel({"name": "ofdm-tdl", "tdl_model": "Z"})
    with pytest.raises(ConfigError, match="block_length"):
        build_channel({"name": "rayleigh", "block_length": 0})
    with pytest.raises(ConfigError, match="name"):
        build_channel({"csi": "perfect"})


def test_config_round_trips_through_the_registry():
    for cfg in GRAD_CONFIGS:
        ch = build_channel(cfg)
        again = build_channel(ch.config())
        assert again.config() == ch.config()
        assert set(ch.config()) - {"name"} == set(channel_parameters(cfg["name"]))


def test_every_form_of_a_channel_normalises_to_one_config():
    rayleigh = {"name": "rayleigh", "block_length": None, "csi": "estimated", "num_pilots": 4, "equalizer": "mmse"}
    forms = ["rayleigh:csi=estimated,block_length=null", {"name": "rayleigh", "csi": "estimated"},
             build_channel({"name": "rayleigh", "csi": "estimated"})]
    assert [channel_name(f) for f in forms] == ["rayleigh"] * 3
    assert channel_config(forms[2]) == rayleigh
    assert channel_config("rayleigh:csi=estimated,block_length=32") == {"name": "rayleigh", "csi": "estimated",
                                                                        "block_length": 32}
    assert channel_config("awgn") == {"name": "awgn"} and channel_name(build_channel("none")) == "none"
    assert build_channel("rayleigh:csi=estimated,num_pilots=8").channel_uses(1000) == 1008
    with pytest.raises(ConfigError, match="key=value"):
        channel_config("rayleigh:csi")
    with pytest.raises(ConfigError, match="no 'name'"):
        channel_name({"csi": "perfect"})
    with pytest.raises(ConfigError, match="a channel must be"):
        channel_name(3)


def test_bad_inputs_raise_shape_errors():
    ch = build_channel("awgn")
    with pytest.raises(ShapeError, match="complex"):
        ch(torch.randn(2, 8), 10.0)
    with pytest.raises(ShapeError, match=r"\[B, n\]"):
        ch(torch.randn(8, dtype=torch.complex64), 10.0)
    with pytest.raises(ShapeError, match="3 values"):
        ch(unit_symbols(2, 8), torch.tensor([1.0, 2.0, 3.0]))
    with pytest.raises(ConfigError, match="finite"):
        ch(unit_symbols(2, 8), float("nan"))


def test_none_is_the_identity():
    x = unit_symbols(3, 10)
    out = build_channel("none")(x, -5.0)
    assert torch.equal(out.y, x) and out.channel_uses == 10 and float(out.no_eff.abs().max()) == 0.0


def test_awgn_noise_power_follows_per_example_snr():
    seed_everything(1, sionna=True)
    x = unit_symbols(3, 40_000)
    snr = torch.tensor([0.0, 10.0, 20.0])
    out = build_channel("awgn")(x, snr)
    measured = (out.y - x).abs().pow(2).mean(dim=1)
    expected = 10 ** (-snr / 10)
    assert torch.allclose(measured, expected, rtol=0.03)
    assert torch.allclose(out.no_eff[:, 0], expected)
    assert out.channel_uses == 40_000


def test_seeding_makes_channels_reproducible():
    x = unit_symbols(2, 300)
    outs = []
    for _ in range(2):
        seed_everything(7, sionna=True)
        ch = build_channel({"name": "ofdm-tdl"})
        outs.append(ch(x, 5.0).y)
    assert torch.equal(outs[0], outs[1])
    seed_everything(8, sionna=True)
    assert not torch.equal(outs[0], build_channel({"name": "ofdm-tdl"})(x, 5.0).y)


def test_rayleigh_block_fading_holds_one_gain_per_block():
    seed_everything(2, sionna=True)
    ch = build_channel({"name": "rayleigh", "block_length": 10, "csi": "perfect"})
    out = ch(unit_symbols(4000, 25), 30.0)
    h = out.csi.reshape(4000, 25)
    assert torch.equal(h[:, 0:1].expand(-1, 10), h[:, :10])           # constant inside a block
    assert torch.equal(h[:, 20:21].expand(-1, 5), h[:, 20:])           # the last, shorter block
    assert not torch.equal(h[:, 0], h[:, 10])                          # a new gain per block
    assert abs(float(h[:, 0].abs().pow(2).mean()) - 1.0) < 0.06        # E|h|^2 = 1
    whole = build_channel({"name": "rayleigh"})(unit_symbols(3, 50), 30.0).csi
    assert torch.equal(whole, whole[:, :1].expand(-1, 50))             # block_length=None: one gain per example


def test_pilot_overhead_is_counted_in_channel_uses():
    ch = build_channel({"name": "rayleigh", "block_length": 64, "csi": "estimated", "num_pilots": 4})
    assert ch.channel_uses(256) == 256 + 4 * 4
    assert ch.channel_uses(257) == 257 + 5 * 4
    assert build_channel({"name": "rayleigh", "csi": "perfect", "block_length": 64}).channel_uses(256) == 256
    assert build_channel({"name": "rayleigh", "csi": "estimated", "num_pilots": 8}).channel_uses(1000) == 1008
    seed_everything(3, sionna=True)
    assert ch(unit_symbols(2, 257), 10.0).channel_uses == 277
    ofdm = build_channel({"name": "ofdm-tdl"})                         # 14 x 72 grid, pilots on 2 symbols, CP 5
    assert ofdm.data_symbols_per_slot == 12 * 72
    assert ofdm.channel_uses(864) == 14 * 77 and ofdm.channel_uses(865) == 2 * 14 * 77
    assert ofdm(unit_symbols(2, 1000), 10.0).channel_uses == 2 * 14 * 77


@pytest.mark.parametrize("cfg", [
    {"name": "rayleigh", "csi": "estimated", "block_length": 32, "num_pilots": 4, "equalizer": "mmse"},
    {"name": "rayleigh", "csi": "perfect", "block_length": 1, "equalizer": "mmse"},
    {"name": "ofdm-tdl", "csi": "estimated"},
    {"name": "ofdm-tdl", "csi": "perfect", "tdl_model": "E", "delay_spread": 300e-9},
])
def test_post_equalisation_noise_level_matches_the_error(cfg):
    # no_eff is the receiver's model of its error: exact with perfect CSI, and with estimated CSI
    # it includes the LS error variance (Sionna's model for OFDM, which ignores interpolation error
    # and so under-estimates the error at low SNR: about 20 % at 5 dB)
    seed_everything(4, sionna=True)
    x = unit_symbols(64, 2000)
    for snr in (5.0, 15.0):
        out = build_channel(cfg)(x, snr)
        assert out.biased
        mse = float((out.y - x).abs().pow(2).mean())
        assert mse == pytest.approx(float(out.no_eff.mean()), rel=0.2)
        assert out.y.shape == x.shape and out.csi.shape == x.shape


def test_estimated_csi_tracks_the_channel_and_costs_snr():
    seed_everything(5, sionna=True)
    x = unit_symbols(2000, 64)
    cfg = {"name": "rayleigh", "block_length": 64, "equalizer": "zf"}
    est = build_channel({**cfg, "csi": "estimated", "num_pilots": 16})(x, 10.0)
    few = build_channel({**cfg, "csi": "estimated", "num_pilots": 1})(x, 10.0)
    perfect = build_channel({**cfg, "csi": "perfect"})(x, 10.0)
    med = lambda out: float((out.unbiased()[0] - x).abs().pow(2).median())  # noqa: E731
    # LS from P pilots adds an estimation error of variance no / P: small with 16, doubling the noise with 1
    assert med(perfect) < med(est) < 1.3 * med(perfect)
    assert med(few) > 1.5 * med(perfect)


def test_unbiased_view_of_mmse_output_matches_zero_forcing():
    x = unit_symbols(4, 500)
    seed_everything(6, sionna=True)
    mmse = build_channel({"name": "rayleigh", "block_length": 50, "equalizer": "mmse"})(x, 5.0)
    seed_everything(6, sionna=True)
    zf = build_channel({"name": "rayleigh", "block_length": 50, "equalizer": "zf"})(x, 5.0)
    xu, nu = mmse.unbiased()
    assert torch.allclose(xu, zf.y, rtol=1e-3, atol=1e-4)
    assert torch.allclose(nu, zf.no_eff, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("cfg", GRAD_CONFIGS, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_gradients_reach_the_input_symbols(cfg):
    seed_everything(9, sionna=True)
    x = unit_symbols(3, 200).requires_grad_(True)
    out = build_channel(cfg)(x, torch.tensor([0.0, 10.0, 20.0]))
    assert isinstance(out, ChannelOutput)
    loss = (out.y - x.detach()).abs().pow(2).mean()
    loss.backward()
    assert x.grad is not None and torch.isfinite(torch.view_as_real(x.grad)).all()
    assert float(x.grad.abs().min()) > 0.0                      # every symbol receives a gradient


def test_awgn_gradient_is_the_identity():
    x = unit_symbols(2, 16).requires_grad_(True)
    out = build_channel("awgn")(x, 10.0)
    out.y.real.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))


def test_double_precision_input_stays_double():
    x = unit_symbols(2, 100).to(torch.complex128)
    for cfg in ({"name": "awgn"}, {"name": "rayleigh", "csi": "estimated"}, {"name": "ofdm-tdl"}):
        out = build_channel(cfg)(x, 10.0)
        assert out.y.dtype == torch.complex128 and out.no_eff.dtype == torch.float64


def test_snr_is_es_over_n0_for_rayleigh_on_average():
    seed_everything(10, sionna=True)
    x = unit_symbols(1, 200_000)
    out = build_channel({"name": "rayleigh", "block_length": 1, "equalizer": "zf"})(x, 10.0)
    received_power = (out.y * out.csi).abs().pow(2).mean()     # |h x|^2 + noise: Es + N0
    noise = (out.no_eff * out.csi.abs().pow(2)).mean()          # no
    assert float(noise) == pytest.approx(0.1, rel=1e-4)
    assert float(received_power) == pytest.approx(1.1, rel=0.03)
    assert math.isclose(out.channel_uses, 200_000)
