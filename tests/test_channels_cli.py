"""``intelliflow channels ber`` and ``intelliflow channels mcs`` through a parser built here."""

import argparse
import json
import math

import pytest
from scipy.special import erfc

from intelliflow.channels import capacity, select_mcs
from intelliflow.errors import ConfigError, RegistryError
from intelliflow.recipes.commands.channels import register


def run(capsys, *argv):
    parser = argparse.ArgumentParser(prog="intelliflow")
    sub = parser.add_subparsers(dest="command")
    register(sub)
    args = parser.parse_args(["channels", *argv])
    code = args.func(args)
    return code, capsys.readouterr().out


def q(x):
    return 0.5 * erfc(x / math.sqrt(2.0))


def test_ber_json_matches_theory(capsys):
    code, out = run(capsys, "ber", "--channel", "awgn", "--modulation", "qpsk", "--snr", "0:10:2", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["snr_db"] for r in rows] == [0, 2, 4, 6, 8, 10]
    for r in rows:
        assert set(r) == {"snr_db", "ber", "ci95_low", "ci95_high", "ber_theory", "bits_simulated", "independent_rows"}
        assert r["ci95_low"] <= r["ber"] <= r["ci95_high"]
        theory = q(math.sqrt(10 ** (r["snr_db"] / 10)))
        assert r["ber_theory"] == pytest.approx(theory, rel=1e-9)
        assert r["bits_simulated"] >= 1_000_000
        if theory > 1e-3:
            assert r["ber"] == pytest.approx(theory, rel=0.1)


def test_ber_table_and_channel_parameters(capsys):
    code, out = run(capsys, "ber", "--channel", "rayleigh", "--param", "csi=estimated", "--param", "block_length=16",
                    "--modulation", "bpsk", "--snr", "0,10", "--bits", "20000")
    assert code == 0
    lines = out.strip().splitlines()
    assert "snr_db" in lines[1] and "ber_theory" in lines[1]
    assert len(lines) == 4 and "n/a" in lines[2]                # no closed form with estimated CSI
    with pytest.raises(ConfigError, match="block_length"):
        run(capsys, "ber", "--channel", "rayleigh", "--param", "coherence=3", "--snr", "0")


def test_mcs_json(capsys):
    code, out = run(capsys, "mcs", "--channel", "awgn", "--snr", "0:20:2", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 11
    for r in rows:
        assert {"snr_db", "mcs", "modulation", "code_rate", "spectral_efficiency", "shannon_limit"} <= set(r)
        assert r["shannon_limit"] == pytest.approx(capacity(r["snr_db"]))
        assert 0 < r["spectral_efficiency"] < r["shannon_limit"]
        assert r["mcs"] == select_mcs(r["snr_db"]).index
    ses = [r["spectral_efficiency"] for r in rows]
    assert ses == sorted(ses) and rows[-1]["modulation"] == "64qam" and rows[0]["modulation"] == "qpsk"


def test_mcs_text_and_errors(capsys):
    code, out = run(capsys, "mcs", "--channel", "rayleigh", "--snr=-20,20")
    assert code == 0 and "shannon_limit" in out and "n/a" in out   # nothing qualifies at -20 dB
    with pytest.raises(ConfigError, match="awgn"):
        run(capsys, "mcs", "--channel", "ofdm-tdl")
    with pytest.raises(ConfigError, match="0:20:5"):
        run(capsys, "mcs", "--snr", "zero")


def test_unknown_channel_names_fail_in_argparse(capsys):
    with pytest.raises(SystemExit):
        run(capsys, "ber", "--channel", "rician")
    with pytest.raises(RegistryError):
        from intelliflow.channels import build_channel

        build_channel("rician")
