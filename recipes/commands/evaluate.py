"""``intelliflow eval``, ``curve``, ``score`` and ``demo``: rate-quality evaluation and its reports."""

from __future__ import annotations

import os
from pathlib import Path

from . import COMMAND_GROUPS
from .common import add_draft_arguments, float_list, print_json


def cmd_eval(args) -> int:
    """Caption a dataset through model + codec + channel; write results.csv and captions.json (under
    ``torchrun``, the processes share the images and rank 0 writes)."""
    from intelliflow.evaluation.sweep import evaluate

    mcs = args.mcs if args.mcs == "auto" else int(args.mcs)
    rows = evaluate(model=args.model, split=args.split, codec=args.codec, channel=args.channel,
                    snr=float_list(args.snr) if args.snr else None, dataset=args.dataset, out=args.out,
                    limit=args.limit, batch_size=args.batch_size, num_beams=args.beams,
                    meteor=False if args.no_meteor else "auto",
                    rate_points=float_list(args.rate_points) if args.rate_points else None,
                    symbols=[int(v) for v in float_list(args.symbols)] if args.symbols else None,
                    mcs=mcs, channel_uses=args.channel_uses, method=args.method, workers=args.workers,
                    device=args.device, harq=args.harq, framing=args.framing, drafter=args.draft,
                    early_threshold=args.early_threshold)
    if int(os.environ.get("RANK", "0")):   # under torchrun rank 0 reports
        return 0
    keys = ("snr_db", "rate_point", "symbols", "payload_bits", "channel_uses", "loss_rate", "CIDEr-D", "BLEU-4",
            "semantic_accuracy", "n_images")
    if args.draft:
        keys = keys[:-1] + ("draft_bits", "draft_acceptance", "draft_accepted_tokens", "receiver_passes",
                            "greedy_passes", "early_share", "early_right", "n_images")
    print(" ".join(f"{k:>14}" for k in keys))
    for row in rows:
        print(" ".join(f"{row[k]:>14.4f}" if isinstance(row[k], float) else f"{row[k]!s:>14}" for k in keys))
    if args.framing == "stream" and any(row.get("framing") == "stream" for row in rows):
        print("payload_bits: what a stream sends per image (context agreed once per connection, the link "
              "checks each block); --framing file gives the self-contained figure (header and CRC per payload)")
    print(f"wrote {Path(args.out) / 'results.csv'} and {Path(args.out) / 'captions.json'}")
    return 0


def cmd_curve(args) -> int:
    """Rate-quality plot and summary table from result folders."""
    from intelliflow.evaluation.curves import format_summary, plot_curves, summarize
    from intelliflow.evaluation.results import clean_cider, load_results

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
        print_json({"clean_CIDEr-D": clean, "floor_bits": floor, "methods": table, "plot": str(plot)})
    else:
        print(text)
        print(f"wrote {plot} and {summary}")
    return 0


def cmd_score(args) -> int:
    """Caption metrics of a COCO results file against COCO annotations."""
    from intelliflow.evaluation.metrics import score_files

    scores = score_files(args.results, args.annotations, tokenizer=args.tokenizer,
                         meteor=False if args.no_meteor else "auto")
    print_json(scores)
    return 0


def cmd_demo(args) -> int:
    """The main job on the embedded default (see ``intelliflow.recipes.demo``)."""
    from intelliflow.recipes.demo import run_demo

    return run_demo(args.out, quick=args.quick)


@COMMAND_GROUPS.register("evaluate")
def register(sub) -> None:
    """Add this group's commands to the main parser's sub-parsers."""
    p = sub.add_parser("eval", help="caption a dataset through model + codec + channel and score it")
    p.add_argument("--model", default="shapes-captioner", help="model name or local folder (default: shapes-captioner)")
    p.add_argument("--split", type=int, default=None, help="split point k (default: the model's documented default)")
    p.add_argument("--codec", default="identity",
                   help="a registered baseline (identity, jpeg-50, webp-80, avif-50, quantize-6, text, mse-codec), a shipped "
                        "codec (intelliflow codecs) or a codec checkpoint folder")
    p.add_argument("--channel", default="none",
                   help="none (ideal link), awgn, rayleigh, ofdm-tdl; options as rayleigh:csi=estimated,block_length=32")
    p.add_argument("--snr", default=None, help="SNRs in dB: 0,5,10 or 0:20:5")
    p.add_argument("--rate-points", default=None, help="rate points q of a variable-rate codec: 0,1,2.5,5 (default: its highest)")
    p.add_argument("--symbols", default=None, help="JSCC symbol channels to send (bandwidths): 4,8,16 (default: all)")
    p.add_argument("--mcs", default="auto", help="MCS of byte payloads over a channel: auto (adaptive) or an index 3..28")
    p.add_argument("--harq", type=int, default=4, help="transmissions per code block over a digital link (HARQ with "
                   "incremental redundancy, 5G-like; 1: no retransmission)")
    p.add_argument("--channel-uses", type=int, default=None,
                   help="channel-use budget per image for a learned digital codec (its rate adapts to fit)")
    p.add_argument("--framing", choices=("stream", "file"), default="stream",
                   help="stream (default): payload_bits is what a stream sends per image, the context agreed once "
                        "per connection; file: self-contained payloads (header and CRC-16 each), as .iflow files")
    p.add_argument("--method", default=None, help="label of this method in results and plots (default: the codec)")
    p.add_argument("--dataset", default="shapes:test", help="dataset spec (default: shapes:test)")
    p.add_argument("--out", required=True, help="output folder for results.csv and captions.json")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--workers", type=int, default=0,
                   help="DataLoader processes reading, decoding and preprocessing the images (0: in this process)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: this process's GPU if there is "
                                                  "CUDA, under torchrun each rank its own, else the CPU)")
    p.add_argument("--beams", type=int, default=1, help="beam width (1: greedy, the documented default)")
    add_draft_arguments(p, "adds acceptance, decoder passes and early-answer columns")
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


    p = sub.add_parser("score", help="caption metrics (BLEU, METEOR, ROUGE-L, CIDEr-D) of a COCO results file")
    p.add_argument("--results", required=True, help="COCO results JSON: a list of {image_id, caption}")
    p.add_argument("--annotations", required=True, help="COCO captions annotations JSON")
    p.add_argument("--tokenizer", choices=("auto", "java", "python"), default="auto",
                   help="PTB tokenizer: Java's when java is on PATH (auto), or the pure-Python one")
    p.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts a Java process)")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("demo", help="run the main job on the built-in benchmark and write a report")
    p.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    p.add_argument("--quick", action="store_true", help="fewer images and points: about two minutes on 2 cores")
    p.set_defaults(func=cmd_demo)
