"""``intelliflow serve`` and ``caption``: a real split deployment (edge service, device client)."""

from __future__ import annotations

from . import COMMAND_GROUPS
from .common import print_json, read_image


def cmd_serve(args) -> int:
    """Edge (or cloud) side: an HTTP service that finishes captions from .iflow payloads."""
    import os
    import signal
    import threading

    from intelliflow.deploy.service import EdgeService, start_server

    service = EdgeService(args.model, args.codec, split=args.split, max_batch=args.max_batch,
                          batch_wait_ms=args.batch_wait_ms, threads=args.threads)
    # /health answers 503 while the model loads; Ctrl-C during the load interrupts it (KeyboardInterrupt)
    server, _ = start_server(service, args.host, args.port, load_in_background=False, max_body_bytes=args.max_bytes,
                             verbose=args.verbose, max_connections=args.max_connections,
                             token=os.environ.get("INTELLIFLOW_TOKEN") or None)
    stop = threading.Event()
    try:
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
    from intelliflow.deploy.client import SplitDevice

    images = [read_image(path) for path in args.images]
    if args.edge is None and args.q is not None:
        from intelliflow.errors import ConfigError

        raise ConfigError("--q sets the codec's rate point for the edge: it needs --edge URL")
    if args.edge is None:
        from intelliflow.models import load_split_model

        model = load_split_model(args.model, split=args.split)
        rows = [{"image": str(p), "caption": c} for p, c in zip(args.images, model.caption(images))]
    else:
        import os

        from intelliflow.deploy.client import EdgeClient

        client = EdgeClient(args.edge, token=os.environ.get("INTELLIFLOW_TOKEN") or None)
        device = SplitDevice(args.model, args.codec, client, split=args.split,
                             compress_options={"q": args.q} if args.q is not None else None)
        device.client.wait_ready(timeout=args.wait)
        rows = [{"image": str(p), **r} for p, r in zip(args.images, device.caption(images))]
    if args.json:
        print_json(rows)
        return 0
    for r in rows:
        timing = (f"  ({r['bits']} bits; device {r['device_ms']:.1f} ms, encode {r['encode_ms']:.1f} ms, "
                  f"round trip {r['roundtrip_ms']:.1f} ms)") if "bits" in r else ""
        print(f"{r['image']}: {r['caption']}{timing}")
    return 0


@COMMAND_GROUPS.register("deploy")
def register(sub) -> None:
    """Add this group's commands to the main parser's sub-parsers."""
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
    p.add_argument("--max-connections", type=int, default=128, help="connections served at once (more are closed); "
                   "with INTELLIFLOW_TOKEN set in the environment only requests carrying it are served")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=cmd_serve)


    p = sub.add_parser("caption", help="device side: caption images, the tail finished by an edge service "
                                       "(--edge URL), or the whole model here without --edge")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--edge", default=None, help="URL of an intelliflow serve (http://HOST:PORT); the environment's "
                                                "INTELLIFLOW_TOKEN is sent to a service that requires one")
    p.add_argument("--model", default="shapes-captioner")
    p.add_argument("--split", type=int, default=None)
    p.add_argument("--codec", default="shapes-hyperprior", help="with --edge: the codec the edge serves")
    p.add_argument("--q", type=float, default=None,
                   help="with --edge: rate point of a learned codec (default: its highest)")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the edge to be ready")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_caption)
