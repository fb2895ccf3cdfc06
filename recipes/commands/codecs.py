"""``intelliflow codecs``, ``encode`` and ``decode``: the codec registry and ``.iflow`` files."""

from __future__ import annotations

from pathlib import Path

from . import COMMAND_GROUPS
from .common import InputFailures, print_json, read_image


def cmd_codecs(args) -> int:
    """Registered codec names and the shipped checkpoints."""
    from intelliflow.codec.persistence import codec_info, shipped_codecs
    from intelliflow.codec.registry import ALIASES, registered_codecs

    shipped = []
    for name, folder in shipped_codecs().items():
        meta = codec_info(folder)
        shipped.append({"name": name, "codec": meta["name"], "model": meta.get("model"), "split": meta.get("split"),
                        "objective": meta.get("objective"), "channel": meta.get("channel"),
                        "steps": meta.get("steps"), "seed": meta.get("seed"), "folder": str(folder),
                        "lmbda": meta.get("params", {}).get("lmbda")})
    entries = registered_codecs()
    registered = [{"name": name, "takes": e.cls.takes, "sends": e.cls.sends, "learned": e.cls.learned,
                   "option": e.option, "rate_knob": e.cls.rate.name if e.cls.rate else None,
                   "doc": (e.cls.__doc__ or "").strip().splitlines()[0]} for name, e in entries.items()]
    info = {"registered": sorted([*entries, *ALIASES]), "codecs": registered, "aliases": ALIASES,
            "shipped_checkpoints": shipped}
    if args.json:
        print_json(info)
        return 0
    print(f"{'codec':<12} {'takes':<9} {'sends':<8} {'rate knob':<10} {'option':<11} what")
    for r in registered:
        option = f"{r['name']}-{r['option'][0].upper()}" if r["option"] else ""
        knob = r["rate_knob"] or ""
        print(f"{r['name']:<12} {r['takes']:<9} {r['sends']:<8} {knob:<10} {option:<11} "
              f"{'(needs weights) ' if r['learned'] else ''}{r['doc']}")
    print("fixed codecs take their option after a dash (jpeg-50, quantize-6); learned codecs need weights: a "
          "shipped checkpoint or a folder" + "".join(f"; {a} stands for {t}" for a, t in ALIASES.items()))
    if shipped:
        print("shipped checkpoints (use the name wherever --codec is taken):")
        for s in shipped:
            target = f"for {s['model']} k={s['split']}" if s["model"] else \
                f"for pictures (whole model on the server), lambda {s['lmbda']:g}"
            channel = f", trained on channel {s['channel']}" if s["channel"] else ""
            print(f"  {s['name']:<24} {s['codec']:<11} {target}, objective {s['objective']}{channel} "
                  f"({s['steps']} steps, seed {s['seed']})")
    else:
        print("no codec checkpoints are shipped in this installation")
    return 0


def cmd_encode(args) -> int:
    """Device side: images -> .iflow files. An existing output is never replaced without
    ``--overwrite``; an input that fails is reported and the others are still encoded (exit 2)."""
    from intelliflow.deploy.files import FileEncoder

    if args.stream:
        return _encode_stream(args)
    if args.out is None:
        from intelliflow.errors import ConfigError

        raise ConfigError("give --out (a folder for one .iflow file per image) or --stream FILE.iflows")
    out, failures = Path(args.out), InputFailures("encode")
    targets: dict[Path, str] = {}
    for path in args.images:  # every output is checked before anything is written
        target = out / (Path(path).stem + ".iflow")
        with failures.of(path):
            if target in targets:
                raise FileExistsError(f"{targets[target]} is written to {target} already: rename one of them")
            if target.exists() and not args.overwrite:
                raise FileExistsError(f"{target} exists: give --overwrite to replace it, or another --out")
            targets[target] = path
    encoder = FileEncoder(args.model, args.codec, split=args.split, drafter=args.draft,
                          **({"q": args.q} if args.q is not None else {}))
    out.mkdir(parents=True, exist_ok=True)
    for target, path in targets.items():
        with failures.of(path):
            (data,) = encoder.encode([read_image(path)])
            target.write_bytes(data)
            print(f"{target}  {len(data)} bytes")
    return failures.status


def _encode_stream(args) -> int:
    """``encode --stream FILE``: every readable image into one stream file (the context written once)."""
    from intelliflow.deploy.files import FileEncoder

    target, failures = Path(args.stream), InputFailures("encode")
    if target.exists() and not args.overwrite:
        raise FileExistsError(f"{target} exists: give --overwrite to replace it, or another --stream")
    images = []
    for path in args.images:
        with failures.of(path):
            images.append(read_image(path))
    if not images:
        return failures.status
    encoder = FileEncoder(args.model, args.codec, split=args.split, drafter=args.draft,
                          **({"q": args.q} if args.q is not None else {}))
    data = encoder.encode_stream(images)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    print(f"{target}  {len(data)} bytes for {len(images)} images")
    return failures.status


def cmd_decode(args) -> int:
    """Receiver: .iflow files -> captions; a damaged file is reported and the others still decode (exit 2)."""
    from intelliflow.deploy.container import STREAM_MAGIC
    from intelliflow.deploy.files import FileDecoder

    decoder, failures, rows = FileDecoder(model=args.model, codec=args.codec, drafter=args.draft), \
        InputFailures("decode"), []
    for path in args.files:
        with failures.of(path):
            data = Path(path).read_bytes()
            if data[:2] == STREAM_MAGIC:   # a stream file: one caption per image in it
                decoded = [(f"{path}[{i}]", c, b) for i, (c, b) in enumerate(decoder.decode_stream(data))]
            else:
                decoded = [(str(path), *decoder.decode(data))]
            for name, caption, bits in decoded:
                rows.append({"file": name, "caption": caption, "bits": bits})
                if not args.json:
                    print(f"{name}: {caption}  ({bits} bits)")
    if args.json:
        print_json(rows)
    return failures.status


@COMMAND_GROUPS.register("codecs")
def register(sub) -> None:
    """Add this group's commands to the main parser's sub-parsers."""
    p = sub.add_parser("codecs", help="list the registered codecs and the shipped checkpoints")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_codecs)


    p = sub.add_parser("encode", help="device side: images -> .iflow files (model head + codec)")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--model", default="shapes-captioner")
    p.add_argument("--split", type=int, default=None)
    p.add_argument("--codec", required=True, help="codec: a baseline (quantize-8, jpeg-75, text, mse-codec), "
                                                   "a shipped codec (intelliflow codecs) or a checkpoint folder")
    p.add_argument("--q", type=float, default=None, help="rate point of a learned codec (default: its highest)")
    p.add_argument("--out", default=None, help="folder for the .iflow files (one self-contained file per image)")
    p.add_argument("--stream", default=None, metavar="FILE",
                   help="instead, write every image into one stream file (.iflows): model, split, codec, grid and "
                        "rate point once, then each image's bare payload")
    p.add_argument("--overwrite", action="store_true", help="replace .iflow files that exist already")
    p.add_argument("--draft", default=None, metavar="DRAFTER",
                   help="speculative captioning: each payload starts with the device's draft of the caption "
                        "(shapes-drafter or a drafter folder); the file names the drafter")
    p.set_defaults(func=cmd_encode)


    p = sub.add_parser("decode", help="receiver: .iflow (and .iflows stream) files -> captions")
    p.add_argument("files", nargs="+")
    p.add_argument("--model", default=None, help="the model this receiver serves (name or folder); files name "
                                                 "models by identifier and never make it load a folder (default: "
                                                 "shipped models only)")
    p.add_argument("--codec", default=None, help="the codec this receiver serves (name or checkpoint folder; "
                                                 "default: shipped and fixed codecs only)")
    p.add_argument("--json", action="store_true", help="print a list of {file, caption, bits}")
    p.add_argument("--draft", default=None, metavar="DRAFTER",
                   help="the drafter whose drafts files may carry (a folder; shipped drafters are known anyway): "
                        "the receiver verifies each draft, the captions are the same")
    p.set_defaults(func=cmd_decode)
