"""Load on the edge service: N concurrent clients for T seconds, no failed request, no lost caption.

``intelliflow serve`` runs in its own process (as deployed); the clients run as threads of this
process, each on its own keep-alive connection, sending pre-encoded ``.iflow`` files of
``shapes:val`` images back to back (the device side's compute is left out so that the load is on
the edge). Every answer is checked against the caption the same file gets alone: a request
counts as failed if it errors or times out, and a caption as lost if it is empty or differs.

With ``--forgers N``, N more clients send forged files as fast as they can: honest files whose
payload header claims another grid size (4x5, 255x255) with every check recomputed, as anyone
with the package can. Each must get a 4xx quickly while every honest request still gets its solo
caption (``--forgers 1 --clients 16`` is the hardening target of issue #18). With ``--auth hmac``
(or ``token``) the service serves configured devices only: the honest clients know the secret, the
forgers do not, and every forged request must get 401.

Run: ``python benchmarks/edge_load.py`` (defaults: 50 clients, 60 s); writes
``benchmarks/results/edge_load/report.json``.
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
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def forge(data: bytes, height: int, width: int, codec_name: str) -> bytes:
    """``data`` with its payload header claiming a ``height`` x ``width`` latent, every check recomputed."""
    from intelliflow.codec import bitstream, resolve_codec
    from intelliflow.deploy.container import pack_iflow, unpack_iflow

    parsed = unpack_iflow(data)
    codec = resolve_codec(codec_name)
    packet = bitstream.unpack(parsed.payload, codec.payload_id, codec.fingerprint)
    payload = bitstream.pack(codec.payload_id, packet.q16, height, width, packet.body, codec.fingerprint)
    return pack_iflow(parsed.model, parsed.split, parsed.codec, payload)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--model", default="shapes-captioner")
    parser.add_argument("--codec", default="shapes-hyperprior")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the service")
    parser.add_argument("--forgers", type=int, default=0, help="clients sending forged payloads as fast as they can")
    parser.add_argument("--auth", choices=("none", "token", "hmac"), default="none",
                        help="the service serves configured devices only: the honest clients know the secret, the "
                             "forgers do not (their requests must then all get 401)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/edge_load"))
    args = parser.parse_args()

    import torch

    from intelliflow.data.shapes import make_sample
    from intelliflow.errors import ServiceError
    from intelliflow.deploy.client import EdgeClient, SplitDevice
    from intelliflow.deploy.files import FileDecoder

    torch.set_num_threads(1)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from intelliflow.deploy.auth import ENVIRONMENT, Credentials

    secret = "edge-load-secret"
    credentials = None if args.auth == "none" else Credentials(args.auth, secret)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), **({ENVIRONMENT[args.auth]: secret} if credentials else {})}
    server = subprocess.Popen([sys.executable, "-m", "intelliflow.recipes.cli", "serve", "--model", args.model,
                               "--codec", args.codec, "--port", str(port), "--max-batch", str(args.max_batch),
                               "--threads", str(args.threads)], env=env, stdout=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        device = SplitDevice(args.model, args.codec, url, stream=False)   # .iflow files: the forgers rewrite their headers
        files = [device.encode(make_sample("val", i).image)[0] for i in range(args.clients)]
        decoder = FileDecoder()
        expected = [decoder.decode(f)[0] for f in files]
        device.client.wait_ready(timeout=120)
        results: list[list] = [[] for _ in range(args.clients)]
        failures: list[str] = []
        lies = [forge(files[0], 4, 5, args.codec), forge(files[0], 255, 255, args.codec)]
        forged: list[tuple[str, float]] = []
        start_gate = threading.Barrier(args.clients + args.forgers + 1)
        stop_at = [0.0]

        def client(i: int) -> None:
            c = EdgeClient(url, timeout=60, credentials=credentials and Credentials(args.auth, secret))
            start_gate.wait()
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                try:
                    answer = c.caption(files[i])
                except ServiceError as exc:
                    failures.append(f"client {i}: {exc}")
                    continue
                results[i].append((1e3 * (time.perf_counter() - t0), answer["caption"] == expected[i],
                                   answer["batch"]))

        def forger(i: int) -> None:
            c = EdgeClient(url, timeout=60)
            start_gate.wait()
            k = 0
            while time.perf_counter() < stop_at[0]:
                t0 = time.perf_counter()
                try:
                    c.caption(lies[k % len(lies)])
                    outcome = "200"
                except ServiceError as exc:
                    outcome = str(exc).split("answered ")[-1][:3]
                forged.append((outcome, 1e3 * (time.perf_counter() - t0)))
                k += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
        threads += [threading.Thread(target=forger, args=(i,), daemon=True) for i in range(args.forgers)]
        for t in threads:
            t.start()
        stop_at[0] = time.perf_counter() + args.seconds
        start_gate.wait()
        began = time.perf_counter()
        for t in threads:
            t.join(timeout=args.seconds + 120)
        elapsed = time.perf_counter() - began
        health = device.client.health()
    finally:
        server.terminate()
        server.wait(timeout=30)

    done = [r for rs in results for r in rs]
    latencies = sorted(r[0] for r in done)
    batches = Counter(r[2] for r in done)
    report = {
        "clients": args.clients, "seconds": elapsed, "auth": args.auth, "model": args.model, "codec": args.codec,
        "service_threads": args.threads, "max_batch": args.max_batch,
        "requests": len(done) + len(failures), "answered": len(done), "failed": len(failures),
        "lost_or_wrong_captions": sum(1 for r in done if not r[1]),
        "clients_served": sum(1 for rs in results if rs),
        "throughput_per_s": len(done) / elapsed,
        "latency_ms": {"median": statistics.median(latencies), "p90": latencies[int(0.9 * (len(latencies) - 1))],
                       "p99": latencies[int(0.99 * (len(latencies) - 1))], "max": latencies[-1]} if latencies else {},
        "mean_batch": sum(k * v for k, v in batches.items()) / max(1, len(done)),
        "batch_sizes": dict(sorted(batches.items())), "service_health": health,
        "first_failures": failures[:5],
    }
    if args.forgers:
        times = sorted(t for _, t in forged)
        report["forgers"] = {"clients": args.forgers, "requests": len(forged),
                             "answers": dict(Counter(o for o, _ in forged)),
                             "roundtrip_ms": {"median": statistics.median(times), "p99": times[int(0.99 * (len(times) - 1))],
                                              "max": times[-1]} if times else {}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k not in ("batch_sizes", "service_health")}, indent=2))
    ok = report["failed"] == 0 and report["lost_or_wrong_captions"] == 0 and report["clients_served"] == args.clients
    if args.forgers:
        ok = ok and set(report["forgers"]["answers"]) == {"400" if credentials is None else "401"}
    print("PASS" if ok else "FAIL", f"wrote {out / 'report.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
