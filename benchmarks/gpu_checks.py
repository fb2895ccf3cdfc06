"""The CUDA paths, as one short script for a machine with a GPU (about 2-4 minutes there).

Usage: python benchmarks/gpu_checks.py [--payloads 1000] [--out benchmarks/results/gpu_checks.json]

1. **Bit-exact across devices**: the shipped ``shapes-hyperprior`` encodes ``--payloads``
   ``shapes:test`` feature grids on the GPU; a CPU copy decodes each payload to exactly the
   quantised latent the GPU encoder coded, and the other way round (CPU encodes, GPU decodes).
2. **Training steps**: codec training steps (``shapes-captioner`` frozen, hyperprior, batch 64)
   in float32 and under bfloat16 autocast, time per step.
3. **Sionna on CUDA**: AWGN and Rayleigh symbols, and the 5G digital link carrying real payloads
   at a high SNR (every payload must arrive), with the channel uses equal to the CPU link's.
4. **Evaluation on CUDA**: ``evaluate(device="cuda")`` of the shipped hyperprior against the CPU
   run: payload bits, CIDEr-D and the share of equal captions.

Without CUDA it runs the same comparisons with a float64 sender standing in for the other device
(a different numeric path) and says so; the GPU figures then stay absent.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cross_device(n: int, gpu: bool) -> dict:
    import torch

    from intelliflow.codec import bitstream, resolve_codec
    from intelliflow.codec.interface import grid_padding
    from intelliflow.data.datasets import open_dataset
    from intelliflow.data.sample import collate_samples
    from intelliflow.models import load_split_model, tokens_to_grid

    model = load_split_model("shapes-captioner").eval()
    cpu = resolve_codec("shapes-hyperprior").eval()
    other = copy.deepcopy(cpu).cuda() if gpu else copy.deepcopy(cpu).double()
    data = open_dataset("shapes:test", limit=n)
    mismatches, checked = {"other_to_cpu": 0, "cpu_to_other": 0}, 0
    with torch.no_grad():
        for start in range(0, n, 100):
            batch = collate_samples([data[i] for i in range(start, min(n, start + 100))])
            grid, _ = tokens_to_grid(model.head(model.preprocess(batch["images"])), model.feature_grid,
                                     model.prefix_tokens)
            x = grid.cuda() if gpu else grid.double()
            for direction, sender, receiver, inputs in (("other_to_cpu", other, cpu, x), ("cpu_to_other", cpu, other, grid)):
                payloads = sender.compress(inputs, q=2.5)
                for i, data_i in enumerate(payloads):
                    packet = bitstream.unpack(data_i, receiver.payload_id, receiver.fingerprint)
                    latent = grid_padding(*grid.shape[-2:], sender.step)[1]
                    received = receiver._entropy_decompress(packet.body, latent).float().cpu()
                    sent = sender(inputs[i:i + 1], q=2.5)["y_hat"].float().cpu()
                    mismatches[direction] += int(not torch.equal(received, sent))
            checked += grid.shape[0]
    return {"device": "cuda" if gpu else "cpu-float64 (no CUDA: a stand-in)", "payloads_each_way": checked,
            "mismatches": mismatches}


def training_steps(gpu: bool, steps: int = 10) -> dict:
    import torch

    from intelliflow.training.codec import recipe_from_dict, train_codec

    out = {}
    for precision in ("float32", "bfloat16"):
        recipe = recipe_from_dict({
            "task": "codec", "model": {"name": "shapes-captioner"}, "checkpoint_every": 0, "log_every": 1,
            "codec": {"name": "hyperprior", "hidden_channels": 192, "latent_channels": 32, "hyper_channels": 32,
                      "rate_points": 6},
            "train": {"steps": steps, "batch_size": 64, "warmup_steps": 1, "precision": precision},
            "eval": {"every": 0}})
        import tempfile

        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            train_codec(recipe, output=folder)
            if gpu:
                torch.cuda.synchronize()
            out[precision] = {"steps": steps, "seconds_per_step": (time.perf_counter() - start) / steps}
    return out


def sionna_on_device(gpu: bool) -> dict:
    import torch

    from intelliflow.channels import build_channel
    from intelliflow.channels.digital import DigitalLink

    device = "cuda" if gpu else "cpu"
    out = {"device": device}
    for name in ("awgn", "rayleigh"):
        channel = build_channel({"name": name})
        x = torch.polar(torch.ones(4, 1024), torch.rand(4, 1024) * 6.283).to(device)
        y = channel(x, 20.0)
        out[name] = {"output_device": str(y.y.device), "mse_at_20db": float((y.y - x).abs().pow(2).mean())}
    payloads = [bytes(range(i, i + 40)) for i in range(16)]
    results = {d: DigitalLink("awgn", device=d).transmit(payloads, snr_db=25.0, mcs=13) for d in {"cpu", device}}
    out["digital_link"] = {d: {"delivered": sum(r == p for r, p in zip(res.received, payloads)),
                               "channel_uses": list(map(int, res.channel_uses_per_packet))}
                          for d, res in results.items()}
    out["digital_link_same_channel_uses"] = len({tuple(v["channel_uses"]) for v in out["digital_link"].values()}) == 1
    return out


def eval_on_device(gpu: bool, images: int = 200) -> dict:
    """``intelliflow eval`` of the shipped hyperprior on CUDA against the CPU: the same payload sizes,
    and the share of captions that agree (features after decoding differ in the last float bits)."""
    import tempfile

    from intelliflow.evaluation.sweep import evaluate

    options = {"codec": "shapes-hyperprior", "rate_points": [2.5], "limit": images, "meteor": False, "progress": False}
    with tempfile.TemporaryDirectory() as folder:
        rows = {d: evaluate(**options, device=d, out=Path(folder) / d) for d in ("cpu", "cuda" if gpu else "cpu")}
        captions = {d: json.loads((Path(folder) / d / "captions.json").read_text()) for d in rows}
    cpu, other = captions["cpu"], captions["cuda" if gpu else "cpu"]
    return {"images": images, "payload_bits": {d: r[0]["payload_bits"] for d, r in rows.items()},
            "CIDEr-D": {d: r[0]["CIDEr-D"] for d, r in rows.items()},
            "captions_equal_share": sum(a == b for a, b in zip(cpu, other)) / len(cpu)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payloads", type=int, default=1000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/gpu_checks.json"))
    args = parser.parse_args()
    import torch

    gpu = torch.cuda.is_available()
    report = {"cuda": gpu, "gpu": torch.cuda.get_device_name(0) if gpu else None,
              "cross_device": cross_device(args.payloads, gpu), "sionna": sionna_on_device(gpu)}
    report["training"] = training_steps(gpu) if gpu else "not run: no CUDA"
    report["eval"] = eval_on_device(gpu) if gpu else "not run: no CUDA"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    ok = not any(report["cross_device"]["mismatches"].values()) and all(
        v["delivered"] == 16 for v in report["sionna"]["digital_link"].values())
    print(("PASS" if ok else "FAIL") + f": wrote {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
