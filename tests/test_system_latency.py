"""Latency model: stage breakdowns, crossovers, profiles, and the latency command on results."""

import json
from dataclasses import replace

import pytest

from intelliflow.errors import ConfigError
from intelliflow.system.latency import (PRESETS, Backhaul, Scenario, WirelessLink, breakdown, crossover_bandwidth,
                                      crossover_device_speed, read_profile)
from intelliflow.recipes.cli import main
from test_evaluation_curves import row, write


def scenario(**changes):
    base = Scenario(head_flops=2e9, tail_flops=2e10, codec_flops=1e8, payload_bits=200, image_bits=8000,
                    text_bits=400, backhaul_bits=200, edge_extra_flops=1e10)
    return replace(base, **changes)


def test_breakdown_adds_up_and_follows_the_units():
    s = scenario()
    split = breakdown(s, "device-edge")
    assert split["total"] == pytest.approx(sum(v for k, v in split.items() if k != "total"))
    assert split["device"] == pytest.approx(1e3 * 2e9 / PRESETS["phone"].flops_per_s)
    rate, bler, mcs = s.wireless.digital_rate(200)
    assert mcs is not None and 0 <= bler <= 0.1
    expected = sum(bler ** k for k in range(4))                   # HARQ: up to 4 transmissions, 4 ms apart
    assert split["uplink"] == pytest.approx(1e3 * 200 / rate * expected + 4.0 * (expected - 1))
    assert s.wireless.transmissions(200) == pytest.approx((expected, bler ** 4))
    # a 25-byte payload pays its CRC and a short code block's worse waterfall: less rate than a full block
    assert rate < s.wireless.digital_rate(2048)[0]
    assert breakdown(s, "cloud-only")["cloud"] == pytest.approx(1e3 * 2.2e10 / PRESETS["cloud-gpu"].flops_per_s)
    assert breakdown(s, "cloud-only")["backhaul"] == pytest.approx(20.0 + 1e3 * 8000 / 1e9)  # there and back
    outage = replace(s, wireless=WirelessLink(snr_db=-20.0))
    assert breakdown(outage, "device-edge")["uplink"] == float("inf")
    with pytest.raises(ConfigError, match="paradigm"):
        breakdown(s, "teleport")


def test_crossovers_exist_where_the_physics_says():
    assert crossover_bandwidth(scenario()) is None   # a 20 ms backhaul round trip keeps the cloud slower at any bandwidth
    s = scenario(backhaul=Backhaul(rtt_ms=2.0))
    cross = crossover_bandwidth(s)
    assert cross is not None
    slow = replace(s, wireless=replace(s.wireless, bandwidth_hz=cross / 10))
    fast = replace(s, wireless=replace(s.wireless, bandwidth_hz=cross * 10))
    assert breakdown(slow, "device-edge")["total"] < breakdown(slow, "cloud-only")["total"]
    assert breakdown(fast, "device-edge")["total"] > breakdown(fast, "cloud-only")["total"]
    speed = crossover_device_speed(s)
    assert speed is not None and speed > 0


def test_fixed_rate_link_and_measured_stage_times():
    link = WirelessLink(bit_rate=1e6, rtt_ms=20.0, overhead_bits=800)
    assert link.digital_rate() == (1e6, 0.0, None)
    assert link.digital_ms(1200) == pytest.approx(20.0 + 1e3 * 2000 / 1e6)
    s = scenario(wireless=link, measured_ms={"device-edge": {"device": 5.0, "encode": 2.0, "decode": 1.5, "edge": 40.0},
                                             "device-only": {"device": 50.0}, "cloud-only": {"encode": 0.7}})
    split = breakdown(s, "device-edge")
    assert (split["device"], split["encode"], split["decode"], split["edge"]) == (5.0, 2.0, 1.5, 40.0)
    assert split["uplink"] == pytest.approx(20.0 + 1e3 * 1000 / 1e6)   # the link still comes from the model
    assert breakdown(s, "device-only")["device"] == 50.0
    assert breakdown(s, "cloud-only")["encode"] == 0.7
    with pytest.raises(ConfigError, match="uplink"):
        breakdown(replace(s, measured_ms={"cloud-only": {"uplink": 1.0}}), "cloud-only")
    cross = crossover_bandwidth(replace(s, backhaul=Backhaul(rtt_ms=0.1)))  # varies the bit rate on a fixed link
    assert cross is not None and 1e3 < cross < 1e8


def test_profiles_from_yaml(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("device: {preset: phone, flops_per_s: 1.0e12}\nedge: jetson\nwireless: {bandwidth_hz: 2.0e6, snr_db: 5}\n")
    profile = read_profile(path)
    assert profile["device"].flops_per_s == 1e12 and profile["edge"] == PRESETS["jetson"]
    assert profile["wireless"].bandwidth_hz == 2e6
    path.write_text("device: {preset: phone, speed: 3}\n")
    with pytest.raises(ConfigError, match="speed"):
        read_profile(path)


def test_latency_command_on_results(tmp_path, capsys):
    write(tmp_path / "r", [row("identity", "identity", 393216, 2.0), row("ours", "learned", 150, 1.5),
                           row("ours", "learned", 200, 2.0), row("jpeg", "bytes", 6000, 2.0),
                           row("text", "bytes", 300, 2.0)])
    (tmp_path / "p.yaml").write_text("backhaul: {bits_per_s: 1.0e+9, rtt_ms: 0.2}\n")
    code = main(["latency", "--results", str(tmp_path / "r"), "--bandwidth", "1e5", "--codec-flops", "0",
                 "--profile", str(tmp_path / "p.yaml"),
                 "--out", str(tmp_path / "lat.png"), "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    p = report["paradigms"]
    assert p["device-edge"]["payload_bits"] == 200   # the fewest-bit measured point above the floor
    assert p["device-edge"]["meets_floor"] and p["device-edge"]["CIDEr-D"] == 2.0
    assert p["cloud-only"]["payload_bits"] == 6000
    assert p["device-edge"]["ms"]["total"] < p["cloud-only"]["ms"]["total"]   # 100 kHz: the split wins
    assert report["crossover_uplink"] > 1e5 and report["crossover_uplink_unit"] == "Hz"
    assert (tmp_path / "lat.png").stat().st_size > 10_000


def test_latency_measure_times_the_stages_here(tmp_path, capsys):
    write(tmp_path / "r", [row("identity", "identity", 393216, 2.0), dict(row("shapes-hyperprior", "learned", 200, 2.0),
                                                                          rate_point=2),
                           row("jpeg-20", "bytes", 6000, 2.0), row("text", "bytes", 300, 2.0)])
    assert main(["latency", "--results", str(tmp_path / "r"), "--measure", "--measure-images", "3", "--json"]) == 0
    measured = json.loads(capsys.readouterr().out)["measured"]
    stages = {r["stage"]: r for r in measured["stages"]}
    assert {"device-only: whole model", "device: head", "edge: tail", "encode: shapes-hyperprior",
            "decode: shapes-hyperprior", "device: jpeg-20 compress"} <= set(stages)
    assert all(r["measured_ms"] > 0 for r in stages.values())
    # calibrated on the whole model: its own prediction is exact, the parts are compared against it
    whole = stages["device-only: whole model"]
    assert whole["predicted_ms"] == pytest.approx(whole["measured_ms"])
    assert measured["this_machine_flops_per_s"] == pytest.approx(whole["flops"] / whole["measured_ms"] * 1e3)
