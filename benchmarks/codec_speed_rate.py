"""Digital codec speed and rate accounting on the built-in captioner's real split features.

Usage: python benchmarks/codec_speed_rate.py [--out benchmarks/results/codec_speed_rate.json] [--images 200]

- Speed: encode and decode of one image's features (batch 1, one CPU thread), median of repeated
  runs, for a freshly initialised factorized codec and the shipped caption-trained hyperprior
  (``shapes-hyperprior``), on ``shapes-captioner`` features at its default split. Target: 5 ms each.
- Rate: real payload bits (``8 * len(bytes)``) against the likelihood estimate on ``shapes:test``
  features, per rate point. The fixed part of a payload is our 6-byte header plus CompressAI's
  rANS flush (a 64-bit state, of which up to about 32 bits carry data) and its 32-bit word
  alignment, so ``real - estimate - 48`` should lie in [32, 64] bits within 2 % of the estimate.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from intelliflow.codec import build_codec
from intelliflow.codec.persistence import load_codec
from intelliflow.codec.registry import checkpoint_folder
from intelliflow.data.datasets import open_dataset
from intelliflow.models import load_split_model, tokens_to_grid

HEADER_BITS = 48


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
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = load_split_model("shapes-captioner")
    dataset = open_dataset("shapes:test", limit=args.images)
    with torch.no_grad():
        tokens = model.head(model.preprocess([dataset[i].image for i in range(len(dataset))]))
    features, _ = tokens_to_grid(tokens, model.feature_grid)
    codecs = {"factorized (untrained)": build_codec({"name": "factorized", "in_channels": 192}).eval()}
    codecs["factorized (untrained)"].update()
    if checkpoint_folder("shapes-hyperprior"):
        codecs["shapes-hyperprior"] = load_codec(checkpoint_folder("shapes-hyperprior"))
    results = []
    for name, codec in codecs.items():
        x = features[:1]
        payload = codec.compress(x, q=2.5)
        row = {"codec": name, "feature_shape": list(features.shape[1:]), "threads": 1,
               "encode_ms": timed(lambda: codec.compress(x, q=2.5), args.repeats),
               "decode_ms": timed(lambda: codec.decompress(payload), args.repeats), "rate": []}
        for q in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0):
            real = torch.tensor([8.0 * len(p) for p in codec.compress(features, q=q)])
            estimate = codec.estimate_bits(features, q=q)
            excess = (real.mean() - estimate.mean() - HEADER_BITS).item()
            row["rate"].append({"q": q, "real_bits_mean": real.mean().item(),
                                "estimated_bits_mean": estimate.mean().item(),
                                "real_minus_estimate_minus_header": excess,
                                "within_fixed_part_and_2pct": 32 - 0.02 * estimate.mean().item() <= excess
                                <= 64 + 0.02 * estimate.mean().item()})
        results.append(row)
        print(json.dumps(row))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"target_ms": 5.0, "images": len(dataset), "header_bits": HEADER_BITS,
                                          "results": results}, indent=2))


if __name__ == "__main__":
    main()
