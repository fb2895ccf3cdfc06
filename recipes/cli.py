"""The ``intelliflow`` command: one sub-command per job, each a thin runner over the library.

Run ``intelliflow --help`` for the list and ``intelliflow COMMAND --help`` for each one.
Errors from bad input (``intelliflow.errors``) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from intelliflow.errors import IntelliflowError


def _print_json(obj) -> None:
    def clean(v):
        if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    print(json.dumps(clean(obj), indent=2))


# ------------------------------------------------------------------ info

def cmd_info(args) -> int:
    """Versions of the stack, Java, threads."""
    import platform
    import shutil
    from importlib.metadata import PackageNotFoundError, version

    import torch

    import intelliflow

    def ver(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    info = {
        "intelliflow": intelliflow.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": ver("torchvision"),
        "compressai": ver("compressai"),
        "sionna": ver("sionna-no-rt") or ver("sionna"),
        "transformers": ver("transformers"),
        "pycocoevalcap": ver("pycocoevalcap"),
        "java": shutil.which("java"),
        "cuda_available": torch.cuda.is_available(),
        "torch_threads": torch.get_num_threads(),
    }
    if args.json:
        _print_json(info)
    else:
        width = max(map(len, info))
        for key, value in info.items():
            shown = value if value is not None else "not found"
            print(f"{key:<{width}}  {shown}")
    return 0


# ------------------------------------------------------------------ data

def cmd_data_export(args) -> int:
    """Write a dataset split to disk in COCO-captions format."""
    from intelliflow.data.datasets import export_dataset, open_dataset

    dataset = open_dataset(args.spec, limit=args.limit)
    path = export_dataset(dataset, args.out, description=args.spec, progress=True)
    print(f"wrote {len(dataset)} images and {path}")
    return 0


def cmd_data_info(args) -> int:
    """Sizes of a dataset; for shapes also the vocabulary and the exact semantic entropy."""
    if args.spec.split(":")[0] == "shapes":
        from intelliflow.data.captions import vocabulary
        from intelliflow.data.entropy import entropy_breakdown
        from intelliflow.data.shapes import SPLIT_SIZES, ShapesConfig

        config = ShapesConfig()
        parts = entropy_breakdown(config)
        info = {
            "dataset": "shapes",
            "entropy_bits": sum(parts.values()),
            "entropy_breakdown_bits": parts,
            "splits": {"train": "endless stream", **SPLIT_SIZES},
            "vocabulary_size": len(vocabulary()),
            "image_size": config.image_size,
            "objects_per_image": [config.min_objects, config.max_objects],
            "references_per_image": config.n_references,
        }
        text = [f"shapes: {config.image_size}x{config.image_size} scenes of "
                f"{config.min_objects}-{config.max_objects} objects on a {config.grid}x{config.grid} grid",
                f"semantic entropy: {info['entropy_bits']:.4f} bits per image "
                f"(count {parts['count_bits']:.4f} + attributes {parts['attribute_bits']:.4f} "
                f"+ relations {parts['relation_bits']:.4f})",
                f"splits: train endless, val {SPLIT_SIZES['val']}, test {SPLIT_SIZES['test']} images",
                f"vocabulary: {info['vocabulary_size']} words; {config.n_references} references per image"]
    else:
        from intelliflow.data.datasets import open_dataset

        dataset = open_dataset(args.spec)
        n_captions = sum(len(e[2]) for e in dataset.entries)
        info = {"dataset": args.spec, "images": len(dataset), "captions": n_captions}
        text = [f"{args.spec}: {len(dataset)} images, {n_captions} captions"]
    if args.json:
        _print_json(info)
    else:
        print("\n".join(text))
    return 0


# ------------------------------------------------------------------ score

def cmd_score(args) -> int:
    """Caption metrics of a COCO results file against COCO annotations."""
    from intelliflow.evaluation.metrics import score_files

    scores = score_files(args.results, args.annotations, tokenizer=args.tokenizer,
                         meteor=False if args.no_meteor else "auto")
    _print_json(scores)
    return 0


# ------------------------------------------------------------------ train

def cmd_train(args) -> int:
    """Train what a recipe describes (its ``task`` key picks the runner)."""
    from .config import read_recipe

    data = read_recipe(args.recipe, args.set)
    task = data.get("task")
    if task == "captioner":
        from .train_captioner import recipe_from_dict, train_captioner

        final = train_captioner(recipe_from_dict(data), output=args.out, resume=args.resume, stop_at=args.stop_at)
    elif task == "codec":
        from .train_codec import recipe_from_dict, train_codec

        final = train_codec(recipe_from_dict(data), output=args.out, resume=args.resume, stop_at=args.stop_at)
    else:
        from intelliflow.errors import ConfigError

        raise ConfigError(f"recipe {args.recipe}: unknown task {task!r}; allowed: ['captioner', 'codec']")
    print(f"trained: {final}")
    return 0


# ------------------------------------------------------------------ eval

def _float_list(text: str) -> list[float]:
    """``"0,5,10"`` or ``"0:20:5"`` (start:stop:step, stop included) -> floats."""
    from intelliflow.errors import ConfigError

    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            n = int(round((stop - start) / step)) + 1
            return [round(start + i * step, 6) for i in range(n)]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"expected a list like 0,5,10 or 0:20:5, got {text!r}") from exc


def cmd_eval(args) -> int:
    """Caption a dataset through model + codec + channel; write results.csv and captions.json."""
    from .evaluate import run_eval

    mcs = args.mcs if args.mcs == "auto" else int(args.mcs)
    rows = run_eval(args.model, args.split, args.codec, args.channel, _float_list(args.snr) if args.snr else None,
                    args.dataset, args.out, limit=args.limit, batch_size=args.batch_size,
                    num_beams=args.beams, meteor=False if args.no_meteor else "auto",
                    rate_points=_float_list(args.rate_points) if args.rate_points else None,
                    symbols=[int(v) for v in _float_list(args.symbols)] if args.symbols else None,
                    mcs=mcs, channel_uses=args.channel_uses, method=args.method)
    keys = ("snr_db", "rate_point", "symbols", "payload_bits", "channel_uses", "loss_rate", "CIDEr-D", "BLEU-4",
            "semantic_accuracy", "n_images")
    print(" ".join(f"{k:>14}" for k in keys))
    for row in rows:
        print(" ".join(f"{row[k]:>14.4f}" if isinstance(row[k], float) else f"{row[k]!s:>14}" for k in keys))
    print(f"wrote {Path(args.out) / 'results.csv'} and {Path(args.out) / 'captions.json'}")
    return 0


def cmd_curve(args) -> int:
    """Rate-quality plot and summary table from result folders."""
    from intelliflow.evaluation.curves import clean_cider, format_summary, load_results, plot_curves, summarize

    rows = load_results(args.results)
    floor = args.floor_bits
    if floor is None and rows and all(str(r.get("dataset", "")).startswith("shapes") for r in rows):
        from intelliflow.data.entropy import entropy_breakdown
        from intelliflow.data.shapes import ShapesConfig

        floor = sum(entropy_breakdown(ShapesConfig()).values())
    clean = args.clean if args.clean is not None else clean_cider(rows)
    table = summarize(rows, ours=args.ours, clean=clean)
    plot = plot_curves(rows, args.out, floor_bits=floor, clean=clean)
    text = format_summary(table, clean, floor)
    summary = Path(args.out).with_suffix(".md")
    summary.write_text(text + "\n")
    if args.json:
        _print_json({"clean_CIDEr-D": clean, "floor_bits": floor, "methods": table, "plot": str(plot)})
    else:
        print(text)
        print(f"wrote {plot} and {summary}")
    return 0


def cmd_latency(args) -> int:
    """Latency per paradigm for one image, from profiles, the model's FLOPs and measured rate-quality."""
    from dataclasses import replace

    from intelliflow.flow.latency import STAGES, breakdown, crossover_bandwidth, crossover_device_speed, plot_latency

    from .latency_costs import build_planner

    planner, wireless = build_planner(args.results, args.profile, args.model, args.split, args.quality,
                                      args.codec_flops)
    if args.bandwidth:
        wireless = replace(wireless, bandwidth_hz=args.bandwidth)
    if args.bit_rate:
        wireless = replace(wireless, bit_rate=args.bit_rate)
    plan = planner.plan(wireless)
    best = plan.best_per_paradigm()
    scenario = planner.comparison(plan)
    report = {"clean_CIDEr-D": plan.clean, "floor_CIDEr-D": plan.floor, "wireless": vars(wireless),
              "device": vars(planner.device), "edge": vars(planner.edge), "cloud": vars(planner.cloud),
              "paradigms": {p: {"operating_point": o.candidate.label, "codec": o.candidate.codec,
                                "payload_bits": o.candidate.payload_bits, "channel_uses": o.candidate.channel_uses,
                                "CIDEr-D": o.candidate.quality, "meets_floor": not o.rejected,
                                "rejected": o.rejected or None, "ms": o.ms} for p, o in best.items()},
              "choice": plan.choice.candidate.label if plan.choice else None,
              "crossover_uplink": crossover_bandwidth(scenario, "device-edge", "cloud-only"),
              "crossover_uplink_unit": "bit/s" if wireless.bit_rate else "Hz",
              "crossover_device_flops": crossover_device_speed(scenario, "device-edge", "device-only")}
    if args.measure:
        from .latency_measure import measure_stages

        report["measured"] = measure_stages(args.model, planner, plan, images=args.measure_images)
    plot = plot_latency(scenario, args.out) if args.out else None
    if args.json:
        _print_json(report)
        return 0
    print(plan.why().splitlines()[0])
    print(f"{'paradigm':<18} {'operating point':<44} {'CIDEr-D':>8} " + " ".join(f"{s:>9}" for s in STAGES)
          + f" {'total ms':>10}")
    for p, o in best.items():
        mark = "" if not o.rejected else "  (under the floor)" if "floor" in o.rejected else f"  ({o.rejected})"
        point = o.candidate.label.split(": ", 1)[1]
        print(f"{p:<18} {point:<44} {o.candidate.quality:>8.3f} " + " ".join(f"{o.ms[s]:>9.3f}" for s in STAGES)
              + f" {o.ms['total']:>10.3f}{mark}")
    cb, cd = report["crossover_uplink"], report["crossover_device_flops"]
    unit = "Mbit/s of uplink" if wireless.bit_rate else "MHz of uplink"
    split_ms = breakdown(scenario, "device-edge")["total"]

    def never(other, axis):
        faster = "the split" if split_ms < breakdown(scenario, other)["total"] else other
        return f"split vs {other}: no crossover; {faster} is faster at every {axis} in range"

    print(f"split beats cloud upload below {cb / 1e6:.3g} {unit}" if cb else never("cloud-only", "uplink"))
    print(f"split beats device-only below {cd / 1e9:.3g} GFLOP/s on the device" if cd
          else never("device-only", "device speed"))
    if args.measure:
        _print_measured(report["measured"])
    if plot:
        print(f"wrote {plot}")
    return 0


def _print_measured(measured: dict) -> None:
    print(f"measured on this machine ({measured['threads']} threads, median of {measured['images']} images, "
          f"batch 1); model at the calibrated {measured['this_machine_flops_per_s'] / 1e9:.3g} GFLOP/s:")
    print(f"  {'stage':<36} {'MFLOP':>10} {'measured ms':>12} {'model ms':>10}")
    for r in measured["stages"]:
        print(f"  {r['stage']:<36} {r['flops'] / 1e6:>10.2f} {r['measured_ms']:>12.3f} {r['predicted_ms']:>10.3f}")


def cmd_plan(args) -> int:
    """The planner: the fastest paradigm, split point and rate point above the quality floor, re-planned
    for every SNR and bandwidth given."""
    from dataclasses import replace

    from intelliflow.flow.planner import links_over

    from .latency_costs import build_planner

    planner, wireless = build_planner(args.results, args.profile, args.model, args.split, args.quality,
                                      args.codec_flops)
    if args.channel:
        wireless = replace(wireless, channel=args.channel)
    links = links_over(wireless, args.snr or (), args.bandwidth or (), args.bit_rate or ())
    plans = planner.replan(links)
    if args.json:
        _print_json([{"wireless": vars(p.wireless), "choice": p.choice.candidate.label if p.choice else None,
                      "paradigm": p.choice.candidate.paradigm if p.choice else None,
                      "codec": p.choice.candidate.codec if p.choice else None,
                      "split": p.choice.candidate.split if p.choice else None,
                      "rate_point": p.choice.candidate.rate_point if p.choice else None,
                      "CIDEr-D": p.choice.candidate.quality if p.choice else None,
                      "ms": p.choice.ms if p.choice else None, "changed": changed, "why": p.why()}
                     for p, changed in plans])
        return 0
    if len(plans) == 1:
        print(plans[0][0].why())
        return 0
    print(f"{'uplink':>12} {'SNR dB':>7}  {'total ms':>9}  choice")
    for plan, changed in plans:
        w = plan.wireless
        rate = f"{w.bit_rate / 1e6:g} Mbit/s" if w.bit_rate else f"{w.bandwidth_hz / 1e6:g} MHz"
        c = plan.choice
        text = f"{c.total:>9.3g}  {c.candidate.label}" if c else f"{'-':>9}  nothing meets the floor"
        print(f"{rate:>12} {w.snr_db:>7g}  {text}{'   <- re-planned' if changed else ''}")
    print()
    print(plans[-1][0].why() if args.explain_last else plans[0][0].why())
    return 0


# ------------------------------------------------------------------ codecs and files

def cmd_codecs(args) -> int:
    """Registered codec names and the shipped checkpoints."""
    from intelliflow.codec import available_codecs
    from intelliflow.codec.persistence import codec_info, shipped_codecs

    shipped = []
    for name, folder in shipped_codecs().items():
        meta = codec_info(folder)
        shipped.append({"name": name, "codec": meta["name"], "model": meta.get("model"), "split": meta.get("split"),
                        "objective": meta.get("objective"), "channel": meta.get("channel"),
                        "steps": meta.get("steps"), "seed": meta.get("seed"), "folder": str(folder)})
    info = {"registered": available_codecs(), "shipped_checkpoints": shipped}
    if args.json:
        _print_json(info)
        return 0
    print("registered codecs: " + ", ".join(info["registered"]))
    print("baselines take an option after a dash: jpeg-50, webp-80, quantize-6")
    print("learned codecs (factorized, hyperprior, jscc) need weights: a shipped checkpoint or a folder")
    if shipped:
        print("shipped checkpoints (use the name wherever --codec is taken):")
        for s in shipped:
            print(f"  {s['name']:<24} {s['codec']:<11} for {s['model']} k={s['split']}, objective {s['objective']}, "
                  f"trained on channel {s['channel']} ({s['steps']} steps, seed {s['seed']})")
    else:
        print("no codec checkpoints are shipped in this installation")
    return 0


def cmd_encode(args) -> int:
    """Device side: images -> .iflow files."""
    from intelliflow.flow.files import encode_images, resolve_codec
    from intelliflow.models import load_split_model

    model = load_split_model(args.model, split=args.split)
    codec = resolve_codec(args.codec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        image = _read_image(path)
        (data,) = encode_images(model, codec, args.codec, [image], args.model)
        target = out / (Path(path).stem + ".iflow")
        target.write_bytes(data)
        print(f"{target}  {len(data)} bytes")
    return 0


def cmd_decode(args) -> int:
    """Receiver: .iflow files -> captions; a damaged file is reported and the others still decode."""
    from intelliflow.errors import IntelliflowError
    from intelliflow.flow.files import FileDecoder

    decoder, failed, rows = FileDecoder(), 0, []
    for path in args.files:
        try:
            caption, bits = decoder.decode(Path(path).read_bytes())
        except (IntelliflowError, OSError) as exc:
            failed += 1
            print(f"intelliflow decode: {path}: {exc}", file=sys.stderr)
            continue
        rows.append({"file": str(path), "caption": caption, "bits": bits})
        if not args.json:
            print(f"{path}: {caption}  ({bits} bits)")
    if args.json:
        _print_json(rows)
    return 1 if failed else 0


# ------------------------------------------------------------------ split deployment

def cmd_serve(args) -> int:
    """Edge (or cloud) side: an HTTP service that finishes captions from .iflow payloads."""
    import signal
    import threading

    from intelliflow.flow.service import EdgeServer, EdgeService

    service = EdgeService(args.model, args.codec, split=args.split, max_batch=args.max_batch,
                          batch_wait_ms=args.batch_wait_ms, threads=args.threads)
    try:
        server = EdgeServer((args.host, args.port), service, max_body_bytes=args.max_bytes, verbose=args.verbose)
    except OSError as exc:
        from intelliflow.errors import ConfigError

        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from exc
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()  # /health answers 503 while the model loads
    stop = threading.Event()
    try:
        service.load()  # Ctrl-C here interrupts the load (KeyboardInterrupt)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        print(f"intelliflow serve --role {args.role}: {args.model} (split {service.model.split}) + {args.codec} "
              f"at {server.url}  (POST /caption, GET /health; Ctrl-C stops)", flush=True)
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        service.close()
        print(f"served {service.served} captions, refused {service.refused} requests", flush=True)
    return 0


def cmd_caption(args) -> int:
    """Device side: captions of image files, finished by an edge service (or, without --edge, here)."""
    from intelliflow.flow.edge_client import SplitDevice

    images = [_read_image(path) for path in args.images]
    if args.edge is None and args.q is not None:
        from intelliflow.errors import ConfigError

        raise ConfigError("--q sets the codec's rate point for the edge: it needs --edge URL")
    if args.edge is None:
        from intelliflow.models import load_split_model

        model = load_split_model(args.model, split=args.split)
        rows = [{"image": str(p), "caption": c} for p, c in zip(args.images, model.caption(images))]
    else:
        device = SplitDevice(args.model, args.codec, args.edge, split=args.split,
                             compress_options={"q": args.q} if args.q is not None else None)
        device.client.wait_ready(timeout=args.wait)
        rows = [{"image": str(p), **r} for p, r in zip(args.images, device.caption(images))]
    if args.json:
        _print_json(rows)
        return 0
    for r in rows:
        timing = (f"  ({r['bits']} bits; device {r['device_ms']:.1f} ms, encode {r['encode_ms']:.1f} ms, "
                  f"round trip {r['roundtrip_ms']:.1f} ms)") if "bits" in r else ""
        print(f"{r['image']}: {r['caption']}{timing}")
    return 0


def _read_image(path):
    from PIL import Image, UnidentifiedImageError

    from intelliflow.errors import DatasetError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


# ------------------------------------------------------------------ models

def cmd_models_info(args) -> int:
    """Parameters and FLOPs per side, and feature size, for every split point."""
    from intelliflow.data.shapes import make_sample
    from intelliflow.models import load_split_model
    from intelliflow.models.costs import costs_for_every_split

    model = load_split_model(args.model, split=args.split)
    rows = costs_for_every_split(model, [make_sample("val", 0).image])
    if args.json:
        _print_json({"model": args.model, "default_split": model.default_split, "selected_split": model.split,
                     "splits": [r.as_dict() for r in rows]})
        return 0
    print(f"{args.model}: split points 0..{model.num_split_points - 1}, default {model.default_split}; "
          f"FLOPs per image (teacher-forced caption on the server)")
    print(f"{'k':>3} {'device params':>14} {'server params':>14} {'device MFLOP':>13} {'server MFLOP':>13} "
          f"{'feature floats':>15}  features")
    for r in rows:
        mark = " <" if r.split == model.split else ""
        print(f"{r.split:>3} {r.device_params:>14,} {r.server_params:>14,} {r.device_flops / 1e6:>13.2f} "
              f"{r.server_flops / 1e6:>13.2f} {r.feature_floats:>15,}  {list(r.feature_shape)}{mark}")
    return 0


# ------------------------------------------------------------------ demo

def cmd_demo(args) -> int:
    """The main job on the embedded default (see ``intelliflow.recipes.demo``)."""
    from .demo import run_demo

    return run_demo(args.out, quick=args.quick)


# ------------------------------------------------------------------ parser

def _add_planner_options(p) -> None:
    """What ``latency`` and ``plan`` both need to build a planner (``latency_costs.build_planner``)."""
    p.add_argument("--results", nargs="+", required=True, help="result folders of intelliflow eval / demo")
    p.add_argument("--profile", default=None, help="YAML profile (device/edge/cloud presets or FLOP/s, wireless, backhaul)")
    p.add_argument("--model", default="shapes-captioner")
    p.add_argument("--split", type=int, default=None, help="consider only this split point")
    p.add_argument("--quality", type=float, default=0.95, help="quality floor as a fraction of the clean CIDEr-D")
    p.add_argument("--codec-flops", type=float, default=None, help="codec FLOPs per image per side (default: counted)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="intelliflow",
        description="Task-oriented semantic communication: split captioning models, learned feature "
                    "codecs and simulated wireless channels.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("info", help="print versions of torch, compressai, sionna, transformers, Java and threads")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("demo", help="run the main job on the built-in benchmark and write a report")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="fewer images and points: about two minutes on 2 cores")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a model or codec from a YAML recipe (recipes/...)")
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/shapes/captioner.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe key, e.g. --set train.steps=100 (repeatable)")
    p.add_argument("--out", default=None, help="output folder (default: the recipe's output)")
    p.add_argument("--resume", action="store_true", help="continue from the output folder's last checkpoint")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop after this step with a checkpoint (continue later with --resume)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="caption a dataset through model + codec + channel and score it")
    p.add_argument("--model", default="shapes-captioner", help="model name or local folder (default: shapes-captioner)")
    p.add_argument("--split", type=int, default=None, help="split point k (default: the model's documented default)")
    p.add_argument("--codec", default="identity",
                   help="a registered baseline (identity, jpeg-50, webp-80, quantize-6, text, mse-codec), a shipped "
                        "codec (intelliflow codecs) or a codec checkpoint folder")
    p.add_argument("--channel", default="none",
                   help="none (ideal link), awgn, rayleigh, ofdm-tdl; options as rayleigh:csi=estimated,block_length=32")
    p.add_argument("--snr", default=None, help="SNRs in dB: 0,5,10 or 0:20:5")
    p.add_argument("--rate-points", default=None, help="rate points q of a variable-rate codec: 0,1,2.5,5 (default: its highest)")
    p.add_argument("--symbols", default=None, help="JSCC symbol channels to send (bandwidths): 4,8,16 (default: all)")
    p.add_argument("--mcs", default="auto", help="MCS of byte payloads over a channel: auto (adaptive) or an index 3..28")
    p.add_argument("--channel-uses", type=int, default=None,
                   help="channel-use budget per image for a learned digital codec (its rate adapts to fit)")
    p.add_argument("--method", default=None, help="label of this method in results and plots (default: the codec)")
    p.add_argument("--dataset", default="shapes:test", help="dataset spec (default: shapes:test)")
    p.add_argument("--out", required=True, help="output folder for results.csv and captions.json")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--beams", type=int, default=1, help="beam width (1: greedy, the documented default)")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a Java process)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("curve", help="plot caption quality against payload bits, SNR and channel uses; summary table")
    p.add_argument("results", nargs="+", help="result folders (results.csv inside, searched recursively) or files")
    p.add_argument("--out", required=True, help="PNG to write; the summary goes next to it as .md")
    p.add_argument("--ours", default=None, help="the method the ratios refer to (default: the first learned codec)")
    p.add_argument("--clean", type=float, default=None, help="clean CIDEr-D (default: the identity codec's row)")
    p.add_argument("--floor-bits", type=float, default=None,
                   help="semantic-entropy floor to mark (default: the shapes entropy for shapes results)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_curve)

    p = sub.add_parser("latency", help="latency per paradigm (device-only, cloud upload, split, 3-tier) from "
                                       "profiles, FLOPs and rate-quality results")
    _add_planner_options(p)
    p.add_argument("--bandwidth", type=float, default=None, help="uplink bandwidth in Hz (overrides the profile)")
    p.add_argument("--bit-rate", type=float, default=None,
                   help="a fixed uplink bit rate in bit/s instead of the adaptive MCS (e.g. 10e6)")
    p.add_argument("--out", default=None, help="PNG: latency against uplink bandwidth with the crossover")
    p.add_argument("--measure", action="store_true",
                   help="also time every stage for real on this machine and set it beside the model's figure")
    p.add_argument("--measure-images", type=int, default=20, help="images timed per stage with --measure")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_latency)

    p = sub.add_parser("plan", help="choose paradigm, split point and codec rate point with the lowest latency "
                                    "above a quality floor; re-plan over SNRs and bandwidths")
    _add_planner_options(p)
    p.add_argument("--snr", type=float, nargs="+", default=None, help="link SNRs (dB) to plan for")
    p.add_argument("--bandwidth", type=float, nargs="+", default=None, help="uplink bandwidths (Hz) to plan for")
    p.add_argument("--bit-rate", type=float, nargs="+", default=None,
                   help="fixed uplink bit rates (bit/s) to plan for, instead of the adaptive MCS (digital payloads only)")
    p.add_argument("--channel", default=None, help="link channel: awgn or rayleigh (default: the profile's)")
    p.add_argument("--explain-last", action="store_true", help="explain the last link state instead of the first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("codecs", help="list the registered codecs and the shipped checkpoints")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_codecs)

    p = sub.add_parser("encode", help="device side: images -> .iflow files (model head + codec)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", default="shapes-captioner")
    p.add_argument("--split", type=int, default=None)
    p.add_argument("--codec", required=True, help="codec: a baseline (quantize-8, jpeg-75, text, mse-codec), "
                                                   "a shipped codec (intelliflow codecs) or a checkpoint folder")
    p.add_argument("--out", required=True, help="folder for the .iflow files")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="receiver: .iflow files -> captions")
    p.add_argument("files", nargs="+")
    p.add_argument("--json", action="store_true", help="print a list of {file, caption, bits}")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("serve", help="edge side of a split deployment: HTTP service finishing captions "
                                     "(POST /caption with an .iflow body, GET /health)")
    p.add_argument("--role", choices=("edge", "cloud"), default="edge",
                   help="which node this is (the protocol is the same; shown in the log)")
    p.add_argument("--model", default="shapes-captioner")
    p.add_argument("--split", type=int, default=None)
    p.add_argument("--codec", required=True, help="the codec the payloads come in (shipped name, baseline or folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--max-batch", type=int, default=16, help="most requests captioned in one forward pass")
    p.add_argument("--batch-wait-ms", type=float, default=0.0,
                   help="wait this long for more requests to batch (requests queued while a batch runs are always batched)")
    p.add_argument("--max-bytes", type=int, default=1 << 20, help="largest accepted .iflow body (413 above)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("caption", help="device side: caption images, the tail finished by an edge service "
                                       "(--edge URL), or the whole model here without --edge")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--edge", default=None, help="URL of an intelliflow serve (http://HOST:PORT)")
    p.add_argument("--model", default="shapes-captioner")
    p.add_argument("--split", type=int, default=None)
    p.add_argument("--codec", default="shapes-hyperprior", help="with --edge: the codec the edge serves")
    p.add_argument("--q", type=float, default=None,
                   help="with --edge: rate point of a learned codec (default: its highest)")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the edge to be ready")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_caption)

    from .channels_cli import add_channels_parser

    add_channels_parser(sub)

    models = sub.add_parser("models", help="split models: costs per split point")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    p = msub.add_parser("info", help="parameters and FLOPs of each side, and feature size, for every split point")
    p.add_argument("model", help="model name (shapes-captioner) or local folder")
    p.add_argument("--split", type=int, default=None, help="mark this split point (default: the model's default)")
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.set_defaults(func=cmd_models_info)

    data = sub.add_parser("data", help="datasets: export to COCO format, print facts")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    p = dsub.add_parser("export", help="write a split (e.g. shapes:test) as PNG images + annotations.json")
    p.add_argument("spec", help="dataset spec: shapes:val, shapes:test, coco:DIR, flickr8k:DIR[:SPLIT]")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--limit", type=int, default=None, help="export only the first N images")
    p.set_defaults(func=cmd_data_export)
    p = dsub.add_parser("info", help="split sizes, vocabulary and (for shapes) the exact semantic entropy")
    p.add_argument("spec", help="shapes, or a dataset spec")
    p.add_argument("--json", action="store_true", help="print a JSON object (key entropy_bits for shapes)")
    p.set_defaults(func=cmd_data_info)

    p = sub.add_parser("score", help="caption metrics (BLEU, METEOR, ROUGE-L, CIDEr-D) of a COCO results file")
    p.add_argument("--results", required=True, help="COCO results JSON: a list of {image_id, caption}")
    p.add_argument("--annotations", required=True, help="COCO captions annotations JSON")
    p.add_argument("--tokenizer", choices=("auto", "java", "python"), default="auto",
                   help="PTB tokenizer: Java's when java is on PATH (auto), or the pure-Python one")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a Java process)")
    p.set_defaults(func=cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except IntelliflowError as exc:
        print(f"intelliflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
