"""Feature codecs at the sizes real models produce: time, bits and memory per image.

Usage: python benchmarks/codec_real_sizes.py [--out benchmarks/results/codec_real_sizes.json]

Feature sizes (tokens x width; the grid the codec sees):

- ``577x768``: BLIP-base / ViT-B/16 at 384 px (a CLS token + a 24 x 24 grid of 768);
- ``577x1024``: BLIP-large (24 x 24 of 1024);
- ``729x1152``: LLaVA-OneVision's SigLIP-so400m (a 27 x 27 grid of 1152, padded inside the codec);
- ``32x768``: BLIP-2's Q-Former queries, laid out as a 4 x 8 grid of 768 (token codecs are the
  multimodal-model issue's).

Codecs: the hyperprior with the shipped ``shapes-hyperprior``'s widths (hidden 192, latent 32,
hyper 32, one stride-2 stage) on the wide input, and the same with ``reduce_channels`` (a 1x1
layer to that width before the 3x3 stages and back after them). Per size and codec, each in its
own process (so peak memory is its own): encode and decode of one image (batch 1, one CPU thread,
median of repeats), one training step per image (batch 2: forward, backward, Adam), payload bits
(random initialisation on random features: the rate of an untrained codec, for the accounting
only), and the process's peak resident memory above its state after building the codec. On a
machine with CUDA the GPU times are added. Beside them, in the same run, BLIP-large's head at its
default split (the middle of the vision tower) on one 384 x 384 image, one thread: its weights are
random (nothing is downloaded) and its text decoder is tiny, which the head does not touch.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"577x768": (24, 24, 768), "577x1024": (24, 24, 1024), "729x1152": (27, 27, 1152), "32x768": (4, 8, 768)}
SHIPPED_WIDTHS = {"hidden_channels": 192, "latent_channels": 32, "hyper_channels": 32, "downsample": 1,
                  "rate_points": 6}


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def measure_one(size: str, reduce: int, repeats: int) -> dict:
    """One size and codec, in this process (``--one``)."""
    import torch

    from intelliflow.codec import build_codec

    torch.set_num_threads(1)
    torch.manual_seed(0)
    h, w, width = SIZES[size]
    codec = build_codec({"name": "hyperprior", "in_channels": width, "reduce_channels": reduce, **SHIPPED_WIDTHS})
    codec.eval().update()
    features = torch.randn(2, width, h, w)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    one = features[:1]
    payloads = codec.compress(one, q=2)
    out = {"size": size, "grid": [h, w], "width": width, "reduce_channels": reduce,
           "parameters": sum(p.numel() for p in codec.parameters()),
           "payload_bits_untrained": 8 * len(payloads[0])}
    with torch.no_grad():
        out["encode_ms"] = median_ms(lambda: codec.compress(one, q=2), repeats)
        out["decode_ms"] = median_ms(lambda: codec.decompress(payloads, expected=(width, h, w)), repeats)
        assert torch.equal(codec.decompress(payloads), codec(one, q=2)["f_hat"])   # bit-exact, padded or not
    codec.train()
    optimizer = torch.optim.Adam(codec.parameters(), lr=1e-4)

    def step():
        coded = codec.train_pass(features, q=torch.tensor([1.0, 3.0]))
        loss = (coded["f_hat"] - features).pow(2).mean() + 1e-4 * coded["bits"].mean() + coded["aux_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    out["train_step_ms_per_image"] = median_ms(step, max(2, repeats // 4)) / features.shape[0]
    out["peak_rss_rise_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024
    if torch.cuda.is_available():
        codec_gpu = codec.cuda().eval()
        codec_gpu.update()
        x = one.cuda()

        def synced(fn):
            def run():
                fn()
                torch.cuda.synchronize()
            return run

        with torch.no_grad():
            out["gpu_encode_ms"] = median_ms(synced(lambda: codec_gpu.compress(x, q=2)), repeats)
            gpu_payloads = codec_gpu.compress(x, q=2)
            out["gpu_decode_ms"] = median_ms(synced(lambda: codec_gpu.decompress(gpu_payloads)), repeats)
    return out


def blip_large_head_ms(repeats: int) -> dict:
    """BLIP-large's head at its default split on one image, one thread (random weights)."""
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration

    from intelliflow.data.captions import vocabulary
    from intelliflow.models.captioner import build_tokenizer
    from intelliflow.models.hf_adapters import BlipSplit

    torch.set_num_threads(1)
    torch.manual_seed(0)
    tokenizer = build_tokenizer(vocabulary())
    config = BlipConfig(  # Salesforce/blip-image-captioning-large's vision tower; a tiny text side
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=384, patch_size=16),
        text_config=dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, encoder_hidden_size=1024, bos_token_id=1, sep_token_id=2,
                         eos_token_id=2, pad_token_id=0))
    model = BlipSplit(BlipForConditionalGeneration(config).eval(), tokenizer)
    pixels = torch.randn(1, 3, 384, 384)
    with torch.no_grad():
        features = model.head(pixels)
        ms = median_ms(lambda: model.head(pixels), repeats)
    return {"split": model.split, "layers": len(model._tower.layers), "features": list(features.shape), "head_ms": ms}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/codec_real_sizes.json"))
    parser.add_argument("--reduce", type=int, default=128, help="reduce_channels of the reduced codec")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--one", nargs=2, metavar=("SIZE", "REDUCE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one[0], int(args.one[1]), args.repeats)))
        return 0
    from tqdm import tqdm

    rows = []
    jobs = [(size, reduce) for size in SIZES for reduce in (0, args.reduce)]
    for size, reduce in tqdm(jobs, desc="codecs", unit="config", file=sys.stderr):
        run = subprocess.run([sys.executable, __file__, "--one", size, str(reduce), "--repeats", str(args.repeats)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
    head = blip_large_head_ms(max(2, args.repeats // 5))
    report = {"threads": 1, "codec_widths": SHIPPED_WIDTHS, "reduce_channels": args.reduce, "rows": rows,
              "blip_large_head": head, "target_ms": 30.0}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"{'size':<10} {'reduce':>6} {'params':>9} {'encode ms':>10} {'decode ms':>10} {'train ms/img':>12} "
          f"{'bits':>7} {'peak MB':>8}")
    for r in rows:
        print(f"{r['size']:<10} {r['reduce_channels']:>6} {r['parameters']:>9} {r['encode_ms']:>10.1f} "
              f"{r['decode_ms']:>10.1f} {r['train_step_ms_per_image']:>12.1f} {r['payload_bits_untrained']:>7} "
              f"{r['peak_rss_rise_mb']:>8.1f}")
    print(f"BLIP-large head (split {head['split']} of {head['layers']}, one 384 px image, one thread): "
          f"{head['head_ms']:.0f} ms; wrote {out}")
    target = [r for r in rows if r["size"] == "577x1024" and r["reduce_channels"]]
    met = all(r["encode_ms"] <= 30 and r["decode_ms"] <= 30 for r in target)
    print(("PASS" if met else "FAIL") + ": 577x1024 with the reduction, encode and decode each at most 30 ms")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
