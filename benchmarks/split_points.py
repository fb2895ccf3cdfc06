"""The split point as an axis: bits at the targets and device FLOPs against k, for our codec and
the mse-codec trained at each split point, and the planner's choice among them.

Usage: python benchmarks/split_points.py [--codecs shapes-hyperprior-k0,...] [--images 1000]
                                         [--step 0.5] [--out benchmarks/results/split_points]

Every codec is a shipped checkpoint trained for one split point (``intelliflow train ... --set
model.split=K``); ``intelliflow eval`` loads the model at that split by itself. Each is evaluated on
the first ``--images`` of shapes:test over an ideal link in stream framing at q = 0, step, ..., 5
(plus the clean features once). Writes to ``--out``:

- ``<codec>/results.csv``, as ``intelliflow eval`` writes them (``intelliflow plan --results OUT``
  reads them all; ``--reuse`` reads them back instead of evaluating again);
- ``split_table.csv`` and ``summary.json``: per codec and split, bits to 95 % of the clean CIDEr-D
  and to 0.95 semantic accuracy, the device's FLOPs (head + codec encoder), and how many times
  fewer bits ours needs than the mse-codec at the same split (the target: at least 3x at k <= 2);
- ``split_points.png``: bits at the targets and device MFLOP against k;
- ``planner.csv``: what the planner picks (paradigm, split, rate point) and the fastest option at
  each split, for a phone and a wearable, over uplinks of 20 kbit/s to 10 Mbit/s.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODECS = ("shapes-hyperprior-k0,shapes-hyperprior-k2,shapes-hyperprior,"
          "shapes-mse-codec-k0,shapes-mse-codec-k2,shapes-mse-codec")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codecs", default=CODECS, help="comma-separated codec names (each trained for one split)")
    parser.add_argument("--baseline", default="shapes-mse-codec", help="the family ours is compared with")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--step", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/split_points"))
    parser.add_argument("--reuse", action="store_true",
                        help="read a codec's rows from OUT/<codec>/results.csv where an earlier run wrote them")
    args = parser.parse_args()

    from intelliflow.codec import resolve_codec
    from intelliflow.data.entropy import semantic_entropy_bits
    from intelliflow.evaluation.curves import format_split_table, plot_split_table, split_table
    from intelliflow.evaluation.results import load_results
    from intelliflow.evaluation.sweep import evaluate
    from intelliflow.flow.endpoints import trained_split
    from intelliflow.system.costs import codec_flops, model_costs
    from intelliflow.system.latency import PRESETS, WirelessLink
    from intelliflow.system.planner import Planner

    out = Path(args.out)
    names = [n.strip() for n in args.codecs.split(",") if n.strip()]
    common = dict(limit=args.images, meteor=False, batch_size=args.batch_size)
    def measured(name: str, **options) -> list[dict]:
        if args.reuse and (out / name / "results.csv").is_file():
            print(f"{name}: rows from {out / name / 'results.csv'}", flush=True)
            return load_results([out / name])
        return evaluate(codec=name, out=out / name, **options, **common)

    rows = measured("identity")
    for name in names:
        codec = resolve_codec(name)
        top = codec.rate_range()[1]
        grid = [round(i * args.step, 4) for i in range(int(round(top / args.step)) + 1)]
        print(f"{name}: trained for split {trained_split(codec)}", flush=True)
        rows += measured(name, rate_points=grid, framing="stream")

    splits = sorted({int(r["split"]) for r in rows if r.get("kind") != "identity"})
    costs = model_costs("shapes-captioner", splits)
    flops = {name: codec_flops(name) for name in names}
    floor = semantic_entropy_bits()
    table = split_table(rows, {k: c.device_flops for k, c in costs.items()}, flops, baseline=args.baseline)
    with open(out / "split_table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    plot_split_table(table, out / "split_points.png", floor_bits=floor,
                     title=f"shapes:test, {args.images} images, stream framing, ideal link")

    # the planner over all rows: which split (and paradigm) is fastest, per device and uplink rate
    planned = []
    for device in ("phone", "wearable"):
        planner = Planner(rows, costs, device=PRESETS[device], codec_flops=flops)
        for rate in (20e3, 100e3, 1e6, 10e6):
            plan = planner.plan(WirelessLink(bit_rate=rate))
            per_split = {}
            for o in plan.feasible:
                if o.candidate.paradigm == "device-edge":
                    per_split.setdefault(o.candidate.split, o)
            choice = plan.choice
            planned.append({"device": device, "uplink_bit_rate": rate,
                            "choice": choice.candidate.label if choice else None,
                            "choice_ms": round(choice.total, 3) if choice else None,
                            **{f"k{k}_best": f"{o.candidate.codec} q={o.candidate.rate_point:g}: {o.total:.3g} ms"
                               for k, o in sorted(per_split.items())}})
    with open(out / "planner.csv", "w", newline="") as f:
        fields = list(dict.fromkeys(k for p in planned for k in p))
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(planned)

    clean = next(r for r in rows if r.get("kind") == "identity")
    summary = {"images": args.images, "clean_CIDEr-D": clean["CIDEr-D"], "cider_target": 0.95 * clean["CIDEr-D"],
               "semantic_target": 0.95, "semantic_entropy_bits": floor, "baseline": args.baseline,
               "table": table, "planner": planned}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(format_split_table(table, floor_bits=floor))
    for p in planned:
        print(f"{p['device']} at {p['uplink_bit_rate'] / 1e3:g} kbit/s: {p['choice']} ({p['choice_ms']} ms)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
