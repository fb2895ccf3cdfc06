"""``intelliflow serve`` and ``caption``: a real split deployment (edge service, device client)."""

from __future__ import annotations

from . import COMMAND_GROUPS
from .common import InputFailures, add_draft_arguments, print_json, read_image


def cmd_serve(args) -> int:
    """Edge (or cloud) side: an HTTP service that finishes captions from .iflow payloads."""
    import signal
    import sys
    import threading

    from intelliflow.deploy.auth import credentials_from_env
    from intelliflow.deploy.service import EdgeService, start_server

    credentials = credentials_from_env()
    if credentials is None and args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"intelliflow serve: warning: {args.host} is not loopback and every device is served; set "
              "INTELLIFLOW_TOKEN or INTELLIFLOW_HMAC_KEY to serve configured devices only", file=sys.stderr)
    service = EdgeService(args.model, args.codec, split=args.split, max_batch=args.max_batch,
                          batch_wait_ms=args.batch_wait_ms, threads=args.threads, drafter=args.draft)
    # /health answers 503 while the model loads; Ctrl-C during the load interrupts it (KeyboardInterrupt)
    server, _ = start_server(service, args.host, args.port, load_in_background=False, max_body_bytes=args.max_bytes,
                             verbose=args.verbose, max_connections=args.max_connections,
                             credentials=credentials)
    stop = threading.Event()
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        print(f"intelliflow serve --role {args.role}: {args.model} (split {service.model.split}) + {args.codec} "
              + (f"+ drafts of {args.draft} " if args.draft else "") +
              f"at {server.url}  (POST /caption, GET /health; Ctrl-C stops)", flush=True)
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        service.close()
        print(f"served {service.served} captions, refused {service.refused} requests", flush=True)
    return 0


def cmd_caption(args) -> int:
    """Device side: captions of image files, finished by an edge service (or, without --edge, here).
    An image that cannot be read or captioned is reported and the others go on (exit 2)."""
    from intelliflow.deploy.client import SplitDevice

    if args.edge is None and args.q is not None and not args.draft:
        from intelliflow.errors import ConfigError

        raise ConfigError("--q sets the codec's rate point for the edge: it needs --edge URL (or --draft, which "
                          "runs the split pipeline here)")
    failures, images = InputFailures("caption"), []
    for path in args.images:
        with failures.of(path):
            images.append((str(path), read_image(path)))
    rows = []
    if not images:   # nothing readable: no model to load
        return failures.status
    if args.edge is None and args.draft:
        rows = _caption_drafted_here(args, images)
    elif args.edge is None:
        from intelliflow.models import load_split_model

        model = load_split_model(args.model, split=args.split)
        rows = [{"image": p, "caption": c} for (p, _), c in zip(images, model.caption([i for _, i in images]))]
    else:
        from intelliflow.deploy.auth import credentials_from_env
        from intelliflow.deploy.client import EdgeClient

        client = EdgeClient(args.edge, credentials=credentials_from_env())
        device = SplitDevice(args.model, args.codec, client, split=args.split,
                             compress_options={"q": args.q} if args.q is not None else None,
                             stream=None if args.framing == "stream" else False, drafter=args.draft)
        device.client.wait_ready(timeout=args.wait)
        for path, image in images:
            with failures.of(path):
                rows.append({"image": path, **device.caption_one(image)})
    if args.json:
        print_json(rows)
        return failures.status
    for r in rows:
        timing = (f"  ({r['bits']} bits; device {r['device_ms']:.1f} ms, encode {r['encode_ms']:.1f} ms, "
                  f"round trip {r['roundtrip_ms']:.1f} ms)") if "device_ms" in r else ""
        print(f"{r['image']}: {r['caption']}{timing}")
        if "draft" in r:
            d = r["draft"]
            early = "shown at once" if d["confidence"] >= args.early_threshold else "not confident enough to show"
            print(f"  draft ({d['confidence']:.2f}, {early}): {d['text']}\n"
                  f"  {d['accepted']}/{d['drafted']} draft tokens accepted; {d['bits']} of the payload's "
                  f"{r['bits']} bits; receiver decoder passes {d['passes']} (plain greedy {d['greedy_passes']})")
    return failures.status


def _caption_drafted_here(args, images) -> list[dict]:
    """``caption --draft`` without ``--edge``: the whole split pipeline here (head, drafter, codec,
    an ideal link, the receiver verifying the draft)."""
    from intelliflow.codec import resolve_codec
    from intelliflow.flow import Flow
    from intelliflow.flow.endpoints import split_for
    from intelliflow.models import load_split_model
    from intelliflow.models.drafter import load_drafter

    codec, drafter = resolve_codec(args.codec), load_drafter(args.draft)
    split = args.split if args.split is not None else split_for(codec, args.model, None)
    model = load_split_model(args.model, split=drafter.config.split if split is None else split)
    flow = Flow(model, codec, drafter=drafter, framing=args.framing).eval()
    rows = []
    for path, image in images:
        result = flow.caption([image], q=args.q)
        d = result.draft
        rows.append({"image": path, "caption": result.captions[0], "bits": result.payload_bits[0],
                     "draft": {"text": d.captions[0], "confidence": d.confidence[0], "bits": d.bits[0],
                               "drafted": d.drafted[0], "accepted": d.accepted[0], "passes": d.passes[0],
                               "greedy_passes": d.greedy_passes[0]}})
    return rows


@COMMAND_GROUPS.register("deploy")
def register(sub) -> None:
    """Add this group's commands to the main parser's sub-parsers."""
    p = sub.add_parser("serve", help="edge side of a split deployment: HTTP service finishing captions "
                                     "(POST /caption with an .iflow body or a stream payload, POST /stream, GET /health)",
                       epilog="Every device is served by default. With INTELLIFLOW_TOKEN=<secret> in the environment "
                              "only requests carrying Authorization: Bearer <secret> are; with "
                              "INTELLIFLOW_HMAC_KEY=<secret>, only requests signed with it (an HMAC-SHA256 of a "
                              "timestamp and the body: the secret never travels, replays are refused).")
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
    p.add_argument("--max-connections", type=int, default=128, help="connections served at once (more are closed)")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.add_argument("--draft", default=None, metavar="DRAFTER",
                   help="verify drafts of this drafter (shapes-drafter or a folder) where a request carries one "
                        "(speculative captioning: the caption is the same, in fewer decoder passes)")
    p.set_defaults(func=cmd_serve)


    p = sub.add_parser("caption", help="device side: caption images, the tail finished by an edge service "
                                       "(--edge URL), or the whole model here without --edge")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--edge", default=None, help="URL of an intelliflow serve (http://HOST:PORT); the environment's "
                                                "INTELLIFLOW_TOKEN or INTELLIFLOW_HMAC_KEY proves this device to a service "
                                                "that requires it")
    p.add_argument("--model", default="shapes-captioner")
    p.add_argument("--split", type=int, default=None)
    p.add_argument("--codec", default="shapes-hyperprior", help="with --edge: the codec the edge serves; with --draft: "
                                                                  "the codec of the local pipeline")
    p.add_argument("--q", type=float, default=None,
                   help="with --edge or --draft: rate point of a learned codec (default: its highest)")
    p.add_argument("--framing", choices=("stream", "file"), default="stream",
                   help="with --edge: stream (default where the codec has a stream mode: the context agreed once per "
                        "connection, each request the bare payload) or file (an .iflow file per request)")
    add_draft_arguments(p, "the edge must serve with the same --draft; without --edge the whole split pipeline "
                           "runs here")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the edge to be ready")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_caption)
