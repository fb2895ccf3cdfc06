"""Digital codec speed and rate accounting on the built-in captioner's feature shape.

Usage: python benchmarks/codec_speed_rate.py [--out benchmarks/results/codec_speed_rate.json]

Encode and decode of one image's features (batch 1, one CPU thread), median of repeated runs,
for the factorized and hyperprior codecs at their default size; and real payload bits against
the likelihood estimate. Target (codec issue): each at most 5 ms. The codecs here are freshly
initialised (their weights do not change the coding cost much); trained codecs replace them once
the end-to-end recipes have run.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from intelliflow.codec import build_codec


def timed(fn, repeats):
    for _ in range(5):
        fn()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1e3)
    return statistics.median(runs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/codec_speed_rate.json")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    features = torch.randn(16, 192, 8, 8)
    results = []
    for name in ("factorized", "hyperprior"):
        codec = build_codec({"name": name, "in_channels": 192}).eval()
        codec.update()
        x = features[:1]
        payload = codec.compress(x, q=2.5)
        row = {"codec": name, "feature_shape": [192, 8, 8], "threads": 1,
               "encode_ms": timed(lambda: codec.compress(x, q=2.5), args.repeats),
               "decode_ms": timed(lambda: codec.decompress(payload), args.repeats)}
        for q in (0.0, 2.5, 5.0):
            real = [8 * len(p) for p in codec.compress(features, q=q)]
            estimate = codec.estimate_bits(features, q=q).tolist()
            row[f"q{q}"] = {"real_bits_mean": sum(real) / len(real),
                            "estimated_bits_mean": sum(estimate) / len(estimate),
                            "fixed_bits": 8 * ((6 if name == "factorized" else 7) + 8 * codec.n_streams)}
        results.append(row)
        print(json.dumps(row))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"target_ms": 5.0, "results": results}, indent=2))


if __name__ == "__main__":
    main()
