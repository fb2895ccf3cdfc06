"""``intelliflow latency --measure``: time every stage for real on this machine, beside the model.

Each stage runs on ``shapes:val`` images one at a time (batch 1, after a warm-up); the median is
reported. The model's figure for this machine uses one effective throughput, calibrated on the
whole unsplit model (its FLOPs over its measured time), so the per-stage comparison shows where
a FLOP count alone mispredicts (small layers, entropy coding, Python overhead).
"""

from __future__ import annotations

import statistics
import time

import torch


def median_ms(fn, inputs, warmup: int = 2) -> float:
    """Median wall time in ms of ``fn(x)`` over ``inputs``, after ``warmup`` untimed calls."""
    for x in inputs[:warmup]:
        fn(x)
    times = []
    for x in inputs:
        start = time.perf_counter()
        fn(x)
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


@torch.no_grad()
def measure_stages(model_name: str, planner, plan, images: int = 20) -> dict:
    """Measured ms per stage of the plan's best split and upload operating points on this machine,
    with the latency model's prediction at this machine's calibrated FLOP/s. ``times_ms`` holds
    the same times by key: ``full``, ``head``, ``tail`` and, where the plan has them, ``encode``,
    ``decode`` (our codec), ``image_encode``, ``image_decode`` (the upload)."""
    from intelliflow.codec import resolve_codec
    from intelliflow.data.shapes import make_sample
    from intelliflow.flow import Device, Receiver
    from intelliflow.models import load_split_model

    best = plan.best_per_paradigm()
    split_option = best.get("device-edge")
    split = split_option.candidate.split if split_option else planner.default_split
    model = load_split_model(model_name, split=split).eval()
    cost = planner.costs[split]
    pictures = [make_sample("val", i).image for i in range(max(3, images))]
    pixels = [model.preprocess([p]) for p in pictures]
    features = [model.head(x) for x in pixels]

    t = {"full": median_ms(lambda x: model.full_generate(x), pixels),
         "head": median_ms(lambda x: model.head(x), pixels)}
    speed = (cost.device_flops + cost.server_flops) / (t["full"] / 1e3)
    stages = [("device-only: whole model", cost.device_flops + cost.server_flops, "full"),
              ("device: head", cost.device_flops, "head"), ("edge: tail", cost.server_flops, "tail")]
    received = features
    if split_option is not None and split_option.candidate.channel_uses is None:
        c = split_option.candidate
        codec = resolve_codec(c.codec)
        device, receiver = Device(model, codec), Receiver(model, codec)
        options = {"q": c.rate_point} if c.rate_point is not None else {}
        inputs = [device.codec_input(p) for p in ([x] for x in pictures)]
        payloads = [device.encode_input(x, prefix, **options).data for x, prefix in inputs]
        received = [receiver.decode(p) for p in payloads]  # the tail's real input
        t["encode"] = median_ms(lambda xp: device.encode_input(*xp, **options), inputs)
        t["decode"] = median_ms(lambda p: receiver.decode(p), payloads)
        flops = planner.codec_flops.get(c.codec, 0.0)
        stages += [(f"encode: {c.codec}", flops, "encode"), (f"decode: {c.codec}", flops, "decode")]
    # the caption's length (generation steps) follows the features the edge receives
    t["tail"] = median_ms(lambda f: model.tail_generate(f), received)
    upload = best.get("cloud-only")
    if upload is not None:
        image_codec = resolve_codec(upload.candidate.codec)
        uploads = [image_codec.encode([p]) for p in pictures]
        t["image_encode"] = median_ms(lambda p: image_codec.encode([p]), pictures)
        t["image_decode"] = median_ms(lambda b: image_codec.decode(b), uploads)
        stages += [(f"device: {upload.candidate.codec} compress", 0.0, "image_encode"),
                   (f"cloud: {upload.candidate.codec} decompress", 0.0, "image_decode")]
    rows = [{"stage": name, "flops": flops, "measured_ms": t[key], "predicted_ms": 1e3 * flops / speed,
             "ratio": (1e3 * flops / speed) / t[key] if t[key] > 0 else None} for name, flops, key in stages]
    return {"this_machine_flops_per_s": speed, "threads": torch.get_num_threads(), "images": len(pictures),
            "stages": rows, "times_ms": t}
