"""The ``intelliflow channels`` sub-command: uncoded BER tables and adaptive MCS per SNR.

    intelliflow channels ber --channel awgn --modulation qpsk --snr 0:10:2 [--json]
    intelliflow channels mcs --channel awgn --snr 0:20:2 [--json]

A command group of ``intelliflow.recipes.commands``.
"""

from __future__ import annotations

import argparse
import json
import math

from intelliflow.errors import ConfigError

from . import COMMAND_GROUPS


def _param(text: str) -> tuple[str, object]:
    """``key=value`` with a JSON value when it parses (numbers, true/false, null, lists), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key.strip(), parsed


def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, spec)


def cmd_channels_ber(args) -> int:
    """Simulated and closed-form uncoded BER per SNR through an analog channel."""
    import torch

    from intelliflow.channels import ber_theory, build_channel, has_ber_theory, simulate_ber
    from intelliflow.seeding import seed_everything

    from .common import float_list, print_json

    if args.bits <= 0:
        raise ConfigError(f"--bits must be a positive integer, got {args.bits}")
    snrs = float_list(args.snr)
    if not snrs:
        raise ConfigError(f"--snr {args.snr!r} gives no SNR values")
    config = {"name": args.channel, **dict(args.param)}
    channel = build_channel(config)
    seed_everything(args.seed, sionna=True)
    theory = has_ber_theory(channel)
    rows = []
    with torch.no_grad():
        for snr in snrs:
            est = simulate_ber(channel, args.modulation, snr, args.bits)
            rows.append({"snr_db": snr, "ber": est.ber, "ci95_low": est.low, "ci95_high": est.high,
                         "ber_theory": float(ber_theory(args.modulation, snr, channel)) if theory else None,
                         "bits_simulated": est.bits, "independent_rows": est.rows})
    if args.json:
        print_json(rows)
        return 0
    print(f"uncoded {args.modulation.upper()} over {config}")
    print(f"{'snr_db':>8} {'ber':>12} {'95% interval':>25} {'ber_theory':>12} {'bits_simulated':>15} "
          f"{'independent':>12}")
    for r in rows:
        interval = f"[{r['ci95_low']:.3e}, {r['ci95_high']:.3e}]"
        print(f"{r['snr_db']:>8.2f} {r['ber']:>12.4e} {interval:>25} {_fmt(r['ber_theory'], '>12.4e'):>12} "
              f"{r['bits_simulated']:>15,} {r['independent_rows']:>12,}")
    return 0


def cmd_channels_mcs(args) -> int:
    """The MCS link adaptation picks per SNR for a payload size, its BLER, spectral efficiency and the Shannon limit."""
    from intelliflow.channels import ABSTRACTED_CHANNELS, DigitalLink, capacity

    from .common import float_list, print_json

    if not 0.0 < args.target_bler < 1.0:
        raise ConfigError(f"--target-bler must be in (0, 1), got {args.target_bler}")
    if args.channel not in ABSTRACTED_CHANNELS:
        raise ConfigError(f"--channel {args.channel!r} has no BLER abstraction; allowed: {list(ABSTRACTED_CHANNELS)}")
    if args.payload_bytes < 1:
        raise ConfigError(f"--payload-bytes must be at least 1, got {args.payload_bytes}")
    snrs = float_list(args.snr)
    if not snrs:
        raise ConfigError(f"--snr {args.snr!r} gives no SNR values")
    link = DigitalLink(args.channel, target_bler=args.target_bler, olla=False)
    blocks = link.code_block_bits(args.payload_bytes)
    rows = []
    for snr in snrs:
        mcs = link.select_mcs(snr, args.payload_bytes)
        rows.append({"snr_db": snr, "payload_bytes": args.payload_bytes, "code_block_bits": blocks,
                     "mcs": mcs.index if mcs else None,
                     "modulation": mcs.modulation if mcs else None,
                     "code_rate": mcs.code_rate if mcs else None,
                     "spectral_efficiency": link.spectral_efficiency(mcs, args.payload_bytes) if mcs else 0.0,
                     "shannon_limit": float(capacity(snr, args.channel)),
                     "bler": link.link_adaptation.packet_bler(mcs, blocks, snr) if mcs else None})
    if args.json:
        print_json(rows)
        return 0
    print(f"adaptive MCS over {args.channel} for a {args.payload_bytes}-byte payload (code blocks of {blocks} bits, "
          f"CRC included; first-transmission BLER <= {args.target_bler:g}, Sionna's PHY abstraction); "
          f"spectral efficiency and Shannon limit in information bits per channel use")
    print(f"{'snr_db':>8} {'mcs':>4} {'modulation':>10} {'code_rate':>9} {'spectral_eff':>12} {'shannon_limit':>13} "
          f"{'bler':>8}")
    for r in rows:
        print(f"{r['snr_db']:>8.2f} {_fmt(r['mcs'], '>4d'):>4} {_fmt(r['modulation'], '>10'):>10} "
              f"{_fmt(r['code_rate'], '>9.4f'):>9} {r['spectral_efficiency']:>12.4f} {r['shannon_limit']:>13.4f} "
              f"{_fmt(r['bler'], '>8.4f'):>8}")
    return 0


@COMMAND_GROUPS.register("channels")
def register(sub) -> None:
    """Add ``channels`` (actions ``ber`` and ``mcs``) to an argparse sub-parsers object."""
    from intelliflow.channels.ber import MODULATIONS
    from intelliflow.channels.registry import available_channels

    from .common import RegisteredNames, action_group

    csub = action_group(sub, "channels", "channels: uncoded BER versus theory, adaptive MCS per SNR")

    p = csub.add_parser("ber", help="simulated and closed-form uncoded BER per SNR through an analog channel")
    p.add_argument("--channel", default="awgn", choices=RegisteredNames(available_channels), metavar="NAME",
                   help="channel name: awgn, rayleigh, ofdm-tdl, none (default: awgn)")
    p.add_argument("--param", action="append", default=[], type=_param, metavar="KEY=VALUE",
                   help="channel parameter, e.g. --param csi=estimated --param block_length=64 (repeatable)")
    p.add_argument("--modulation", default="qpsk", choices=list(MODULATIONS), help="default: qpsk")
    p.add_argument("--snr", default="0:10:2",
                   help="Es/N0 values in dB: 0,5,10 or 0:10:2 (stop included); negative start: --snr=-4:10:2")
    p.add_argument("--bits", type=int, default=1_000_000, help="bits simulated per SNR (default: 1000000)")
    p.add_argument("--seed", type=int, default=0, help="seed of torch, numpy and Sionna (default: 0)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {snr_db, ber, ber_theory, bits_simulated}")
    p.set_defaults(func=cmd_channels_ber)

    p = csub.add_parser("mcs", help="adaptive MCS per SNR for a payload size from Sionna's BLER tables per MCS and "
                                    "code-block size, with the Shannon limit")
    p.add_argument("--channel", default="awgn", help="a channel with a BLER abstraction: awgn or rayleigh (default: awgn)")
    p.add_argument("--payload-bytes", type=int, default=256,
                   help="payload size the MCS is chosen for (default: 256, one full code block)")
    p.add_argument("--snr", default="0:20:2",
                   help="Es/N0 values in dB: 0,5,10 or 0:20:2 (stop included); negative start: --snr=-4:20:2")
    p.add_argument("--target-bler", type=float, default=0.1, help="block error rate target (default: 0.1)")
    p.add_argument("--json", action="store_true", help="print a JSON list of {snr_db, payload_bytes, "
                                                       "code_block_bits, mcs, modulation, code_rate, "
                                                       "spectral_efficiency, shannon_limit, bler}")
    p.set_defaults(func=cmd_channels_mcs)
