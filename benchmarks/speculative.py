"""Speculative captioning across tiers (issue #14's targets), measured on ``shapes:test``.

The device drafts each caption with the shipped drafter while its head's features are coded; the
draft rides in front of the payload; the receiver verifies it in one pass of the tail over the
*decoded* features. At the codec's rate point that reaches 95 % of clean CIDEr-D:

1. **Acceptance and identity** (every image of the set): the captions through ``Flow`` with the
   drafter against plain greedy decoding of the same decoded features, token for token; draft
   tokens accepted; the draft part's bits against the payload's; the early answer (drafts shown
   at once above the confidence threshold) and how often it was already right; the device's
   stages at batch 1 (head, drafting: the early answer's wait; codec encoding).
2. **Receiver tail time** per caption, plain greedy (``tail_generate``) against verification
   (``tail_verify``) on the same decoded features and drafts, at batch 1 and in batches,
   interleaved image by image (ratios within one run: the machine's speed drifts).
3. **Edge throughput** under ``--clients`` concurrent clients: ``intelliflow serve --draft`` in
   its own process, pre-encoded ``.iflow`` files with and without drafts, alternating rounds of
   ``--seconds`` each; every answer is checked against the plain caption.

Run: ``python benchmarks/speculative.py`` (about 15 minutes on 2 cores); writes
``benchmarks/results/speculative/report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def acceptance_and_identity(model, codec, drafter, images, q: float, batch_size: int, threshold: float) -> dict:
    """Part 1 (see the module docstring), and the decoded features and drafts part 2 times."""
    import torch
    from tqdm import tqdm

    from intelliflow.flow import Flow

    plain, drafted = Flow(model, codec).eval(), Flow(model, codec, drafter=drafter).eval()
    stream = drafted.stream_context(q)
    rows, identical, features, drafts = [], 0, [], []
    for i in tqdm(range(0, len(images), batch_size), desc="draft + verify", unit="batch", file=sys.stderr):
        batch = images[i:i + batch_size]
        a, b = plain.caption(batch, q=q), drafted.caption(batch, q=q)
        identical += sum(x == y for x, y in zip(a.captions, b.captions))
        d = b.draft
        for j in range(len(batch)):
            rows.append({"bits": b.payload_bits[j], "plain_bits": a.payload_bits[j], "draft_bits": d.bits[j],
                         "drafted": d.drafted[j], "accepted": d.accepted[j], "passes": d.passes[j],
                         "greedy_passes": d.greedy_passes[j], "confidence": d.confidence[j],
                         "draft_right": d.captions[j] == b.captions[j], "caption": b.captions[j], "draft": d.captions[j]})
        with torch.no_grad():   # what the receiver decodes, for the timing of part 2
            sent = drafted.device_side.encode(batch, stream=stream, q=q)
            decoded = drafted.receiver_side.decode(sent.data, stream=stream)
        features.append(decoded.features)
        drafts += decoded.drafts
    n = len(rows)
    mean = (lambda key: sum(r[key] for r in rows) / n)
    early = [r for r in rows if r["confidence"] >= threshold]
    return {
        "images": n, "rate_point": q, "identical_captions": identical, "captions_identical_on_every_image": identical == n,
        "draft_acceptance": sum(r["accepted"] for r in rows) / sum(r["drafted"] for r in rows),
        "accepted_tokens_per_caption": mean("accepted"), "draft_tokens_per_caption": mean("drafted"),
        "exact_drafts": mean("draft_right"),
        "receiver_passes": mean("passes"), "greedy_passes": mean("greedy_passes"),
        "payload_bits_plain": mean("plain_bits"), "draft_information_bits": mean("draft_bits"),
        "payload_bits_with_draft": mean("bits"),
        "draft_share_of_payload": (mean("bits") - mean("plain_bits")) / mean("plain_bits"),
        "early_threshold": threshold, "early_share": len(early) / n,
        "early_right": sum(r["draft_right"] for r in early) / len(early) if early else None,
    }, torch.cat(features), drafts


def receiver_timing(model, features, drafts, single: int, batch_size: int) -> dict:
    """Part 2: plain greedy against verification on the same decoded features, interleaved."""
    import torch

    def timed(fn):
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    with torch.no_grad():
        model.tail_verify(features[:2], drafts[:2])     # warm-up
        model.tail_generate(features[:2])
        plain, verified = [], []
        for i in range(single):   # batch 1, alternating which goes first
            f, d = features[i:i + 1], drafts[i:i + 1]
            pair = [timed(lambda: model.tail_generate(f)), timed(lambda: model.tail_verify(f, d))] if i % 2 else \
                list(reversed([timed(lambda: model.tail_verify(f, d)), timed(lambda: model.tail_generate(f))]))
            plain.append(pair[0])
            verified.append(pair[1])
        plain_b, verified_b = [], []
        for i in range(0, len(features), batch_size):
            f, d = features[i:i + batch_size], drafts[i:i + batch_size]
            plain_b.append(timed(lambda: model.tail_generate(f)) / len(f))
            verified_b.append(timed(lambda: model.tail_verify(f, d)) / len(f))
    return {"batch1_images": single,
            "batch1_plain_ms": 1e3 * statistics.median(plain), "batch1_verify_ms": 1e3 * statistics.median(verified),
            "batch1_speedup_median": statistics.median(p / v for p, v in zip(plain, verified)),
            "batch1_speedup_of_means": sum(plain) / sum(verified),
            "batch_size": batch_size, "batched_plain_ms_per_caption": 1e3 * statistics.mean(plain_b),
            "batched_verify_ms_per_caption": 1e3 * statistics.mean(verified_b),
            "batched_speedup": sum(plain_b) / sum(verified_b)}


def device_timing(model, codec, drafter, images, q: float) -> dict:
    """The device's stages at batch 1 (median ms): head, drafting (the early answer is ready after
    head + drafting), codec encoding; the early answer's wait against the payload's."""
    import torch

    from intelliflow.flow import Device

    device = Device(model, codec, drafter)
    stream = codec.stream_for(model.feature_grid, q=q)
    head, draft, encode = [], [], []
    with torch.no_grad():
        for image in images:
            t0 = time.perf_counter()
            x, prefix = device.codec_input([image])
            t1 = time.perf_counter()
            d = device.draft(x, prefix)
            t2 = time.perf_counter()
            device.encode_input(x, prefix, stream=stream, draft=d, q=q)
            t3 = time.perf_counter()
            head.append(t1 - t0)
            draft.append(t2 - t1)
            encode.append(t3 - t2)
    ms = (lambda values: 1e3 * statistics.median(values))
    return {"images": len(images), "head_ms": ms(head), "draft_ms": ms(draft), "encode_ms": ms(encode),
            "early_answer_ms": ms([a + b for a, b in zip(head, draft)])}


def edge_throughput(model_name: str, codec_name: str, drafter_name: str, images, q: float, clients: int,
                    seconds: float, rounds: int, threads: int) -> dict:
    """Part 3: one service (``--draft``), clients alternating between plain and drafted files."""
    from intelliflow.deploy.client import EdgeClient, SplitDevice
    from intelliflow.errors import ServiceError

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    server = subprocess.Popen([sys.executable, "-m", "intelliflow.recipes.cli", "serve", "--model", model_name,
                               "--codec", codec_name, "--draft", drafter_name, "--port", str(port),
                               "--max-batch", "64", "--threads", str(threads)], env=env, stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        plain_device = SplitDevice(model_name, codec_name, url, stream=False, compress_options={"q": q})
        draft_device = SplitDevice(model_name, codec_name, url, stream=False, compress_options={"q": q},
                                   drafter=drafter_name)
        files = {"plain": [plain_device.encode(image)[0] for image in images[:clients]],
                 "drafted": [draft_device.encode(image)[0] for image in images[:clients]]}
        plain_device.client.wait_ready(timeout=120)
        expected = [plain_device.client.caption(f)["caption"] for f in files["plain"]]
        measured: dict[str, list] = {"plain": [], "drafted": []}
        failures: list[str] = []
        for r in range(2 * rounds):
            kind = ("plain", "drafted")[r % 2] if (r // 2) % 2 == 0 else ("drafted", "plain")[r % 2]
            counts, wrong = [0] * clients, [0]
            gate, stop_at = threading.Barrier(clients + 1), [0.0]

            def client(i: int) -> None:
                c = EdgeClient(url, timeout=120)
                gate.wait()
                while time.perf_counter() < stop_at[0]:
                    try:
                        answer = c.caption(files[kind][i])
                    except ServiceError as exc:
                        failures.append(f"{kind} client {i}: {exc}")
                        continue
                    counts[i] += 1
                    wrong[0] += answer["caption"] != expected[i]

            workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
            for w in workers:
                w.start()
            stop_at[0] = time.perf_counter() + seconds
            gate.wait()
            began = time.perf_counter()
            for w in workers:
                w.join(timeout=seconds + 120)
            measured[kind].append({"requests": sum(counts), "seconds": time.perf_counter() - began, "wrong": wrong[0]})
    finally:
        server.terminate()
        server.wait(timeout=30)
    rate = {k: sum(m["requests"] for m in v) / sum(m["seconds"] for m in v) for k, v in measured.items()}
    return {"clients": clients, "rounds_each": rounds, "seconds_per_round": seconds, "service_threads": threads,
            "plain_per_s": rate["plain"], "drafted_per_s": rate["drafted"],
            "throughput_ratio": rate["drafted"] / rate["plain"],
            "wrong_captions": sum(m["wrong"] for v in measured.values() for m in v), "failed": len(failures),
            "first_failures": failures[:3], "rounds": measured}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--q", type=float, default=1.0,
                        help="rate point (default 1.0: the first of the shipped codec's grid to reach 95 %% of clean "
                             "CIDEr-D on shapes:test, benchmarks/results/split_points)")
    parser.add_argument("--model", default="shapes-captioner")
    parser.add_argument("--codec", default="shapes-hyperprior")
    parser.add_argument("--drafter", default="shapes-drafter")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--early-threshold", type=float, default=0.9)
    parser.add_argument("--timing-images", type=int, default=300, help="images timed one at a time (part 2)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of one throughput round (part 3)")
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds of each kind, alternating")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (here and in the service)")
    parser.add_argument("--skip-service", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/speculative"))
    args = parser.parse_args()

    import torch

    from intelliflow.codec import resolve_codec
    from intelliflow.data.shapes import ShapesDataset
    from intelliflow.models import load_split_model
    from intelliflow.models.drafter import load_drafter

    torch.set_num_threads(args.threads)
    codec, drafter = resolve_codec(args.codec), load_drafter(args.drafter)
    model = load_split_model(args.model, split=drafter.config.split).eval()
    images = [s.image for s in ShapesDataset("test", limit=args.images)]
    report = {"model": args.model, "codec": args.codec, "drafter": args.drafter, "dataset": "shapes:test",
              "drafter_parameters": sum(p.numel() for p in drafter.parameters()),
              "model_parameters": sum(p.numel() for p in model.parameters())}
    part1, features, drafts = acceptance_and_identity(model, codec, drafter, images, args.q, args.batch_size,
                                                      args.early_threshold)
    report["acceptance"] = part1
    print(json.dumps(part1, indent=1), file=sys.stderr)
    report["receiver_tail"] = receiver_timing(model, features, drafts, min(args.timing_images, len(images)),
                                              args.batch_size)
    print(json.dumps(report["receiver_tail"], indent=1), file=sys.stderr)
    report["device"] = device_timing(model, codec, drafter, images[:min(100, len(images))], args.q)
    print(json.dumps(report["device"], indent=1), file=sys.stderr)
    if not args.skip_service:
        report["edge_service"] = edge_throughput(args.model, args.codec, args.drafter, images, args.q, args.clients,
                                                 args.seconds, args.rounds, args.threads)
        print(json.dumps({k: v for k, v in report["edge_service"].items() if k != "rounds"}, indent=1), file=sys.stderr)
    targets = {"acceptance >= 0.85": part1["draft_acceptance"] >= 0.85,
               "identical captions on every image": part1["captions_identical_on_every_image"],
               "receiver tail >= 2x faster (batch 1)": report["receiver_tail"]["batch1_speedup_of_means"] >= 2,
               "draft <= 40 % of the payload's bits": part1["draft_share_of_payload"] <= 0.40}
    if "edge_service" in report:
        targets["edge throughput >= 1.5x (50 clients)"] = report["edge_service"]["throughput_ratio"] >= 1.5
    report["targets"] = targets
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    for name, ok in targets.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    print(f"wrote {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
