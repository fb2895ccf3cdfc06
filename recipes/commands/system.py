"""``intelliflow latency`` and ``plan``: the system model (latency across device, edge and cloud; the planner)."""

from __future__ import annotations

from . import COMMAND_GROUPS
from .common import print_json


def _harq(wireless, args):
    """The link with the command's HARQ settings (transmissions, round trip), where given."""
    from dataclasses import replace

    from intelliflow.errors import ConfigError

    if args.harq is not None:
        if args.harq < 1:
            raise ConfigError(f"--harq must be at least 1 (one transmission, no retransmission), got {args.harq}")
        wireless = replace(wireless, max_transmissions=args.harq)
    if args.harq_rtt_ms is not None:
        wireless = replace(wireless, harq_rtt_ms=args.harq_rtt_ms)
    return wireless


def cmd_latency(args) -> int:
    """Latency per paradigm for one image, from profiles, the model's FLOPs and measured rate-quality."""
    from dataclasses import replace

    from intelliflow.system.latency import (STAGES, breakdown, crossover_bandwidth, crossover_device_speed,
                                            early_answer_ms, plot_latency)

    from intelliflow.system.costs import build_planner

    planner, wireless = build_planner(args.results, args.profile, args.model, args.split, args.quality,
                                      args.codec_flops, device=args.device)
    if args.bandwidth:
        wireless = replace(wireless, bandwidth_hz=args.bandwidth)
    if args.bit_rate:
        wireless = replace(wireless, bit_rate=args.bit_rate)
    wireless = _harq(wireless, args)
    plan = planner.plan(wireless)
    best = plan.best_per_paradigm()
    scenario = planner.comparison(plan)
    report = {"clean_CIDEr-D": plan.clean, "floor_CIDEr-D": plan.floor, "wireless": vars(wireless),
              "device": vars(planner.device), "edge": vars(planner.edge), "cloud": vars(planner.cloud),
              "paradigms": {p: {"operating_point": o.candidate.label, "codec": o.candidate.codec,
                                "payload_bits": o.candidate.payload_bits, "channel_uses": o.candidate.channel_uses,
                                "CIDEr-D": o.candidate.quality, "meets_floor": not o.rejected,
                                "rejected": o.rejected or None, "ms": o.ms} for p, o in best.items()},
              "choice": plan.choice.candidate.label if plan.choice else None,
              **({"early_answer_ms": early_answer_ms(planner.scenario(best["device-edge-draft"].candidate, wireless))}
                 if "device-edge-draft" in best else {}),
              "crossover_uplink": crossover_bandwidth(scenario, "device-edge", "cloud-only"),
              "crossover_uplink_unit": "bit/s" if wireless.bit_rate else "Hz",
              "crossover_device_flops": crossover_device_speed(scenario, "device-edge", "device-only")}
    if args.measure:
        from intelliflow.system.measure import measure_stages

        report["measured"] = measure_stages(args.model, planner, plan, images=args.measure_images)
    plot = plot_latency(scenario, args.out) if args.out else None
    if args.json:
        print_json(report)
        return 0
    print(plan.why().splitlines()[0])
    print(f"{'paradigm':<18} {'operating point':<44} {'CIDEr-D':>8} " + " ".join(f"{s:>9}" for s in STAGES)
          + f" {'total ms':>10}")
    for p, o in best.items():
        mark = "" if not o.rejected else "  (under the floor)" if "floor" in o.rejected else f"  ({o.rejected})"
        point = o.candidate.label.split(": ", 1)[1]
        print(f"{p:<18} {point:<44} {o.candidate.quality:>8.3f} " + " ".join(f"{o.ms[s]:>9.3f}" for s in STAGES)
              + f" {o.ms['total']:>10.3f}{mark}")
    cb, cd = report["crossover_uplink"], report["crossover_device_flops"]
    unit = "Mbit/s of uplink" if wireless.bit_rate else "MHz of uplink"
    split_ms = breakdown(scenario, "device-edge")["total"]

    def never(other, axis):
        faster = "the split" if split_ms < breakdown(scenario, other)["total"] else other
        return f"split vs {other}: no crossover; {faster} is faster at every {axis} in range"

    print(f"split beats cloud upload below {cb / 1e6:.3g} {unit}" if cb else never("cloud-only", "uplink"))
    print(f"split beats device-only below {cd / 1e9:.3g} GFLOP/s on the device" if cd
          else never("device-only", "device speed"))
    if "early_answer_ms" in report:
        print(f"device-edge-draft: the device's own draft is ready after {report['early_answer_ms']:.3g} ms "
              "(its early answer, before the verified caption)")
    if args.measure:
        _print_measured(report["measured"])
    if plot:
        print(f"wrote {plot}")
    return 0


def _print_measured(measured: dict) -> None:
    print(f"measured on this machine ({measured['threads']} threads, median of {measured['images']} images, "
          f"batch 1); model at the calibrated {measured['this_machine_flops_per_s'] / 1e9:.3g} GFLOP/s:")
    print(f"  {'stage':<36} {'MFLOP':>10} {'measured ms':>12} {'model ms':>10}")
    for r in measured["stages"]:
        print(f"  {r['stage']:<36} {r['flops'] / 1e6:>10.2f} {r['measured_ms']:>12.3f} {r['predicted_ms']:>10.3f}")


def cmd_plan(args) -> int:
    """The planner: the fastest paradigm, split point and rate point above the quality floor, re-planned
    for every SNR and bandwidth given."""
    from dataclasses import replace

    from intelliflow.system.planner import links_over

    from intelliflow.system.costs import build_planner

    planner, wireless = build_planner(args.results, args.profile, args.model, args.split, args.quality,
                                      args.codec_flops, device=args.device)
    if args.channel:
        wireless = replace(wireless, channel=args.channel)
    wireless = _harq(wireless, args)
    links = links_over(wireless, args.snr or (), args.bandwidth or (), args.bit_rate or ())
    plans = planner.replan(links)
    if args.json:
        print_json([{"wireless": vars(p.wireless), "choice": p.choice.candidate.label if p.choice else None,
                      "paradigm": p.choice.candidate.paradigm if p.choice else None,
                      "codec": p.choice.candidate.codec if p.choice else None,
                      "split": p.choice.candidate.split if p.choice else None,
                      "rate_point": p.choice.candidate.rate_point if p.choice else None,
                      "CIDEr-D": p.choice.candidate.quality if p.choice else None,
                      "ms": p.choice.ms if p.choice else None, "changed": changed, "why": p.why()}
                     for p, changed in plans])
        return 0
    if len(plans) == 1:
        print(plans[0][0].why())
        return 0
    print(f"{'uplink':>12} {'SNR dB':>7}  {'total ms':>9}  choice")
    for plan, changed in plans:
        w = plan.wireless
        rate = f"{w.bit_rate / 1e6:g} Mbit/s" if w.bit_rate else f"{w.bandwidth_hz / 1e6:g} MHz"
        c = plan.choice
        text = f"{c.total:>9.3g}  {c.candidate.label}" if c else f"{'-':>9}  nothing meets the floor"
        print(f"{rate:>12} {w.snr_db:>7g}  {text}{'   <- re-planned' if changed else ''}")
    print()
    print(plans[-1][0].why() if args.explain_last else plans[0][0].why())
    return 0


def _add_planner_options(p) -> None:
    """What ``latency`` and ``plan`` both need to build a planner (``intelliflow.system.costs.build_planner``)."""
    p.add_argument("--results", nargs="+", required=True, help="result folders of intelliflow eval / demo")
    p.add_argument("--profile", default=None, help="YAML profile (device/edge/cloud presets or FLOP/s, wireless, backhaul)")
    p.add_argument("--model", default="shapes-captioner")
    p.add_argument("--split", type=int, default=None, help="consider only this split point")
    p.add_argument("--quality", type=float, default=0.95, help="quality floor as a fraction of the clean CIDEr-D")
    p.add_argument("--codec-flops", type=float, default=None, help="codec FLOPs per image per side (default: counted)")
    p.add_argument("--device", default=None, help="the device's node preset (wearable, phone, jetson, ...), "
                                                  "over the profile's")


@COMMAND_GROUPS.register("system")
def register(sub) -> None:
    """Add this group's commands to the main parser's sub-parsers."""
    p = sub.add_parser("latency", help="latency per paradigm (device-only, cloud upload, split, 3-tier) from "
                                       "profiles, FLOPs and rate-quality results")
    _add_planner_options(p)
    p.add_argument("--bandwidth", type=float, default=None, help="uplink bandwidth in Hz (overrides the profile)")
    p.add_argument("--bit-rate", type=float, default=None,
                   help="a fixed uplink bit rate in bit/s instead of the adaptive MCS (e.g. 10e6)")
    p.add_argument("--harq", type=int, default=None,
                   help="HARQ transmissions per transport block (default 4, as 5G; 1: none)")
    p.add_argument("--harq-rtt-ms", type=float, default=None,
                   help="time between a transmission and its retransmission (default 4 ms)")
    p.add_argument("--out", default=None, help="PNG: latency against uplink bandwidth with the crossover")
    p.add_argument("--measure", action="store_true",
                   help="also time every stage for real on this machine and set it beside the model's figure")
    p.add_argument("--measure-images", type=int, default=20, help="images timed per stage with --measure")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_latency)


    p = sub.add_parser("plan", help="choose paradigm, split point and codec rate point with the lowest latency "
                                    "above a quality floor; re-plan over SNRs and bandwidths")
    _add_planner_options(p)
    p.add_argument("--snr", type=float, nargs="+", default=None, help="link SNRs (dB) to plan for")
    p.add_argument("--bandwidth", type=float, nargs="+", default=None, help="uplink bandwidths (Hz) to plan for")
    p.add_argument("--bit-rate", type=float, nargs="+", default=None,
                   help="fixed uplink bit rates (bit/s) to plan for, instead of the adaptive MCS (digital payloads only)")
    p.add_argument("--harq", type=int, default=None,
                   help="HARQ transmissions per transport block (default 4, as 5G; 1: none)")
    p.add_argument("--harq-rtt-ms", type=float, default=None,
                   help="time between a transmission and its retransmission (default 4 ms)")
    p.add_argument("--channel", default=None, help="link channel: awgn or rayleigh (default: the profile's)")
    p.add_argument("--explain-last", action="store_true", help="explain the last link state instead of the first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)
