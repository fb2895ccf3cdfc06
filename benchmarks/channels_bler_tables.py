"""Simulate the BLER-versus-SNR tables of the digital link with Sionna and cache them in the package.

    OMP_NUM_THREADS=1 python benchmarks/channels_bler_tables.py            # writes channels/data/bler_tables.json

``awgn``: Monte-Carlo through :class:`intelliflow.channels.DigitalLink` (CRC24A, Sionna's 5G LDPC
with the link's default decoder, Gray QAM, Sionna's AWGN, APP demapping) with 256-byte code
blocks (k = 2072 LDPC information bits), for every MCS of the table (I_MCS 3..28). Each curve
starts on a 0.25 dB grid at or below the Shannon limit of the MCS's spectral efficiency (where
the BLER is 1) and climbs in 0.5 dB steps while every block fails, then in 0.25 dB steps (the
step into the waterfall is refined) until a point shows no block error. A point sends batches
of 16 blocks until 16 block errors or 80 blocks. That keeps the run near 10 minutes of one
core: about 8000 code blocks in all (the 10 % BLER points rest on 80 blocks, so a threshold
is good to about +-0.1 dB).

``rayleigh``: flat Rayleigh block fading with perfect CSI and one gain per code block (the
``rayleigh`` channel with ``block_length=None``, or any coherence longer than a packet). With a
constant gain g and perfect CSI, the equalised block is exactly an AWGN block at SNR g*snr
(noise no/g after zero-forcing), so BLER_rayleigh(snr) = E_g[BLER_awgn(g snr)], g ~ Exp(1):
the table is the simulated AWGN curve averaged over the fading law (numerically), not a
guessed formula. It is checked here against a direct Sionna Monte-Carlo through the
``rayleigh`` channel at a few points (``validation`` in the file).

Use ``--quick`` for a smoke run (3 MCS, fewer blocks) written elsewhere.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "channels" / "data" / "bler_tables.json"


def wilson(errors: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = errors / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class Scanner:
    def __init__(self, link, rng, batch: int, min_errors: int, max_blocks: int) -> None:
        self.link, self.rng = link, rng
        self.batch, self.min_errors, self.max_blocks = batch, min_errors, max_blocks
        self.blocks_sent = 0

    def point(self, mcs: int, snr: float) -> tuple[int, int]:
        errors = sent = 0
        while errors < self.min_errors and sent < self.max_blocks:
            n = min(self.batch, self.max_blocks - sent)
            payload = self.rng.integers(0, 256, self.link.block_bytes * n, dtype=np.uint8).tobytes()
            result = self.link.transmit(payload, snr, mcs)
            errors += result.block_errors
            sent += result.blocks
        self.blocks_sent += sent
        return errors, sent

    def curve(self, mcs: int, start: float, fine: float, coarse: float) -> dict:
        points: dict[float, tuple[int, int]] = {}

        def run(snr: float) -> tuple[int, int]:
            snr = round(snr, 4)
            if snr not in points:
                points[snr] = self.point(mcs, snr)
            return points[snr]

        snr = start
        e, n = run(snr)
        steps_down = 0
        while e < n and steps_down < 8:          # the start must be in the all-fail region
            snr -= coarse
            steps_down += 1
            e, n = run(snr)
        while e == n:                             # coarse climb while every block fails
            snr += coarse
            e, n = run(snr)
        if round(snr - fine, 4) not in points:    # refine the step into the waterfall
            run(snr - fine)
        while e > 0:                              # fine climb until a point without errors
            snr += fine
            e, n = run(snr)
        snrs = sorted(points)
        return {"snr_db": snrs, "bler": [points[s][0] / points[s][1] for s in snrs],
                "errors": [points[s][0] for s in snrs], "blocks": [points[s][1] for s in snrs]}


def threshold(snrs, blers, target=0.1) -> float:
    from intelliflow.channels.mcs import BlerTable

    table = BlerTable({"channels": {"x": {"mcs": {"3": {"snr_db": list(snrs), "bler": list(blers)}}}}})
    return table.threshold_db(3, "x", target)


def rayleigh_from_awgn(awgn_snr, awgn_bler, snr_db: float) -> float:
    """E_g[BLER_awgn(snr + 10 log10 g)], g ~ Exp(1), with the AWGN curve interpolated like BlerTable."""
    from intelliflow.channels.mcs import BlerTable

    table = BlerTable({"channels": {"x": {"mcs": {"3": {"snr_db": list(awgn_snr), "bler": list(awgn_bler)}}}}})
    edges = np.logspace(-8, math.log10(60.0), 4001)
    mass = np.exp(-edges[:-1]) - np.exp(-edges[1:])
    mids = np.sqrt(edges[:-1] * edges[1:])
    values = np.array([table.bler(3, snr_db + 10 * math.log10(g), "x") for g in mids])
    return float((1.0 - math.exp(-edges[0])) * 1.0 + np.sum(mass * values))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--mcs", default=None, help="comma-separated MCS indices (default: all of MCS_TABLE)")
    parser.add_argument("--fine", type=float, default=0.25, help="SNR step in the waterfall (dB)")
    parser.add_argument("--coarse", type=float, default=0.5, help="SNR step while every block fails (dB)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--min-errors", type=int, default=16)
    parser.add_argument("--max-blocks", type=int, default=80)
    parser.add_argument("--validation-blocks", type=int, default=80)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--quick", action="store_true", help="3 MCS, few blocks (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.mcs = args.mcs or "5,13,22"
        args.max_blocks, args.min_errors, args.validation_blocks = 40, 10, 40

    torch.set_num_threads(1)
    import sionna

    from intelliflow.channels import DigitalLink, MCS_TABLE, build_channel, get_mcs, shannon_limit_db
    from intelliflow.seeding import seed_everything

    seed_everything(args.seed, sionna=True)
    rng = np.random.default_rng(args.seed)
    indices = [int(i) for i in args.mcs.split(",")] if args.mcs else [m.index for m in MCS_TABLE]
    link = DigitalLink("awgn")
    scanner = Scanner(link, rng, args.batch, args.min_errors, args.max_blocks)
    started = time.time()

    awgn = {}
    for index in indices:
        t0 = time.time()
        se = link.spectral_efficiency(index)
        limit = shannon_limit_db(se, "awgn")
        start = math.floor(limit / args.fine) * args.fine
        curve = scanner.curve(index, start, args.fine, args.coarse)
        thr = threshold(curve["snr_db"], curve["bler"])
        mcs = get_mcs(index)
        curve.update({"modulation": mcs.modulation, "code_rate": mcs.code_rate,
                      "spectral_efficiency": se, "shannon_limit_db": limit,
                      "snr_db_at_bler_10pct": thr, "gap_to_capacity_db": thr - limit})
        awgn[str(index)] = curve
        print(f"awgn MCS {index:2d} {mcs.modulation:>5} R={mcs.code_rate:.3f} SE={se:.3f} "
              f"shannon {limit:6.2f} dB, 10% BLER at {thr:6.2f} dB (gap {thr - limit:4.2f} dB), "
              f"{sum(curve['blocks'])} blocks, {time.time() - t0:.1f} s", flush=True)

    rayleigh = {}
    for index in indices:
        a = awgn[str(index)]
        se = a["spectral_efficiency"]
        limit = shannon_limit_db(se, "rayleigh")
        snrs, blers = [], []
        snr = math.floor((a["snr_db"][0] - 6.0) * 2) / 2
        while snr < a["snr_db"][-1] + 45.0:
            b = rayleigh_from_awgn(a["snr_db"], a["bler"], snr)
            snrs.append(snr)
            blers.append(b)
            if b < 1e-3:
                break
            snr += 0.5
        thr = threshold(snrs, blers)
        rayleigh[str(index)] = {"snr_db": snrs, "bler": blers, "modulation": a["modulation"],
                                "code_rate": a["code_rate"], "spectral_efficiency": se,
                                "shannon_limit_db": limit, "snr_db_at_bler_10pct": thr,
                                "gap_to_capacity_db": thr - limit}

    # direct Monte-Carlo through the rayleigh channel (one 256-byte block per packet, one gain per packet)
    validation = []
    ray_link = DigitalLink(build_channel({"name": "rayleigh", "csi": "perfect", "block_length": None}))
    check = [i for i in (5, 13, 22) if i in indices]
    for index in check:
        r = rayleigh[str(index)]
        for target in (0.3, 0.1, 0.03):
            snr = min(r["snr_db"], key=lambda s, r=r, t=target: abs(
                math.log10(max(r["bler"][r["snr_db"].index(s)], 1e-9)) - math.log10(t)))
            derived = r["bler"][r["snr_db"].index(snr)]
            errors = sent = 0
            while sent < args.validation_blocks:
                n = min(50, args.validation_blocks - sent)
                packets = [rng.integers(0, 256, link.block_bytes, dtype=np.uint8).tobytes() for _ in range(n)]
                result = ray_link.transmit(packets, snr, index)
                errors += result.block_errors
                sent += result.blocks
            lo, hi = wilson(errors, sent)
            validation.append({"mcs": index, "snr_db": snr, "bler_table": derived, "bler_simulated": errors / sent,
                               "blocks": sent, "wilson95": [lo, hi], "table_inside_interval": lo <= derived <= hi})
            print(f"rayleigh check MCS {index} at {snr:.1f} dB: table {derived:.3f}, simulated "
                  f"{errors}/{sent} = {errors / sent:.3f} [{lo:.3f}, {hi:.3f}]", flush=True)
    scanner.blocks_sent += sum(v["blocks"] for v in validation)

    elapsed = time.time() - started
    command = "OMP_NUM_THREADS=1 python benchmarks/channels_bler_tables.py " + " ".join(argv or sys.argv[1:])
    data = {
        "description": "BLER versus Es/N0 of intelliflow's DigitalLink per MCS (TS 38.214 Table 5.1.3.1-1, "
                       "I_MCS 3-28), simulated with Sionna; read by intelliflow.channels.load_bler_table",
        "command": command.strip(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"sionna": sionna.__version__, "torch": torch.__version__},
        "seed": args.seed,
        "link": {"block_bytes": link.block_bytes, "info_bits_per_block": 8 * link.block_bytes,
                 "crc": "CRC24A", "ldpc_k": 8 * link.block_bytes + 24, "cn_update": link.cn_update,
                 "num_iter": link.num_iter, "demapping": link.demapping,
                 "codeword_bits": "n = ceil(k / (R Q_m)) * Q_m, rate-matched by LDPC5GEncoder"},
        "method": {"points": f"batches of {args.batch} blocks until {args.min_errors} block errors or "
                             f"{args.max_blocks} blocks",
                   "grid": f"start on a {args.fine} dB grid at/below the Shannon limit; {args.coarse} dB steps "
                           f"while every block fails, then {args.fine} dB steps until a point has no error",
                   "lookup": "log-linear interpolation; BLER 1 below the first point"},
        "elapsed_s": round(elapsed, 1),
        "code_blocks_simulated": scanner.blocks_sent,
        "cpu": "one thread (OMP_NUM_THREADS=1, torch.set_num_threads(1)) on a 2-core machine shared with "
               "a training job",
        "channels": {
            "awgn": {"config": {"name": "awgn"}, "method": "Monte-Carlo with Sionna", "mcs": awgn},
            "rayleigh": {"config": {"name": "rayleigh", "csi": "perfect", "block_length": None},
                         "method": "E_g[BLER_awgn(g snr)], g ~ Exp(1), from the simulated AWGN curves (exact for "
                                   "one gain per code block with perfect CSI); validated by direct Monte-Carlo",
                         "validation": validation, "mcs": rayleigh},
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(out)
    print(f"wrote {out} in {elapsed:.0f} s ({scanner.blocks_sent} code blocks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
