"""A variable-rate codec's curve on shapes:test, rate point by rate point: bits at the targets, and
whether bits and quality rise with q.

Usage: python benchmarks/codec_rate_points.py [--codec shapes-hyperprior] [--images 1000]
                                              [--step 0.25] [--file-step 0.5]
                                              [--out benchmarks/results/codec_rate_points]

Runs ``intelliflow.evaluation.sweep.evaluate`` on the first ``--images`` of shapes:test over an
ideal link: the clean features (``identity``) once, then the codec at q = 0, step, ..., its top
point, in stream framing (what a stream sends per image: the body, every bit of it counted) and,
every ``--file-step``, what a self-contained payload (an ``.iflow`` file's codec part: 4-byte header
and CRC-16) costs, measured too. Writes ``results.csv`` per framing and ``summary.json``:

- ``bits_to_cider_target`` / ``bits_to_semantic_target``: the fewest stream bits that reach 95 %
  of the clean CIDEr-D and 0.95 semantic accuracy (log-linear between points, as ``intelliflow
  curve`` computes them), their ratio to the 15.609-bit semantic entropy, and the same for files;
- ``bits_non_decreasing`` and ``quality_non_decreasing`` (CIDEr-D may dip by at most 0.02 from
  the best of the lower points), with the points that break them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", default="shapes-hyperprior")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--step", type=float, default=0.25)
    parser.add_argument("--file-step", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/codec_rate_points"))
    args = parser.parse_args()

    from intelliflow.codec import resolve_codec
    from intelliflow.data.entropy import semantic_entropy_bits
    from intelliflow.evaluation.curves import bits_to_reach, rate_curve
    from intelliflow.evaluation.sweep import evaluate

    out = Path(args.out)
    top = resolve_codec(args.codec).rate_range()[1]
    grid = lambda step: [round(i * step, 4) for i in range(int(round(top / step)) + 1)]  # noqa: E731
    common = dict(limit=args.images, meteor=False, batch_size=args.batch_size)
    clean = evaluate(codec="identity", out=out / "identity", **common)[0]
    rows = {framing: evaluate(codec=args.codec, rate_points=grid(step), framing=framing, out=out / framing, **common)
            for framing, step in (("stream", args.step), ("file", args.file_step))}
    floor = semantic_entropy_bits()
    target = 0.95 * clean["CIDEr-D"]
    summary = {"codec": args.codec, "images": args.images, "clean_CIDEr-D": clean["CIDEr-D"],
               "clean_semantic_accuracy": clean["semantic_accuracy"], "cider_target": target,
               "semantic_target": 0.95, "semantic_entropy_bits": floor}
    for framing, framed in rows.items():
        cider = rate_curve(framed, args.codec)
        semantic = rate_curve(framed, args.codec, metric="semantic_accuracy")
        at_cider, at_semantic = bits_to_reach(cider, target), bits_to_reach(semantic, 0.95)
        summary[framing] = {
            "bits_to_cider_target": at_cider, "bits_to_semantic_target": at_semantic,
            "x_floor_cider": at_cider / floor if at_cider else None,
            "x_floor_semantic": at_semantic / floor if at_semantic else None,
            "points": [{k: r[k] for k in ("rate_point", "payload_bits", "CIDEr-D", "semantic_accuracy")}
                       for r in framed]}
    by_q = sorted(rows["stream"], key=lambda r: r["rate_point"])
    bits_breaks = [(a["rate_point"], b["rate_point"]) for a, b in zip(by_q, by_q[1:])
                   if b["payload_bits"] < a["payload_bits"]]
    quality_breaks, best = [], -1.0
    for r in by_q:
        if r["CIDEr-D"] < best - 0.02:
            quality_breaks.append((r["rate_point"], round(best - r["CIDEr-D"], 4)))
        best = max(best, r["CIDEr-D"])
    summary.update({"bits_non_decreasing": not bits_breaks, "bits_breaks": bits_breaks,
                    "quality_non_decreasing": not quality_breaks, "quality_breaks": quality_breaks})
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    for framing in ("stream", "file"):
        s = summary[framing]
        print(f"{framing}: {s['bits_to_cider_target']} bits to 95 % CIDEr-D ({target:.3f}), "
              f"{s['bits_to_semantic_target']} bits to 0.95 semantic accuracy (floor {floor:.1f} bits)")
    print(f"bits non-decreasing in q: {summary['bits_non_decreasing']} {bits_breaks}; quality non-decreasing "
          f"(0.02): {summary['quality_non_decreasing']} {quality_breaks}")
    print(f"wrote {out / 'summary.json'}")


if __name__ == "__main__":
    main()
