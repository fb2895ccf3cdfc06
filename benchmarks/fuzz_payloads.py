"""Fuzz the receiver with mutated and forged ``.iflow`` files, and count what happens.

Honest files are encoded from ``shapes:val`` with the shipped captioner for several codecs; each
is then mutated: every single-bit flip of the header and of the first payload bytes, every
truncation, random byte insertions, random blobs, and forgeries a hostile sender can compute
(the payload's own check and the container's CRC recomputed around a header that claims another
grid size, rate point or split point). Every mutated file goes through the receiver
(:class:`intelliflow.deploy.files.FileDecoder`, shipped names only), and each outcome is counted:

- ``refused``: a one-line error from ``intelliflow.errors`` (what should happen);
- ``same_caption``: it decoded to its source's caption (harmless);
- ``wrong_caption``: it decoded to another caption (a silent wrong answer);
- ``traceback``: any other exception;

separately for damaged files (flips, truncations, insertions, blobs: no wrong caption and no
traceback allowed) and forged ones (no traceback allowed; a forger who recomputes every check can
make a valid file for another fixed-codec split point, which only the service's shared secret
refuses, so those are counted, not failed), with the slowest decode, the largest Python-heap peak
(tracemalloc) of any mutated file, and how far the process's peak resident memory rose over a
codec's files (``ru_maxrss``; it bounds every single file's peak, torch's allocations included).
PASS also needs every decode under 1 s and that rise under 100 MB.

Codecs with a stream mode are fuzzed as streams too: a ``.iflows`` stream file of the images
(mutated as above: its CRC-32 must refuse every damaged file, no wrong caption), and each image's
bare stream payload as it crosses a link (no check of its own: over the 5G link the CRC-24A of
every code block is the check), decoded by the receiver in the stream's context: a damaged bare
payload may decode to another caption (counted, ``wrong_caption``), but never to a traceback, a
slow decode or a memory blow-up.

    python benchmarks/fuzz_payloads.py [--images 4] [--random 200] [--out benchmarks/results/fuzz_payloads.json]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODECS = ("shapes-hyperprior", "mse-codec", "quantize-8", "jpeg-50", "text", "shapes-bmshj2018-2")


def forgeries(data: bytes) -> list[tuple[str, bytes]]:
    """Files a sender with the package can compute: checks recomputed around lying headers."""
    from intelliflow.codec import bitstream, resolve_codec
    from intelliflow.deploy.container import pack_iflow, unpack_iflow

    parsed = unpack_iflow(data)
    out = [(f"forged split {k}", pack_iflow(parsed.model, k, parsed.codec, parsed.payload)) for k in (0, 2, 3, 5, 200)]
    codec = resolve_codec(parsed.codec, folders=False)
    if codec.payload_id is None:
        return out
    finger = codec.fingerprint
    packet = bitstream.unpack(parsed.payload, codec.payload_id, finger)
    for h, w, q16 in ((4, 5, packet.q16), (5, 4, packet.q16), (255, 255, packet.q16), (1, 1, packet.q16),
                      (packet.height, packet.width, 255), (packet.height, packet.width, 0)):
        payload = bitstream.pack(codec.payload_id, q16, h, w, packet.body, finger)
        out.append((f"forged latent {h}x{w} q16 {q16}", pack_iflow(parsed.model, parsed.split, parsed.codec, payload)))
    return out


def mutations(data: bytes, rng: random.Random, n_random: int, payload_bits: int = 256,
              header: int | None = None, forged: bool = True) -> list[tuple[str, bytes]]:
    """Bit flips of the header and the first payload bytes, truncations, insertions, blobs (and, for
    ``.iflow`` files, forgeries); ``header``: its bytes (default: an ``.iflow`` file's)."""
    from intelliflow.deploy.container import unpack_iflow

    if header is None:
        header = len(data) - len(unpack_iflow(data).payload) - 4
    out = []
    for i in range(8 * min(len(data), header + payload_bits // 8)):
        flipped = bytearray(data)
        flipped[i // 8] ^= 1 << (i % 8)
        out.append(("bit flip", bytes(flipped)))
    out += [("truncation", data[:n]) for n in range(len(data))]
    for _ in range(n_random):
        at = rng.randrange(len(data) + 1)
        out.append(("insertion", data[:at] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[at:]))
        out.append(("blob", bytes(rng.randrange(256) for _ in range(rng.randint(1, 2 * len(data) + 1)))))
    return out + (forgeries(data) if forged else [])


def run_cases(cases, decode, truth, name: str) -> dict:
    """Decode every (source, kind, bytes) case; count outcomes, time, heap and RSS (see the docstring)."""
    from tqdm import tqdm

    from intelliflow.errors import IntelliflowError

    counts, kinds, worst_ms, worst_heap, wrong = Counter(), Counter(), 0.0, 0, []
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # kB, after the honest decodes
    for src, kind, bad in tqdm(cases, desc=name, unit="file", file=sys.stderr):
        tracemalloc.start()
        start = time.perf_counter()
        try:
            caption = decode(bad)
            outcome = "same_caption" if caption == truth[src] else "wrong_caption"
            if outcome == "wrong_caption":
                wrong.append({"mutation": kind, "caption": caption, "source": truth[src]})
        except IntelliflowError:
            outcome = "refused"
        except Exception as exc:  # noqa: BLE001 - what the benchmark counts
            outcome = "traceback"
            wrong.append({"mutation": kind, "error": f"{type(exc).__name__}: {exc}"[:200]})
        worst_ms = max(worst_ms, 1e3 * (time.perf_counter() - start))
        worst_heap = max(worst_heap, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        group = "forged" if kind.startswith("forged") else "damaged"
        counts[(group, outcome)] += 1
        kinds[kind.split(" ")[0] if group == "damaged" else "forged"] += 1
    outcomes = {group: {o: n for (g, o), n in sorted(counts.items()) if g == group} for group in ("damaged", "forged")}
    result = {"files": len(cases), "mutations": dict(kinds), "outcomes": outcomes,
              "slowest_ms": round(worst_ms, 1), "largest_heap_mb": round(worst_heap / 2**20, 2),
              "peak_rss_rise_mb": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024, 1),
              "first_bad": wrong[:5]}
    print(f"{name:<30} {len(cases):>6} files: " + "; ".join(
        f"{group}: " + ", ".join(f"{k} {v}" for k, v in o.items()) for group, o in outcomes.items() if o)
        + f"; slowest {worst_ms:.0f} ms, heap peak {worst_heap / 2**20:.1f} MB, peak RSS rise "
        f"{result['peak_rss_rise_mb']:.1f} MB", flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--random", type=int, default=200, help="random insertions and blobs per file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/fuzz_payloads.json"))
    parser.add_argument("--codecs", default=",".join(CODECS), help="comma-separated codec names (default: %(default)s)")
    args = parser.parse_args()

    from intelliflow.data.shapes import make_sample
    from intelliflow.deploy.files import FileDecoder, FileEncoder
    from intelliflow.flow import Receiver

    rng = random.Random(args.seed)
    images = [make_sample("val", i).image for i in range(args.images)]
    decoder = FileDecoder()
    report = {"images": args.images, "codecs": {}, "streams": {}, "seed": args.seed}
    for name in args.codecs.split(","):
        encoder = FileEncoder("shapes-captioner", name)
        honest = encoder.encode(images)
        truth = [decoder.decode(d)[0] for d in honest]
        cases = [(src, kind, bad) for src, data in enumerate(honest) for kind, bad in mutations(data, rng, args.random)]
        report["codecs"][name] = run_cases(cases, lambda bad: decoder.decode(bad)[0], truth, name)
        codec = encoder.device.codec
        if not codec.streams:
            continue
        # a stream file: every image in one file, its CRC-32 over all of it
        whole = encoder.encode_stream(images)
        stream_truth = [[c for c, _ in decoder.decode_stream(whole)]]
        from intelliflow.codec.bitstream import write_varint
        from intelliflow.deploy.container import unpack_stream_file

        head = len(whole) - 4 - sum(len(write_varint(len(p))) + len(p) for p in unpack_stream_file(whole).payloads)
        cases = [(0, kind, bad) for kind, bad in mutations(whole, rng, args.random, header=head, forged=False)]
        stream_file = run_cases(cases, lambda bad: [c for c, _ in decoder.decode_stream(bad)], stream_truth,
                                f"{name} .iflows")
        # bare stream payloads as a link carries them: no check of their own
        stream = codec.stream_context(encoder.model.feature_grid, q=codec.rate_range()[1])
        receiver = Receiver(encoder.model, codec)
        bare = encoder.device.encode(images, stream=stream).data
        bare_truth = receiver.captions(bare, stream=stream)
        cases = [(src, kind, bad) for src, data in enumerate(bare)
                 for kind, bad in mutations(data, rng, args.random, header=0, forged=False)]
        bare_payloads = run_cases(cases, lambda bad: receiver.captions([bad], stream=stream)[0], bare_truth,
                                  f"{name} bare stream payloads")
        report["streams"][name] = {"stream_file": stream_file, "bare_payloads": bare_payloads}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    checked = [*report["codecs"].values(), *(s["stream_file"] for s in report["streams"].values())]
    every = [*checked, *(s["bare_payloads"] for s in report["streams"].values())]
    bad = sum(c["outcomes"]["damaged"].get("wrong_caption", 0) for c in checked) \
        + sum(c["outcomes"]["damaged"].get("traceback", 0) + c["outcomes"]["forged"].get("traceback", 0) for c in every)
    limits = sum(c["slowest_ms"] >= 1000 or c["peak_rss_rise_mb"] >= 100 for c in every)
    bad += limits
    print(f"{'PASS' if not bad else 'FAIL'}: {bad - limits} wrong captions from damaged files or tracebacks, {limits} "
          f"codecs over 1 s or 100 MB (damaged bare stream payloads may decode to other captions: the link checks "
          f"them); wrote {out}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
