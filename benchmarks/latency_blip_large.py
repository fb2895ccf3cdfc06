"""Scenario (b): a BLIP-large-sized captioner on a phone, an edge GPU and a cloud GPU.

- FLOPs and parameters are counted on BLIP-large's architecture built from its published
  configuration (``Salesforce/blip-image-captioning-large``: ViT-L/16 at 384x384, 24 layers of
  width 1024; a 12-layer BERT-base text decoder with cross-attention) on PyTorch's ``meta``
  device: no weights, no memory. The text side is priced teacher-forced over ``--caption-tokens``
  tokens (generation with a KV cache does about the same work).
- The upload's size is measured: scikit-image's real photos (astronaut, chelsea, coffee, rocket)
  resized to the model's 384x384 input and JPEG-compressed by Pillow (quality 75; 50 and 90 are
  reported too).
- Our payload is an ESTIMATE: the shipped hyperprior's measured bits per feature token on
  ``shapes`` (its operating point at 95 % of clean CIDEr-D, headers included) times BLIP-large's
  577 feature tokens. No BLIP-large codec has been trained; the label says so everywhere.
- The codec's encoder and decoder are priced on our hyperprior's architecture (the shipped
  settings) widened to BLIP-large's 1024 channels on its 24x24 grid (FLOPs counted).
- Nodes are the presets of ``intelliflow.system.latency`` (phone, edge-gpu, cloud-gpu, each with
  its stated assumption); the uplink is a fixed 10 Mbit/s (``--uplink-mbit``) with ``--radio-rtt-ms``
  of air-interface round trip, the backhaul the default (1 Gbit/s, 20 ms round trip, paid once
  per answer: the image goes up and the caption comes back).

- Speculative captioning (``device-edge-draft``) is priced with ASSUMPTIONS, stated in the report:
  a drafter of our architecture for BLIP-large (a GRU 256 wide, its 30,524-token vocabulary;
  FLOPs counted on the meta device), ``--acceptance`` of the draft tokens kept (shapes measures
  0.976 on the shipped drafter), the edge's passes ``2 + (1 - acceptance) x caption tokens``, and
  ``--draft-bits-per-token`` for the draft in the payload (shapes: 1.5; free-form captions need
  more). Each node's least time per decoder pass is its preset's ``pass_ms``.

The planner chooses the split point (0..24 vision layers on the phone) per paradigm.

Run: ``python benchmarks/latency_blip_large.py`` (about 20 s); writes
``benchmarks/results/latency_blip_large/{report.json, paradigms.csv, latency.png}``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def blip_large_costs(caption_tokens: int = 20) -> tuple[dict, int]:
    """({split: SplitCost}, feature tokens) of BLIP-large, counted on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import BlipConfig, BlipForConditionalGeneration

    from intelliflow.models.costs import SplitCost

    config = BlipConfig(  # Salesforce/blip-image-captioning-large, config.json
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=384, patch_size=16),
        text_config=dict(vocab_size=30524, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, encoder_hidden_size=1024))
    with torch.device("meta"):
        model = BlipForConditionalGeneration(config).eval()
    vision = model.vision_model

    def counted(fn):
        with FlopCounterMode(display=False) as counter:
            out = fn()
        return out, float(counter.get_total_flops())

    def params(*modules):
        return float(sum(p.numel() for m in modules for p in m.parameters()))

    with torch.no_grad():
        pixels = torch.zeros(1, 3, 384, 384, device="meta")
        hidden, embed_flops = counted(lambda: vision.embeddings(pixels))
        layer_flops = []
        for layer in vision.encoder.layers:
            out, flops = counted(lambda layer=layer: layer(hidden, attention_mask=None))
            hidden = out[0] if isinstance(out, tuple) else out
            layer_flops.append(flops)
        states, post_flops = counted(lambda: vision.post_layernorm(hidden))
        ids = torch.zeros(1, caption_tokens, dtype=torch.long, device="meta")
        _, text_flops = counted(lambda: model.text_decoder(input_ids=ids, encoder_hidden_states=states))
    total_params = params(model)
    costs = {}
    for k in range(len(layer_flops) + 1):
        head = embed_flops + sum(layer_flops[:k])
        head_params = params(vision.embeddings, *vision.encoder.layers[:k])
        costs[k] = SplitCost(k, device_params=head_params, server_params=total_params - head_params,
                             device_flops=head, server_flops=sum(layer_flops[k:]) + post_flops + text_flops)
    return costs, int(hidden.shape[1])


def drafter_flops_per_token(feature_tokens: int, caption_tokens: int = 20) -> float:
    """FLOPs per token of a drafter of our architecture for BLIP-large (teacher-forced over
    ``caption_tokens``, cross-attending to its ``feature_tokens`` 1024-wide features), on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from intelliflow.models.drafter import Drafter, DrafterConfig

    with torch.device("meta"):
        drafter = Drafter(DrafterConfig("blip-large", 24, 1024, 30524, [30522], 102, 0, caption_tokens,
                                        width=256, layers=1)).eval()
        features = torch.zeros(1, feature_tokens, 1024)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        drafter.loss(features, [[5] * caption_tokens])
    return counter.get_total_flops() / caption_tokens


def hyperprior_flops(width: int, side: int) -> float:
    """FLOPs of one side of our hyperprior's architecture (the shipped one's settings) on a
    ``side`` x ``side`` grid of ``width``-wide features: half its forward pass, untrained weights."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from intelliflow.codec.persistence import codec_info
    from intelliflow.codec.registry import checkpoint_folder
    from intelliflow.codec.registry import build_codec

    params = dict(codec_info(checkpoint_folder("shapes-hyperprior"))["params"], in_channels=width)
    codec = build_codec({"name": "hyperprior", **params}).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        codec(torch.zeros(1, width, side, side))
    return counter.get_total_flops() / 2


def photo_jpeg_bits(side: int = 384, qualities=(50, 75, 90)) -> dict:
    """{quality: [bits per photo]} of scikit-image's photos at the model's input size."""
    import skimage.data
    from PIL import Image

    sizes = {q: [] for q in qualities}
    for name in PHOTOS:
        image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((side, side), Image.BICUBIC)
        for q in qualities:
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=q)
            sizes[q].append(8 * buffer.tell())
    return sizes


def ours_bits_per_token(results: Path, quality: float) -> tuple[float, float, str]:
    """(bits per feature token, bits per image, method) of our codec at the quality floor on shapes."""
    from intelliflow.evaluation.results import load_results
    from intelliflow.system.latency import WirelessLink
    from intelliflow.system.planner import Planner
    from intelliflow.system.costs import model_costs

    rows = load_results([results])
    costs = model_costs("shapes-captioner", [4])
    plan = Planner(rows, costs, quality=quality).plan(WirelessLink(bit_rate=10e6))
    split = plan.best_per_paradigm()["device-edge"].candidate
    from intelliflow.models import load_split_model

    model = load_split_model("shapes-captioner", split=split.split)
    h, w = model.feature_grid
    tokens = h * w + model.prefix_tokens
    return split.payload_bits / tokens, split.payload_bits, split.label


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results/end_to_end"),
                        help="shapes rate-quality results (for our codec's bits per token)")
    parser.add_argument("--uplink-mbit", type=float, default=10.0)
    parser.add_argument("--radio-rtt-ms", type=float, default=0.0, help="air-interface round trip per request")
    parser.add_argument("--jpeg-quality", type=int, default=75)
    parser.add_argument("--caption-tokens", type=int, default=20)
    parser.add_argument("--quality", type=float, default=0.95)
    parser.add_argument("--acceptance", type=float, default=0.9,
                        help="ASSUMED share of draft tokens the edge keeps (shapes measures 0.976)")
    parser.add_argument("--draft-bits-per-token", type=float, default=8.0,
                        help="ASSUMED bits per draft token in the payload (shapes: 1.5, templated captions)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/latency_blip_large"))
    args = parser.parse_args()

    from intelliflow.system.latency import (PRESETS, STAGES, WirelessLink, breakdown, crossover_bandwidth,
                                          crossover_device_speed, early_answer_ms, plot_latency)
    from intelliflow.system.planner import Candidate, Planner

    costs, tokens = blip_large_costs(args.caption_tokens)
    jpeg = photo_jpeg_bits()
    image_bits = statistics.median(jpeg[args.jpeg_quality])
    per_token, shapes_bits, shapes_point = ours_bits_per_token(Path(args.results), args.quality)
    payload = per_token * tokens
    codec = hyperprior_flops(1024, int(round((tokens - 1) ** 0.5)))
    link = WirelessLink(bit_rate=args.uplink_mbit * 1e6, rtt_ms=args.radio_rtt_ms)
    rows = [{"method": "identity", "codec": "identity", "kind": "identity", "channel": "none", "CIDEr-D": 1.0,
             "payload_bits": None}]
    planner = Planner(rows, costs, quality=args.quality, codec_flops={"ours (estimate)": codec}, text_bits=8 * 60.0)
    split_candidates = [Candidate(p, "ours (estimate)", "ours (estimate)", k, 1.0, payload)
                        for k in costs for p in ("device-edge", "device-edge-cloud")]
    upload = Candidate("cloud-only", f"jpeg-{args.jpeg_quality}", f"jpeg-{args.jpeg_quality}", None, 1.0, image_bits)
    device_only = Candidate("device-only", "device-only", "text", None, 1.0, 8 * 60.0)
    planner.caption_tokens = float(args.caption_tokens)   # every paradigm's decoding priced per pass as well
    planner.drafter_flops_per_token = drafter_flops_per_token(tokens, args.caption_tokens)
    passes = 2 + (1 - args.acceptance) * args.caption_tokens
    draft_candidates = [Candidate("device-edge-draft", "ours (estimate) + draft", "ours (estimate)", k, 1.0,
                                  payload + args.draft_bits_per_token * args.caption_tokens,
                                  receiver_passes=passes, draft_tokens=float(args.caption_tokens)) for k in costs]
    priced = [(c, breakdown(planner.scenario(c, link), c.paradigm))
              for c in [device_only, upload, *split_candidates, *draft_candidates]]
    best = {}
    for c, ms in sorted(priced, key=lambda x: x[1]["total"]):
        best.setdefault(c.paradigm, (c, ms))
    split_c, split_ms = best["device-edge"]
    scenario = replace(planner.scenario(split_c, link), image_bits=image_bits)
    speedup_cloud = best["cloud-only"][1]["total"] / split_ms["total"]
    speedup_device = best["device-only"][1]["total"] / split_ms["total"]

    def edge_speed_for(factor: float) -> float | None:
        """Edge FLOP/s at which the split answers ``factor`` x faster than cloud-only."""
        from intelliflow.system.latency import _log_bisect

        def gap(speed):
            s = replace(scenario, edge=replace(scenario.edge, flops_per_s=speed))
            return breakdown(s, "device-edge")["total"] * factor - breakdown(s, "cloud-only")["total"]
        return _log_bisect(gap, 1e11, 1e17)

    report = {
        "model": "BLIP-large architecture from its published config (no weights), FLOPs on the meta device",
        "caption_tokens": args.caption_tokens, "feature_tokens": tokens,
        "full_model_gflops": (costs[0].device_flops + costs[0].server_flops) / 1e9,
        "params_millions": (costs[0].device_params + costs[0].server_params) / 1e6,
        "gflops_per_split": {k: [c.device_flops / 1e9, c.server_flops / 1e9] for k, c in costs.items()},
        "jpeg_bits_per_photo": {q: dict(zip(PHOTOS, v)) for q, v in jpeg.items()},
        "upload_bits_median": image_bits,
        "ours_payload_bits_ESTIMATE": payload,
        "ours_estimate_basis": f"{per_token:.3f} bits per feature token = {shapes_bits:.1f} bits / {64} tokens of "
                               f"the shipped hyperprior on shapes ({shapes_point}), x {tokens} tokens",
        "codec_gflops_per_side": codec / 1e9,
        "nodes": {n: vars(PRESETS[n]) for n in ("phone", "edge-gpu", "cloud-gpu")},
        "uplink_bit_s": link.bit_rate, "radio_rtt_ms": link.rtt_ms, "backhaul": vars(planner.backhaul),
        "paradigms": {p: {"operating_point": c.label, "payload_bits": c.payload_bits, "split": c.split, "ms": ms}
                      for p, (c, ms) in best.items()},
        "split_speedup_vs_cloud_only": speedup_cloud, "split_speedup_vs_device_only": speedup_device,
        "crossover_uplink_bit_s": crossover_bandwidth(scenario, "device-edge", "cloud-only", 1e4, 1e10),
        "crossover_device_flops": crossover_device_speed(scenario, "device-edge", "device-only"),
        "edge_flops_for_3x_vs_cloud": edge_speed_for(3.0),
        "draft_ASSUMPTIONS": {"acceptance": args.acceptance, "draft_bits_per_token": args.draft_bits_per_token,
                              "edge_passes": passes, "plain_passes": args.caption_tokens,
                              "drafter": "GRU, 256 wide, BLIP's vocabulary (our Drafter architecture, untrained)",
                              "drafter_gflops_per_token": planner.drafter_flops_per_token / 1e9},
        "draft_speedup_vs_split": split_ms["total"] / best["device-edge-draft"][1]["total"],
        "draft_early_answer_ms": early_answer_ms(planner.scenario(best["device-edge-draft"][0], link)),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    with (out / "paradigms.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["paradigm", "operating_point", "payload_bits", *[f"{s}_ms" for s in STAGES], "total_ms"])
        for p, (c, ms) in best.items():
            w.writerow([p, c.label, f"{c.payload_bits:.0f}", *[f"{ms[s]:.3f}" for s in STAGES], f"{ms['total']:.3f}"])
    plot_latency(scenario, out / "latency.png", low=1e5, high=1e9,
                 title=f"BLIP-large on phone / edge-gpu / cloud-gpu; our payload {payload:.0f} bits (estimate)")
    print(f"BLIP-large: {report['full_model_gflops']:.1f} GFLOP per caption, {report['params_millions']:.0f} M "
          f"parameters, {tokens} feature tokens; upload JPEG-{args.jpeg_quality} median {image_bits / 8e3:.1f} kB; "
          f"our payload {payload:.0f} bits (ESTIMATE)")
    for p, (c, ms) in best.items():
        parts = ", ".join(f"{s} {ms[s]:.2f}" for s in STAGES if ms[s] > 0)
        print(f"  {p:<18} {ms['total']:>8.2f} ms  {c.label}  [{parts}]")
    print(f"split vs cloud-only: {speedup_cloud:.2f}x faster; vs device-only: {speedup_device:.1f}x faster")
    print(f"with drafts (ASSUMED acceptance {args.acceptance:g}, {args.draft_bits_per_token:g} bits per draft token): "
          f"{report['draft_speedup_vs_split']:.2f}x the plain split; the device's own draft after "
          f"{report['draft_early_answer_ms']:.1f} ms")
    cb, cd, e3 = (report["crossover_uplink_bit_s"], report["crossover_device_flops"],
                  report["edge_flops_for_3x_vs_cloud"])
    print("split beats cloud upload below " + (f"{cb / 1e6:.3g} Mbit/s" if cb else
                                                "every uplink from 0.01 to 10000 Mbit/s (the backhaul's round trip "
                                                "alone outlasts the split)"))
    print("split beats device-only below " + (f"{cd / 1e12:.3g} TFLOP/s on the device" if cd else "no crossover"))
    if e3:
        print(f"3x faster than cloud-only needs an edge of {e3 / 1e12:.3g} TFLOP/s effective")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
