"""Sionna's PHY abstraction against intelliflow's own DigitalLink, and what the outer loop buys.

    OMP_NUM_THREADS=1 python benchmarks/link_adaptation.py            # writes benchmarks/results/link_adaptation/
    OMP_NUM_THREADS=1 python benchmarks/link_adaptation.py --quick    # fewer blocks (a smoke test)

1. **Tables against simulation, where both exist.** For MCS 5, 13 and 22 (QPSK, 16-QAM, 64-QAM)
   and payloads of 20, 48 and 256 bytes (one code block of 184, 408 and 2072 bits), the SNR at
   which the tables ``LinkAdaptation`` reads through Sionna's PHY abstraction say 30 %, 10 % and
   3 % BLER; there DigitalLink sends random code blocks over AWGN and counts the failures; a
   Wilson 95 % interval per point says whether the table's BLER is inside it, and whether Sionna's
   own shipped table (``sionna/sys/bler_tables/PDSCH_table1.json``) would be. The same for Rayleigh block fading (one gain per packet,
   perfect CSI), where the table is Sionna's AWGN curve averaged over the fades.
2. **The outer loop.** 24-byte payloads (a codec's payload size) with ``mcs="auto"``, HARQ off,
   at 10 and 20 dB, over AWGN and Rayleigh (perfect CSI; estimated CSI with 4 pilots; 64-symbol
   fading blocks), with the outer loop off and on: first-transmission BLER over the packets after
   a warm-up, mean channel uses per delivered packet, the offset it learnt.

Writes ``report.json`` and ``summary.csv`` under ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "link_adaptation"


def wilson(errors: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def table_checks(rng, blocks: int, batch: int) -> list[dict]:
    from intelliflow.channels import DigitalLink, LinkAdaptation, build_channel, code_block_bits
    from intelliflow.channels.link_adaptation import shipped_sionna_bler

    rows = []
    for channel in ("awgn", "rayleigh"):
        config = channel if channel == "awgn" else {"name": "rayleigh", "csi": "perfect", "block_length": None}
        link = DigitalLink(build_channel(config), olla=False, tbs_padding=False)
        la = LinkAdaptation(channel)
        sizes = (20, 48, 256) if channel == "awgn" else (24,)
        for mcs in (5, 13, 22):
            for nbytes in sizes:
                bits = [code_block_bits(nbytes)]
                for target in (0.3, 0.1, 0.03):
                    snr = la.threshold_db(mcs, bits, target)
                    table = la.packet_bler(mcs, bits, snr)
                    errors = sent = 0
                    t0 = time.time()
                    while sent < blocks:
                        n = min(batch, blocks - sent)
                        packets = [rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes() for _ in range(n)]
                        result = link.transmit(packets, snr, mcs)
                        errors += result.block_errors
                        sent += result.blocks
                    lo, hi = wilson(errors, sent)
                    shipped = shipped_sionna_bler(mcs, bits[0], snr) if channel == "awgn" else None
                    rows.append({"channel": channel, "mcs": mcs, "payload_bytes": nbytes, "code_block_bits": bits[0],
                                 "snr_db": round(snr, 3), "bler_table": table, "bler_sionna_shipped": shipped,
                                 "bler_simulated": errors / sent,
                                 "blocks": sent, "wilson95": [lo, hi], "table_inside_interval": lo <= table <= hi,
                                 "seconds": round(time.time() - t0, 2)})
                    print(f"{channel:8s} MCS {mcs:2d} {nbytes:3d} B at {snr:6.2f} dB: table {table:.3f}, "
                          f"simulated {errors}/{sent} = {errors / sent:.3f} [{lo:.3f}, {hi:.3f}]"
                          + (f", Sionna's shipped table {shipped:.3f}" if shipped is not None else ""), flush=True)
    return rows


def outer_loop(rng, packets: int, warmup: int, batch: int) -> list[dict]:
    from intelliflow.channels import DigitalLink, build_channel

    configs = {"awgn": "awgn",
               "rayleigh perfect CSI": {"name": "rayleigh", "csi": "perfect", "block_length": None},
               "rayleigh estimated CSI": {"name": "rayleigh", "csi": "estimated", "block_length": None,
                                          "num_pilots": 4},
               "rayleigh 64-symbol blocks": {"name": "rayleigh", "csi": "perfect", "block_length": 64}}
    rows = []
    for label, config in configs.items():
        for snr in (10.0, 20.0):
            for olla in (False, True):
                link = DigitalLink(build_channel(config), olla=olla)
                first = uses = delivered = counted = 0
                mcs_used = []
                t0 = time.time()
                for start in range(0, packets, batch):
                    n = min(batch, packets - start)
                    data = [rng.integers(0, 256, 24, dtype=np.uint8).tobytes() for _ in range(n)]
                    result = link.transmit(data, snr, "auto")
                    if start >= warmup:
                        counted += n
                        first += sum(result.first_failed_per_packet)
                        uses += result.channel_uses
                        delivered += sum(r is not None for r in result.received)
                        mcs_used += result.mcs
                lo, hi = wilson(first, counted)
                rows.append({"channel": label, "snr_db": snr, "olla": olla, "packets": counted,
                             "first_tx_bler": first / counted, "wilson95": [lo, hi],
                             "channel_uses_per_delivered": uses / max(1, delivered),
                             "mean_mcs": float(np.mean(mcs_used)),
                             "offset_db": link.olla.offset(snr) if link.olla else 0.0,
                             "seconds": round(time.time() - t0, 2)})
                r = rows[-1]
                print(f"{label:26s} {snr:4.0f} dB olla={olla!s:5}: first-tx BLER {r['first_tx_bler']:.3f} "
                      f"[{lo:.3f}, {hi:.3f}], {r['channel_uses_per_delivered']:.1f} uses/delivered, "
                      f"mean MCS {r['mean_mcs']:.1f}, offset {r['offset_db']:+.2f} dB", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--blocks", type=int, default=300, help="code blocks per table check point")
    parser.add_argument("--packets", type=int, default=640, help="packets per outer-loop run")
    parser.add_argument("--warmup", type=int, default=160, help="packets the outer loop learns on before counting")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.blocks, args.packets, args.warmup = 64, 128, 32

    torch.set_num_threads(1)
    from intelliflow.seeding import seed_everything

    seed_everything(args.seed, sionna=True)
    rng = np.random.default_rng(args.seed)
    started = time.time()
    checks = table_checks(rng, args.blocks, args.batch)
    loops = outer_loop(rng, args.packets, args.warmup, args.batch)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import sionna

    report = {"command": "OMP_NUM_THREADS=1 python benchmarks/link_adaptation.py " + " ".join(argv or sys.argv[1:]),
              "seed": args.seed, "versions": {"sionna": sionna.__version__, "torch": torch.__version__},
              "elapsed_s": round(time.time() - started, 1),
              "table_checks": checks,
              "table_checks_inside": f"{sum(r['table_inside_interval'] for r in checks)}/{len(checks)}",
              "sionna_shipped_inside": "{}/{}".format(
                  sum(r["wilson95"][0] <= r["bler_sionna_shipped"] <= r["wilson95"][1] for r in checks
                      if r["bler_sionna_shipped"] is not None),
                  sum(r["bler_sionna_shipped"] is not None for r in checks)),
              "outer_loop": loops}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["part", "channel", "mcs_or_olla", "payload_bytes", "snr_db", "bler_table", "bler_simulated",
                    "ci_low", "ci_high", "channel_uses_per_delivered"])
        for r in checks:
            w.writerow(["table", r["channel"], r["mcs"], r["payload_bytes"], r["snr_db"], r["bler_table"],
                        r["bler_simulated"], *r["wilson95"], ""])
        for r in loops:
            w.writerow(["olla", r["channel"], r["olla"], 24, r["snr_db"], "", r["first_tx_bler"], *r["wilson95"],
                        r["channel_uses_per_delivered"]])
    print(f"table inside the simulated 95 % interval at {report['table_checks_inside']} points "
          f"(Sionna's shipped AWGN table: {report['sionna_shipped_inside']}); "
          f"{report['elapsed_s']} s; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
