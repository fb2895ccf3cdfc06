"""Scenario (a): the built-in pipeline at its real sizes, every figure measured, over an emulated link.

1. The planner picks each paradigm's operating point from the measured rate-quality table
   (``benchmarks/results/end_to_end/results.csv``) at the quality floor (95 % of clean CIDEr-D).
2. Device and edge run in two network namespaces (root) joined by two veth pairs: a shaped one
   (``tc netem`` at the link's rate and one-way delay on both ends; on a kernel without the
   netem qdisc, a user-space relay in the edge namespace does the shaping) and an unshaped one.
   ``intelliflow serve`` runs in the edge namespace, the device side (``SplitDevice``) in the
   other, one thread each. Every image goes over the unshaped path and then the shaped one.
3. The unshaped samples profile the deployment: device, encode and edge-service time per
   paradigm, and the HTTP exchange's own cost. The latency model adds the shaped link (rate,
   delay, the protocol's bytes) and predicts each paradigm's response time; the shaped samples
   are the measurement. Without namespaces the stages are timed in this process and the script
   reports the model only, saying why.

Two comparisons are reported: the model with the compute profiled over the unshaped path
(``model_error``: the prediction), and the model with each shaped request's own measured compute
(``link_model_error``: the link and protocol part of the model alone). Interleaving the two paths
image by image keeps the machine's drift (large on a shared 2-core box) out of the comparison.

The emulated "cloud" is the same edge machine across the same link (no backhaul), so the
cloud-only prediction uses a zero backhaul here; device-only sends its caption as text to the
edge (``--codec text``), as the paradigm defines.

With ``--draft`` (default ``shapes-drafter``) the split's operating point is measured a second
time with speculative captioning (``device-edge-draft``: the device drafts, the edge verifies),
and ``report.json`` says how much sooner its answers come (``draft``).

Run: ``sudo .venv/bin/python benchmarks/split_deployment.py`` (about 7 minutes); writes
``benchmarks/results/split_deployment/{report.json, paradigms.csv, latency.png, measured.png}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NS_DEV, NS_EDGE, DEV_IF, EDGE_IF, DEV_IF2, EDGE_IF2 = "ifl-dev", "ifl-edge", "ifl-d", "ifl-e", "ifl-d2", "ifl-e2"
DEV_IP, EDGE_IP, DEV_IP2, EDGE_IP2, PORT = "10.99.0.1", "10.99.0.2", "10.99.1.1", "10.99.1.2", 8080
# HTTP/1.1 request line and headers http.client sends, the service's status line, headers and
# JSON answer, and Ethernet + IPv4 + TCP (timestamps) headers on the 3 packets of an exchange:
# every byte crosses the shaped link, so the model counts them (estimated, see the docstring).
HTTP_REQUEST_BYTES, HTTP_RESPONSE_BYTES, PACKET_HEADER_BYTES, PACKETS = 135, 300, 66, 3


def overhead_bits(packet_headers: bool = True) -> float:
    """Protocol bits per request crossing the link (the user-space relay carries no packet headers)."""
    return 8.0 * (HTTP_REQUEST_BYTES + HTTP_RESPONSE_BYTES + (PACKETS * PACKET_HEADER_BYTES if packet_headers else 0))


# ---------------------------------------------------------------------- device side (in the dev namespace)
def run_client(urls: str, model: str, codec: str, q: float | None, images: int, out: str,
               drafter: str | None = None) -> None:
    """Device side: every image goes to each URL in turn (unshaped path, then shaped), so the two
    samples of one image are taken moments apart."""
    import torch

    from intelliflow.data.shapes import make_sample
    from intelliflow.deploy.client import EdgeClient, SplitDevice

    torch.set_num_threads(1)
    paths = dict(zip(("unshaped", "shaped"), urls.split(",")))
    device = SplitDevice(model, codec, paths["shaped"], compress_options={"q": q} if q is not None else None,
                         drafter=drafter)
    clients = {name: EdgeClient(url) for name, url in paths.items()}
    for client in clients.values():
        client.wait_ready(timeout=120)
    rows = {name: [] for name in clients}
    for i in range(images + 3):  # the first three warm up connections, caches and allocator
        image = make_sample("val", i).image
        for name, client in clients.items():
            row = device.caption_one(image, client)
            if i >= 3:
                rows[name].append(row)
    Path(out).write_text(json.dumps(rows))


# ---------------------------------------------------------------------- user-space link (no netem)
def run_relay(listen: str, target: str, rate_bit_s: float, delay_ms: float) -> None:
    """A TCP relay that emulates a link in both directions: every chunk of bytes is serialised at
    ``rate_bit_s`` after the previous one (queueing) and delivered ``delay_ms`` later."""
    import asyncio

    async def direction(reader, writer):
        loop, queue, free_at = asyncio.get_running_loop(), asyncio.Queue(), 0.0

        async def deliver():
            while (item := await queue.get()) is not None:
                at, data = item
                await asyncio.sleep(max(0.0, at - loop.time()))
                writer.write(data)
                await writer.drain()
            writer.close()

        task = asyncio.create_task(deliver())
        while data := await reader.read(65536):
            free_at = max(loop.time(), free_at) + 8 * len(data) / rate_bit_s
            await queue.put((free_at + delay_ms / 1e3, data))
        await queue.put(None)
        await task

    async def handle(client_reader, client_writer):
        host, port = target.rsplit(":", 1)
        server_reader, server_writer = await asyncio.open_connection(host, int(port))
        for w in (client_writer, server_writer):
            w.get_extra_info("socket").setsockopt(__import__("socket").IPPROTO_TCP, __import__("socket").TCP_NODELAY, 1)
        await asyncio.gather(direction(client_reader, server_writer), direction(server_reader, client_writer),
                             return_exceptions=True)

    async def serve():
        host, port = listen.rsplit(":", 1)
        server = await asyncio.start_server(handle, host, int(port))
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# ---------------------------------------------------------------------- stage times (this process)
def measure_compute(model_name: str, planner, plan, images: int) -> dict:
    """Median ms of every compute stage in this process, one thread, batch 1: {paradigm: {stage: ms}}."""
    import torch

    from intelliflow.system.measure import measure_stages

    torch.set_num_threads(1)
    t = measure_stages(model_name, planner, plan, images)["times_ms"]
    return {"device-only": {"device": t["full"]},
            "device-edge": {"device": t["head"], "encode": t["encode"], "decode": t["decode"], "edge": t["tail"]},
            "cloud-only": {"encode": t["image_encode"], "decode": t["image_decode"], "cloud": t["full"]}}


# ---------------------------------------------------------------------- the emulated link
def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def namespaces_available() -> str:
    """'' when namespaces, veth and netem can be set up here, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth and tc)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"the {tool!r} command is missing (iproute2)"
    probe = sh("ip", "netns", "add", "ifl-probe", check=False)
    if probe.returncode:
        return f"cannot create a network namespace: {probe.stderr.strip()}"
    sh("ip", "netns", "del", "ifl-probe", check=False)
    return ""


def netem_available() -> bool:
    """Whether this kernel has the netem qdisc (probed on a throw-away veth pair)."""
    sh("ip", "link", "add", "ifl-p0", "type", "veth", "peer", "name", "ifl-p1", check=False)
    ok = sh("tc", "qdisc", "add", "dev", "ifl-p0", "root", "netem", "delay", "1ms", check=False).returncode == 0
    sh("ip", "link", "del", "ifl-p0", check=False)
    return ok


def link_up(rate_mbit: float, delay_ms: float, netem: bool) -> None:
    """Two namespaces joined by two veth pairs: the shaped link (``EDGE_IP``) and an unshaped one
    (``EDGE_IP2``) the deployment is profiled over; netem shapes the first where the kernel has it."""
    link_down()
    sh("ip", "netns", "add", NS_DEV)
    sh("ip", "netns", "add", NS_EDGE)
    for (dev_if, edge_if, dev_ip, edge_ip), shaped in (((DEV_IF, EDGE_IF, DEV_IP, EDGE_IP), True),
                                                       ((DEV_IF2, EDGE_IF2, DEV_IP2, EDGE_IP2), False)):
        sh("ip", "link", "add", dev_if, "type", "veth", "peer", "name", edge_if)
        for ns, dev, ip in ((NS_DEV, dev_if, dev_ip), (NS_EDGE, edge_if, edge_ip)):
            sh("ip", "link", "set", dev, "netns", ns)
            sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "netns", "exec", ns, "ip", "link", "set", dev, "up")
            sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", check=False)
            if netem and shaped:
                sh("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay",
                   f"{delay_ms}ms", "rate", f"{rate_mbit}mbit", "limit", "10000")


def link_down() -> None:
    for ns in (NS_DEV, NS_EDGE):
        sh("ip", "netns", "del", ns, check=False)


def measure_over_link(codec: str, q: float | None, model: str, images: int, workdir: Path,
                      relay: tuple[float, float] | None, drafter: str | None = None) -> dict[str, list[dict]]:
    """Serve ``codec`` in the edge namespace and caption from the device namespace over both
    paths: ``{"unshaped": rows, "shaped": rows}``. ``relay=(bit/s, one-way ms)``: no netem here,
    so the service listens on the edge's loopback behind two user-space relays (the shaped one,
    and an unthrottled one, so that the relay's own cost is in the profile too)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    host, port = ("127.0.0.1", PORT + 1) if relay else ("0.0.0.0", PORT)
    server = subprocess.Popen(["ip", "netns", "exec", NS_EDGE, sys.executable, "-m", "intelliflow.recipes.cli",
                               "serve", "--role", "edge", "--model", model, "--codec", codec, "--host", host,
                               "--port", str(port), "--threads", "1", *(["--draft", drafter] if drafter else [])],
                              env=env, stdout=subprocess.DEVNULL,
                              stderr=(log := (workdir / f"edge-{codec}.log").open("w")))
    helpers = [server]
    if relay:
        for listen, (rate, delay) in ((EDGE_IP, relay), (EDGE_IP2, (1e12, 0.0))):
            helpers.append(subprocess.Popen(["ip", "netns", "exec", NS_EDGE, sys.executable, __file__, "--relay",
                                             f"{listen}:{PORT}", "--relay-to", f"127.0.0.1:{port}", "--relay-rate",
                                             str(rate), "--relay-delay", str(delay)], env=env))
    out = workdir / f"client-{codec}.json"
    try:
        urls = f"http://{EDGE_IP2}:{PORT},http://{EDGE_IP}:{PORT}"
        cmd = ["ip", "netns", "exec", NS_DEV, sys.executable, __file__, "--client", urls,
               "--codec", codec, "--model", model, "--images", str(images), "--client-out", str(out)]
        if q is not None:
            cmd += ["--q", str(q)]
        if drafter:
            cmd += ["--client-draft", drafter]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode:
            raise RuntimeError(f"device side failed for {codec}: {done.stderr[-2000:]}\n"
                               f"edge log ({log.name}): {open(log.name).read()[-2000:]}")
        return json.loads(out.read_text())
    finally:
        for proc in helpers:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        out.unlink(missing_ok=True)


# ---------------------------------------------------------------------- report
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results/end_to_end"))
    parser.add_argument("--model", default="shapes-captioner")
    parser.add_argument("--rate-mbit", type=float, default=1.0, help="emulated uplink and downlink rate")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="one-way delay of each direction")
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--quality", type=float, default=0.95)
    parser.add_argument("--draft", default="shapes-drafter",
                        help="also measure the split with this drafter (device-edge-draft); 'none' to skip")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/split_deployment"))
    parser.add_argument("--client", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--codec", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--q", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--client-out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--client-draft", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--relay", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--relay-to", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--relay-rate", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--relay-delay", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay:
        run_relay(args.relay, args.relay_to, args.relay_rate, args.relay_delay)
        return 0
    if args.client:
        run_client(args.client, args.model, args.codec, args.q, args.images, args.client_out, args.client_draft)
        return 0
    drafter = None if args.draft == "none" else args.draft

    from intelliflow.system.latency import (STAGES, Backhaul, NodeProfile, WirelessLink, breakdown, crossover_bandwidth,
                                          plot_latency)
    from intelliflow.system.costs import build_planner

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    why = namespaces_available()
    netem = not why and netem_available()
    link = WirelessLink(bit_rate=args.rate_mbit * 1e6, rtt_ms=2 * args.delay_ms, overhead_bits=overhead_bits(netem))
    planner, _ = build_planner([args.results], model=args.model, quality=args.quality)
    here = NodeProfile("this-cpu", 1e10, source="this machine, one thread: every compute stage measured")
    planner.device = planner.edge = planner.cloud = here
    planner.backhaul = Backhaul(bits_per_s=1e15, rtt_ms=0.0)  # the emulated cloud is the edge
    first = planner.plan(link)
    best = first.best_per_paradigm()
    split, upload = best["device-edge"], best["cloud-only"]
    print(f"operating points: split {split.candidate.label}; upload {upload.candidate.label}", flush=True)
    best = {p: o for p, o in best.items() if p != "device-edge-cloud"}
    measured: dict[str, list[dict]] = {}
    protocol_ms: dict[str, float] = {}
    if why:  # no namespaces: compute stages timed in this process, the model only
        print(f"emulated link skipped: {why}; reporting the model only", flush=True)
        planner.measured_ms = measure_compute(args.model, planner, first, args.images)
        emulated = f"skipped: {why}"
    else:
        emulated = ("two network namespaces joined by two veth pairs; tc netem (rate and delay) on both ends of the "
                    "shaped pair" if netem else
                    "two network namespaces joined by two veth pairs; this kernel has no netem qdisc, so the rate "
                    "and delay are emulated by a user-space relay in the edge namespace (bytes serialised at the rate, "
                    "delivered after the delay, both directions)")
        print(f"emulated link: {emulated}", flush=True)
        unshaped = {}
        try:
            link_up(args.rate_mbit, args.delay_ms, netem)
            runs = [(p, o, None) for p, o in best.items()]
            if drafter:   # the split's operating point again, the device drafting and the edge verifying
                runs.append(("device-edge-draft", best["device-edge"], drafter))
            for paradigm, o, draft in runs:
                codec = "text" if paradigm == "device-only" else o.candidate.codec
                print(f"measuring {paradigm} ({codec}): each image over the unshaped, then the shaped path", flush=True)
                both = measure_over_link(codec, o.candidate.rate_point, args.model, args.images, out,
                                         None if netem else (link.bit_rate, args.delay_ms), draft)
                unshaped[paradigm], measured[paradigm] = both["unshaped"], both["shaped"]
        finally:
            link_down()
        for log in out.glob("edge-*.log"):  # kept only when a run fails
            log.unlink()
        # the model's compute: the deployment's own stage times over the unshaped path
        med = {p: {k: statistics.median(r[k] for r in rs) for k in ("device_ms", "encode_ms", "edge_ms")}
               for p, rs in unshaped.items()}
        planner.measured_ms = {
            "device-only": {"device": med["device-only"]["device_ms"] + med["device-only"]["encode_ms"]},
            "device-edge": {"device": med["device-edge"]["device_ms"], "encode": med["device-edge"]["encode_ms"],
                            "edge": med["device-edge"]["edge_ms"], "decode": 0.0},  # decode: inside edge_ms
            "cloud-only": {"encode": med["cloud-only"]["encode_ms"], "cloud": med["cloud-only"]["edge_ms"],
                           "decode": 0.0}}  # the image's decoding: inside the service's time
        if "device-edge-draft" in unshaped:   # drafting is device time; the codec's encoding is the rest of encode_ms
            draft_ms = statistics.median(r["draft_ms"] for r in unshaped["device-edge-draft"])
            d = med["device-edge-draft"]
            planner.measured_ms["device-edge-draft"] = {"device": d["device_ms"] + draft_ms,
                                                        "encode": d["encode_ms"] - draft_ms, "edge": d["edge_ms"],
                                                        "decode": 0.0}
        # the HTTP exchange's own cost (and the relay's) over the unshaped path, per paradigm
        protocol_ms = {p: statistics.median(r["roundtrip_ms"] - r["edge_ms"] for r in rs) for p, rs in unshaped.items()}
    plan = planner.plan(link)
    best = {p: o for p, o in plan.best_per_paradigm().items() if p != "device-edge-cloud"}
    if "device-edge-draft" in measured:   # the split's candidate with the draft's measured bits and passes
        from intelliflow.system.planner import Candidate, Option

        rows_d = measured["device-edge-draft"]
        c = best["device-edge"].candidate
        extra = statistics.median(r["bits"] for r in rows_d) - statistics.median(r["bits"] for r in measured["device-edge"])
        drafted = Candidate("device-edge-draft", c.method + " + draft", c.codec, c.split, c.quality,
                            c.payload_bits + extra, rate_point=c.rate_point,   # the draft's measured bits on top
                            receiver_passes=statistics.median(r["draft"]["passes"] for r in rows_d),
                            draft_tokens=statistics.median(r["draft"]["drafted"] for r in rows_d))
        best["device-edge-draft"] = Option(drafted, {})
    for p, o in best.items():  # each paradigm's model with its own protocol cost on the link
        o.ms = breakdown(planner.scenario(o.candidate, replace(link, rtt_ms=link.rtt_ms + protocol_ms.get(p, 0.0))), p)
    report = {"link": {"rate_bit_s": link.bit_rate, "one_way_delay_ms": args.delay_ms,
                       "overhead_bits_per_request": link.overhead_bits},
              "protocol_ms_unshaped": protocol_ms, "emulated": emulated,
              "compute_from": "in-process timing" if why else "the deployment over the unshaped path, interleaved",
              "clean_CIDEr-D": plan.clean, "floor_CIDEr-D": plan.floor, "measured_compute_ms": planner.measured_ms,
              "paradigms": {}}
    rows = []
    for paradigm, o in best.items():
        entry = {"operating_point": o.candidate.label, "CIDEr-D": o.candidate.quality,
                 "payload_bits": o.candidate.payload_bits, "model_ms": o.ms}
        if paradigm in measured:
            totals = [r["total_ms"] for r in measured[paradigm]]
            entry["measured_total_ms_median"] = statistics.median(totals)
            entry["measured_total_ms_p90"] = sorted(totals)[int(0.9 * (len(totals) - 1))]
            entry["measured_wire_bytes"] = statistics.median(r["wire_bytes"] for r in measured[paradigm])
            entry["model_error"] = o.total / entry["measured_total_ms_median"] - 1
            entry["measured_parts_ms_median"] = {
                k: statistics.median(r[k] for r in measured[paradigm]) for k in ("device_ms", "encode_ms", "edge_ms")}
            entry["measured_parts_ms_median"]["link_and_protocol_ms"] = statistics.median(
                r["roundtrip_ms"] - r["edge_ms"] for r in measured[paradigm])
            # the link model alone: each request's own measured compute + the modelled link
            link_ms = o.ms["uplink"]
            same = [r["device_ms"] + r["encode_ms"] + r["edge_ms"] + link_ms for r in measured[paradigm]]
            entry["model_with_same_request_compute_ms_median"] = statistics.median(same)
            entry["link_model_error"] = statistics.median(
                (m - r["total_ms"]) / r["total_ms"] for m, r in zip(same, measured[paradigm]))
        report["paradigms"][paradigm] = entry
        rows.append({"paradigm": paradigm, "operating_point": o.candidate.label, "CIDEr-D": o.candidate.quality,
                     **{f"{s}_ms": o.ms[s] for s in STAGES}, "model_total_ms": o.total,
                     "measured_total_ms": entry.get("measured_total_ms_median"),
                     "model_error": entry.get("model_error"), "link_model_error": entry.get("link_model_error")})
    scenario = planner.comparison(plan)
    report["crossover_uplink_bit_s"] = crossover_bandwidth(scenario, "device-edge", "cloud-only", 1e3, 1e10)
    # the device-speed crossover with measured stage times: slow every device-side stage by f
    dev_only, split_ms = best["device-only"].ms, best["device-edge"].ms
    device_side = split_ms["device"] + split_ms["encode"]
    rest = split_ms["total"] - device_side - (dev_only["total"] - dev_only["device"])
    report["device_slowdown_where_split_wins"] = (rest / (dev_only["device"] - device_side)
                                                  if dev_only["device"] > device_side else None)
    report["split_vs_cloud_quality"] = split.candidate.quality / upload.candidate.quality
    if "device-edge-draft" in measured:
        plain_med = report["paradigms"]["device-edge"]["measured_total_ms_median"]
        draft_med = report["paradigms"]["device-edge-draft"]["measured_total_ms_median"]
        rows_d = measured["device-edge-draft"]
        report["draft"] = {"drafter": drafter, "speedup_vs_split_measured_median": plain_med / draft_med,
                           "accepted_of_drafted": sum(r["draft"]["accepted"] for r in rows_d)
                           / max(1, sum(r["draft"]["drafted"] for r in rows_d)),
                           "edge_passes_median": statistics.median(r["draft"]["passes"] for r in rows_d),
                           "greedy_passes_median": statistics.median(r["draft"]["greedy_passes"] for r in rows_d),
                           "draft_bits_median": statistics.median(r["draft"]["bits"] for r in rows_d),
                           "early_answer_ms_median": statistics.median(r["device_ms"] + r["draft_ms"] for r in rows_d)}
        print(f"with drafts: {plain_med:.1f} -> {draft_med:.1f} ms median ({plain_med / draft_med:.2f}x); the device's "
              f"own draft after {report['draft']['early_answer_ms_median']:.1f} ms", flush=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    with (out / "paradigms.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    plot_latency(scenario, out / "latency.png", paradigms=("device-only", "cloud-only", "device-edge"), low=1e4,
                 high=1e9, title=f"shapes-captioner, stages measured here; link delay {args.delay_ms:g} ms each way")
    if measured:
        plot_measured(report, out / "measured.png")
    for r in rows:
        meas = "" if r["measured_total_ms"] is None else \
            (f"  measured {r['measured_total_ms']:.1f} ms ({100 * r['model_error']:+.1f} %; link model alone "
             f"{100 * r['link_model_error']:+.1f} %)")
        print(f"{r['paradigm']:<12} {r['operating_point']:<52} model {r['model_total_ms']:.1f} ms{meas}")
    f, cross = report["device_slowdown_where_split_wins"], report["crossover_uplink_bit_s"]
    print((f"split beats the upload below {cross / 1e3:.3g} kbit/s of uplink; " if cross else
           "split and upload do not cross between 1 kbit/s and 10 Gbit/s; ")
          + (f"it beats device-only once the device is {f:.2f}x slower than this CPU" if f else "never device-only"))
    print(f"wrote {out}")
    return 0


def plot_measured(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from intelliflow.system.latency import STAGES

    names = list(report["paradigms"])
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    for i, name in enumerate(names):
        entry, bottom = report["paradigms"][name], 0.0
        for j, stage in enumerate(STAGES):
            v = entry["model_ms"][stage]
            ax.bar(i - 0.2, v, 0.38, bottom=bottom, color=f"C{j}", label=stage if i == 0 else None)
            bottom += v
        if "measured_total_ms_median" in entry:
            ax.bar(i + 0.2, entry["measured_total_ms_median"], 0.38, color="0.4",
                   label="measured (median)" if i == 0 else None)
    ax.set_xticks(range(len(names)), [f"{n}\n(model | measured)" for n in names])
    ax.set_ylabel("response time per image (ms)")
    link = report["link"]
    ax.set_title(f"emulated link {link['rate_bit_s'] / 1e6:g} Mbit/s, {link['one_way_delay_ms']:g} ms each way")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
