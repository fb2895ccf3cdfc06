"""Entropy coders on real payloads: CompressAI's rANS against constriction's range coder.

Usage: python benchmarks/entropy_coders.py [--codec shapes-hyperprior] [--images 1000]
                                           [--rate-points 0,1,2,2.5,3,4,5]
                                           [--out benchmarks/results/entropy_coders.json]

The shipped captioner's split features of ``shapes:test`` go through the codec at each rate point,
and the same symbols under the same CompressAI tables are coded by each coder
(:mod:`intelliflow.codec.entropy_coding`), side by side in one run (the machine's speed drifts, so
only the ratio of times means anything). Per coder and rate point: the likelihood estimate of the
information (bits per image), the coded body (bits per image: no header, no check, the stream
mode's payload at a fixed rate point), the body's excess over the information, encode and decode
time per image (one thread, the whole codec: transforms, hyperprior and coder), and whether every
payload decodes to exactly the eval forward pass's features.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", default="shapes-hyperprior")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--rate-points", default="0,1,2,2.5,3,4,5")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/entropy_coders.json"))
    args = parser.parse_args()

    import torch
    from tqdm import tqdm

    from intelliflow.codec import resolve_codec
    from intelliflow.codec.entropy_coding import ENTROPY_CODERS, entropy_coder
    from intelliflow.data.datasets import open_dataset
    from intelliflow.models import load_split_model, tokens_to_grid

    torch.set_num_threads(1)
    model = load_split_model("shapes-captioner")
    base = resolve_codec(args.codec)
    data = open_dataset("shapes:test", limit=args.images)
    grids = []
    with torch.no_grad():
        for start in range(0, len(data), 100):
            images = [data[i].image for i in range(start, min(start + 100, len(data)))]
            grids.append(tokens_to_grid(model.head(model.preprocess(images)), model.feature_grid)[0].contiguous())
    grid = torch.cat(grids)
    coders = {}
    for name in ENTROPY_CODERS:
        coders[name] = copy.deepcopy(base)
        coders[name].coder = entropy_coder(name)
    rows = []
    points = [float(v) for v in args.rate_points.split(",")]
    for q in tqdm(points, desc="rate points"):
        stream = base.stream_context(base_grid := tuple(grid.shape[-2:]), q=q)
        estimate = base.estimate_bits(grid, q=q)
        with torch.no_grad():
            reference = torch.cat([base(grid[i:i + 1], q=q)["f_hat"] for i in range(len(grid))])
        for name, codec in coders.items():
            context = codec.stream_context(base_grid, q=q)
            check_bits = 16 if context.check else 0
            start = time.perf_counter()
            payloads = [codec.encode(grid[i:i + 1], stream=context)[0] for i in range(len(grid))]
            encode_s = time.perf_counter() - start
            start = time.perf_counter()
            decoded = torch.cat([codec.decode([p], stream=context) for p in payloads])
            decode_s = time.perf_counter() - start
            body = torch.tensor([8.0 * len(p) - check_bits for p in payloads])
            rows.append({"coder": name, "rate_point": q, "images": len(grid),
                         "information_bits": round(float(estimate.mean()), 2),
                         "body_bits": round(float(body.mean()), 2),
                         "excess_bits": round(float((body - estimate).mean()), 2),
                         "excess_bits_max": round(float((body - estimate).max()), 2),
                         "stream_payload_bits": round(float(body.mean()) + stream.overhead_bits, 2),
                         "file_payload_bits": round(float(body.mean()) + 48, 2),
                         "encode_ms": round(1e3 * encode_s / len(grid), 3),
                         "decode_ms": round(1e3 * decode_s / len(grid), 3),
                         "bit_exact": bool(torch.equal(decoded, reference))})
            print(json.dumps(rows[-1]))
    summary = {}
    for name in ENTROPY_CODERS:
        mine = [r for r in rows if r["coder"] == name]
        summary[name] = {"mean_excess_bits": round(sum(r["excess_bits"] for r in mine) / len(mine), 2),
                         "encode_ms": round(sum(r["encode_ms"] for r in mine) / len(mine), 3),
                         "decode_ms": round(sum(r["decode_ms"] for r in mine) / len(mine), 3),
                         "all_bit_exact": all(r["bit_exact"] for r in mine)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"codec": args.codec, "images": len(grid), "threads": 1, "summary": summary,
                               "rows": rows}, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
