"""Render speed of the shapes benchmark: the 1000-image test split on one core.

Usage: python benchmarks/shapes_render.py [--out benchmarks/results/shapes_render.json]
Target (issue 2): under 5 s for the whole test split on one core.
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch

from intelliflow.data.shapes import SPLIT_SIZES, make_sample


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/shapes_render.json")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    n = SPLIT_SIZES["test"]
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for i in range(n):
            make_sample("test", i)  # scene, image and five captions
        times.append(time.perf_counter() - start)
    result = {"split": "shapes:test", "images": n, "seconds_best": min(times), "seconds_all": times,
              "images_per_second": n / min(times), "target_seconds": 5.0, "met": min(times) < 5.0,
              "cores": 1}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
