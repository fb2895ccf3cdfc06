"""Simulate the link's BLER per MCS *and* code-block size, in Sionna's PHY-abstraction format.

    OMP_NUM_THREADS=1 python benchmarks/channels_bler_tables.py            # writes channels/data/bler_tables.json

Why not Sionna's own tables: ``sionna.sys`` ships BLER tables per MCS and code-block size
(``bler_tables/PDSCH_table1.json``, code blocks of 24 to 2000 bits) and ``PHYAbstraction`` to read
them, but Sionna 2's own coded AWGN link (``sionna.phy.nr.utils.CodedAWGNChannelNR``: the
``LDPC5GDecoder`` default of 20 ``boxplus-phi`` iterations, APP demapping) does not reach them: at
MCS 5 and 2000-bit blocks the table gives 8 % BLER at -1.05 dB where that link loses 96 % of its
blocks (13 % at -0.55 dB); at MCS 22 it gives 9 % at 13.4 dB against 41 %. intelliflow's
DigitalLink agrees with CodedAWGNChannelNR (``benchmarks/link_adaptation.py`` measures all three).
Link adaptation on the shipped tables would aim at 10 % and land at 40-95 % on long blocks.

So the tables are made again here, for the link as it is, and written in Sionna's format
(``category`` / ``index`` / ``MCS`` / ``CBS`` / ``SNR_db`` / ``BLER``, category 1 = PDSCH, MCS
table 1 = TS 38.214 Table 5.1.3.1-1) so that ``sionna.sys.PHYAbstraction`` loads and interpolates
them across SNR and code-block size, as it does its own.

Monte-Carlo through :class:`intelliflow.channels.DigitalLink` over AWGN (CRC24A, Sionna's 5G LDPC
at the link's default decoder, Gray QAM, APP demapping), for every MCS (I_MCS 3..28) and code
blocks of 4, 12, 24, 48, 128 and 256 payload bytes (56 to 2072 LDPC information bits, CRC
included: the sizes of codec payloads up to one full block). Each curve starts on a 0.25 dB grid
at or below the Shannon limit of the MCS (where every block fails), climbs in 0.5 dB steps while
every block fails and in 0.25 dB steps through the waterfall until a point shows no error. A
point sends batches of blocks until 16 block errors or ``--max-blocks`` blocks. Curves of one
MCS share an SNR grid in the file: a size's BLER is 1 below its first point and 0 above its
error-free last one, and each curve is made non-increasing in SNR (the largest value at or above
each point: a pessimistic clean-up of Monte-Carlo noise).

Use ``--quick`` for a smoke run (3 MCS, 2 sizes, fewer blocks) written elsewhere.
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

from intelliflow.channels import code_block_bits

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "channels" / "data" / "bler_tables.json"
BLOCK_BYTES = (4, 12, 24, 48, 128, 256)


class Scanner:
    def __init__(self, rng, min_errors: int, max_blocks: int) -> None:
        self.rng, self.min_errors, self.max_blocks = rng, min_errors, max_blocks
        self.blocks_sent = 0

    def point(self, link, mcs: int, snr: float) -> tuple[int, int]:
        errors = sent = 0
        batch = max(16, min(64, 16 * code_block_bits(256) // code_block_bits(link.block_bytes)))
        while errors < self.min_errors and sent < self.max_blocks:
            n = min(batch, self.max_blocks - sent)
            payload = self.rng.integers(0, 256, link.block_bytes * n, dtype=np.uint8).tobytes()
            result = link.transmit(payload, snr, mcs)
            errors += result.block_errors
            sent += result.blocks
        self.blocks_sent += sent
        return errors, sent

    def curve(self, link, mcs: int, start: float, fine: float, coarse: float) -> dict[float, tuple[int, int]]:
        points: dict[float, tuple[int, int]] = {}

        def run(snr: float) -> tuple[int, int]:
            snr = round(snr, 4)
            if snr not in points:
                points[snr] = self.point(link, mcs, snr)
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
        return points


def on_grid(points: dict[float, tuple[int, int]], grid: list[float]) -> list[float]:
    """A curve on a shared SNR grid: measured where measured, 1 below, 0 above, linear between; then
    made non-increasing from the right (a pessimistic clean-up of Monte-Carlo noise, so more SNR
    never looks worse)."""
    snrs = sorted(points)
    blers = [points[s][0] / points[s][1] for s in snrs]
    return monotone([float(np.interp(s, snrs, blers, left=1.0, right=0.0)) for s in grid])


def monotone(blers: list[float]) -> list[float]:
    """Each value raised to the largest at or above its SNR: non-increasing in SNR."""
    return [float(v) for v in np.maximum.accumulate(np.asarray(blers)[::-1])[::-1]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--mcs", default=None, help="comma-separated MCS indices (default: all of MCS_TABLE)")
    parser.add_argument("--block-bytes", default=",".join(map(str, BLOCK_BYTES)))
    parser.add_argument("--fine", type=float, default=0.25, help="SNR step in the waterfall (dB)")
    parser.add_argument("--coarse", type=float, default=0.5, help="SNR step while every block fails (dB)")
    parser.add_argument("--min-errors", type=int, default=16)
    parser.add_argument("--max-blocks", type=int, default=96)
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--quick", action="store_true", help="3 MCS, 2 sizes, few blocks (smoke test)")
    args = parser.parse_args(argv)
    if args.quick:
        args.mcs = args.mcs or "5,13,22"
        args.block_bytes = "24,256"
        args.max_blocks, args.min_errors = 32, 8

    torch.set_num_threads(1)
    import sionna

    from intelliflow.channels import MCS_TABLE, DigitalLink, get_mcs, shannon_limit_db
    from intelliflow.seeding import seed_everything

    seed_everything(args.seed, sionna=True)
    rng = np.random.default_rng(args.seed)
    indices = [int(i) for i in args.mcs.split(",")] if args.mcs else [m.index for m in MCS_TABLE]
    sizes = [int(b) for b in args.block_bytes.split(",")]
    links = {b: DigitalLink("awgn", block_bytes=b, tbs_padding=False, olla=False) for b in sizes}
    scanner = Scanner(rng, args.min_errors, args.max_blocks)
    started = time.time()
    table: dict = {}
    for index in indices:
        t0 = time.time()
        mcs = get_mcs(index)
        limit = shannon_limit_db(mcs.spectral_efficiency, "awgn")
        start = math.floor(limit / args.fine) * args.fine
        curves = {b: scanner.curve(links[b], index, start, args.fine, args.coarse) for b in sizes}
        grid = sorted({s for c in curves.values() for s in c})
        table[index] = {"SNR_db": grid,
                        "CBS": {code_block_bits(b): {"BLER": on_grid(curves[b], grid)} for b in sizes}}
        print(f"MCS {index:2d} {mcs.modulation:>5} R={mcs.code_rate:.3f}: {len(grid)} SNR points "
              f"{grid[0]:.2f}..{grid[-1]:.2f} dB, {time.time() - t0:.1f} s", flush=True)

    elapsed = time.time() - started
    link = links[sizes[-1]]
    data = {
        "_comment": "BLER versus Es/N0 of intelliflow's DigitalLink over AWGN per MCS and code-block size "
                    "(CBS: LDPC information bits, CRC24A included), simulated with Sionna, in sionna.sys "
                    "PHYAbstraction's format (category 1 = PDSCH, table index 1 = TS 38.214 Table 5.1.3.1-1); "
                    "read by intelliflow.channels.link_adaptation",
        "_made": {
            "command": ("OMP_NUM_THREADS=1 python benchmarks/channels_bler_tables.py "
                        + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": {"sionna": sionna.__version__, "torch": torch.__version__},
            "seed": args.seed,
            "link": {"crc": "CRC24A", "cn_update": link.cn_update, "num_iter": link.num_iter,
                     "demapping": link.demapping, "tbs_padding": False,
                     "codeword_bits": "n = ceil(k / (R Q_m)) * Q_m, rate-matched by LDPC5GEncoder"},
            "method": f"batches until {args.min_errors} block errors or {args.max_blocks} blocks per point; "
                      f"{args.coarse} dB steps while every block fails, then {args.fine} dB until none does",
            "elapsed_s": round(elapsed, 1),
            "code_blocks_simulated": scanner.blocks_sent,
        },
        "category": {1: {"index": {1: {"MCS": table}}}},
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
