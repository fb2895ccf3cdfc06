"""The planner: fastest measured operating point above the floor, reasons for every loser, re-planning."""

import json

import pytest

from intelliflow.system.latency import PRESETS, NodeProfile, WirelessLink
from intelliflow.models.costs import SplitCost
from intelliflow.system.planner import Planner, links_over
from intelliflow.recipes.cli import main
from test_evaluation_curves import row, write

COSTS = {4: SplitCost(split=4, device_flops=2e9, server_flops=2e10, device_params=1e6, server_params=5e6)}


def rows():
    ours = [dict(row("ours", "learned", 150, 1.5), rate_point=1), dict(row("ours", "learned", 200, 2.0), rate_point=2)]
    jscc = [row("jscc", "analog", "", 1.95, channel="awgn", snr=0.0, uses=256),
            row("jscc", "analog", "", 2.0, channel="awgn", snr=10.0, uses=256)]
    for r in ours + jscc:
        r["split"] = 4
    return [row("identity", "identity", 393216, 2.0), *ours, *jscc, row("jpeg-20", "bytes", 6000, 2.0),
            row("webp-20", "bytes", 3000, 1.0), row("text", "bytes", 300, 2.0)]


def test_the_floor_decides_the_rate_point_and_every_loser_has_a_reason():
    link = WirelessLink(bandwidth_hz=1e5, snr_db=20.0)
    plan = Planner(rows(), COSTS, quality=0.95).plan(link)
    c = plan.choice.candidate
    assert (c.paradigm, c.codec, c.rate_point, c.payload_bits) == ("device-edge", "ours", 2, 200)
    assert plan.choice.total == min(o.total for o in plan.options if not o.rejected)
    reasons = {o.candidate.label: o.rejected for o in plan.options}
    assert "under the floor" in reasons["device-edge k=4: ours q=1 (150 bits)"]
    assert "under the floor" in reasons["cloud-only: webp-20 (3000 bits)"]
    assert "choice: device-edge k=4: ours q=2" in plan.why() and "slower" in plan.why()
    loose = Planner(rows(), COSTS, quality=0.7).plan(link).choice.candidate
    assert (loose.rate_point, loose.payload_bits) == (1, 150)   # fewer bits once they are good enough


def test_replanning_follows_the_snr():
    planner = Planner(rows(), COSTS)
    plans = planner.replan(links_over(WirelessLink(bandwidth_hz=1e5), snr_db=[20.0, 0.0, -30.0]))
    (high, _), (low, changed), (outage, _) = plans
    assert high.choice.candidate.channel_uses is None          # digital: 200 bits at a high MCS beat 256 symbols
    assert changed and low.choice.candidate.channel_uses == 256  # at 0 dB the JSCC's symbols are faster
    assert low.choice.candidate.snr_db == 0.0                   # quality read at the SNR measured, not above it
    assert outage.choice is None and "no candidate meets the floor" in outage.why()
    assert all(o.rejected for o in outage.options)


def test_raw_feature_payloads_are_split_candidates_and_bit_rates_replan():
    table = rows() + [dict(row("quantize-4", "bytes", 20000, 2.0), split=4)]
    planner = Planner(table, COSTS)
    links = links_over(WirelessLink(), bit_rate=[1e4, 1e9])
    assert [link.bit_rate for link in links] == [1e4, 1e9]
    (slow, _), (fast, _) = planner.replan(links)
    labels = {o.candidate.label for o in slow.options}
    assert "device-edge k=4: quantize-4 (20000 bits)" in labels
    assert all(o.candidate.channel_uses is None for o in slow.options)   # a bit link carries no JSCC symbols
    assert slow.choice.candidate.payload_bits == 200                      # at 10 kbit/s the fewest bits win
    assert fast.choice.total < slow.choice.total


def test_memory_limits_rule_a_node_out():
    tiny = NodeProfile("watch", 1e12, memory_bytes=4e6)
    plan = Planner(rows(), COSTS, device=tiny).plan(WirelessLink(bandwidth_hz=1e9, snr_db=20.0))
    assert all(o.rejected for o in plan.options if o.candidate.paradigm == "device-only")
    assert "watch holds" in plan.best_per_paradigm()["device-only"].rejected
    # the head (1e6 parameters, 2 MB at 2 bytes each) fits, so the split stays possible
    assert any(not o.rejected for o in plan.options if o.candidate.paradigm == "device-edge")


def test_planner_needs_a_clean_quality():
    with pytest.raises(Exception, match="identity"):
        Planner([row("ours", "learned", 150, 1.5)], COSTS)


def test_plan_command_prints_the_choice_and_replans(tmp_path, capsys):
    write(tmp_path / "r", rows())
    assert main(["plan", "--results", str(tmp_path / "r"), "--snr", "20", "0", "--bandwidth", "1e5",
                 "--codec-flops", "0", "--json"]) == 0
    plans = json.loads(capsys.readouterr().out)
    assert [p["changed"] for p in plans] == [False, True]
    assert plans[1]["paradigm"] == "device-edge" and plans[1]["codec"] == "jscc"
    assert main(["plan", "--results", str(tmp_path / "r"), "--snr", "20", "0", "--bandwidth", "1e5",
                 "--codec-flops", "0"]) == 0
    out = capsys.readouterr().out
    assert "re-planned" in out and "choice:" in out


def test_the_planner_chooses_the_split_point_from_the_device_and_the_link():
    costs = {0: SplitCost(split=0, device_flops=2.5e7, server_flops=2.9e8, device_params=1.4e5, server_params=3.6e6),
             4: SplitCost(split=4, device_flops=2.5e8, server_flops=6.3e7, device_params=1.9e6, server_params=1.8e6)}
    table = [row("identity", "identity", 393216, 2.0),
             dict(row("ours-k0", "learned", 400, 2.0), split=0, rate_point=3),   # cheap head, more bits
             dict(row("ours", "learned", 50, 2.0), split=4, rate_point=1)]       # dear head, few bits
    def choice(device, bit_rate):
        plan = Planner(table, costs, device=device).plan(WirelessLink(bit_rate=bit_rate))
        edge = {o.candidate.split: o for o in plan.options if o.candidate.paradigm == "device-edge"}
        assert set(edge) == {0, 4} and not any(o.rejected for o in edge.values())
        # each split is priced with its own head: the device's compute differs by its FLOPs
        assert edge[4].ms["device"] / edge[0].ms["device"] == pytest.approx(10.0, rel=0.01)
        return min(edge.values(), key=lambda o: o.total).candidate.split
    slow = NodeProfile("mcu", 1e9)
    assert choice(slow, 1e6) == 0              # 225 ms of head saved beat 350 bits at 1 Mbit/s
    assert choice(PRESETS["phone"], 2e4) == 4  # on a fast device over 20 kbit/s the bits decide


def test_plan_command_picks_the_split_point_for_the_device_preset(tmp_path, capsys):
    write(tmp_path / "r", [row("identity", "identity", 393216, 2.0), row("text", "bytes", 300, 2.0),
                           dict(row("ours-k0", "learned", 400, 2.0), split=0, rate_point=3),
                           dict(row("ours", "learned", 50, 2.0), split=4, rate_point=1)])
    picks = {}
    for device, rate in (("wearable", "1e6"), ("phone", "2e4")):
        assert main(["plan", "--results", str(tmp_path / "r"), "--device", device, "--bit-rate", rate,
                     "--codec-flops", "0", "--json"]) == 0
        (plan,) = json.loads(capsys.readouterr().out)
        picks[device] = (plan["paradigm"], plan["split"])
    # a 10 GFLOP/s wearable saves 23 ms of head at k=0; a phone on 20 kbit/s saves 17.5 ms of uplink at k=4
    assert picks == {"wearable": ("device-edge", 0), "phone": ("device-edge", 4)}
    assert main(["plan", "--results", str(tmp_path / "r"), "--device", "toaster", "--codec-flops", "0"]) == 2
    assert "--device: unknown preset 'toaster'; presets: [" in capsys.readouterr().err


def drafted_rows(receiver_passes=2.2, greedy_passes=10.6, extra_bits=16):
    """rows() plus ours measured with a drafter: the payload carries the draft, the passes are measured."""
    drafted = dict(row("ours+draft", "learned", 200 + extra_bits, 2.0), rate_point=2, split=4, drafter="d",
                   receiver_passes=receiver_passes, greedy_passes=greedy_passes, draft_acceptance=0.98,
                   draft_accepted_tokens=0.98 * greedy_passes)
    return rows() + [drafted]


def test_drafts_are_a_paradigm_priced_per_decoder_pass():
    from intelliflow.system.latency import breakdown, early_answer_ms

    link = WirelessLink(bit_rate=1e6, snr_db=20.0)
    quick = NodeProfile("quick-phone", 0.4e12, 8e9, pass_ms=0.2)     # drafting passes cheap on the device
    planner = Planner(drafted_rows(), COSTS, device=quick, drafter_flops_per_token=1e6)
    plan = planner.plan(link)
    best = plan.best_per_paradigm()
    draft, plain = best["device-edge-draft"], best["device-edge"]
    assert draft.candidate.payload_bits == 216 and plain.candidate.payload_bits == 200   # the draft is not plain
    assert planner.caption_tokens == pytest.approx(10.6)
    edge = PRESETS["edge-gpu"]
    assert plain.ms["edge"] - draft.ms["edge"] == pytest.approx((10.6 - 2.2) * edge.pass_ms)   # fewer passes
    assert draft.ms["device"] > plain.ms["device"] and draft.ms["uplink"] > plain.ms["uplink"]   # drafting, its bits
    assert plan.choice is draft and "device-edge-draft" in plan.why()
    scenario = planner.scenario(draft.candidate, link)
    assert early_answer_ms(scenario) < draft.total and breakdown(scenario, "device-edge-draft") == draft.ms
    slow_link = WirelessLink(bit_rate=2e3, snr_db=20.0)            # 16 more bits cost 8 ms at 2 kbit/s
    assert Planner(drafted_rows(), COSTS, device=quick).plan(slow_link).choice.candidate.paradigm == "device-edge"
    # a device whose every pass costs 1 ms spends more drafting than the edge saves (8.4 passes x 0.5 ms)
    assert Planner(drafted_rows(), COSTS).plan(link).choice.candidate.paradigm == "device-edge"
    assert "device-edge-draft" not in Planner(rows(), COSTS).plan(link).best_per_paradigm()
