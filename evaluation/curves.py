"""Rate-quality curves and their summary, from the ``results.csv`` files that ``intelliflow eval`` writes.

- rows come from :func:`intelliflow.evaluation.results.load_results`.
- :func:`bits_to_reach`: the payload bits per image a method needs to reach a CIDEr-D target,
  interpolated along its rate curve (log-linear in bits); ``None`` when it never gets there.
- :func:`summarize`: for each method, the bits to reach 95 % of the clean CIDEr-D and the ratio
  to ours.
- :func:`split_table` / :func:`plot_split_table`: the split point as an axis: bits at the targets
  and the device's FLOPs per (codec, split point).
- :func:`plot_curves`: one PNG with CIDEr-D and semantic accuracy against payload bits (log axis,
  the semantic-entropy floor marked), CIDEr-D against SNR, and against channel uses, one line per
  method (and channel); the last two only for results over a channel.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from intelliflow.plots import save_figure

from .results import clean_cider



def rate_curve(rows: Sequence[dict], method: str, channel: str = "none",
               metric: str = "CIDEr-D") -> list[tuple[float, float]]:
    """(payload bits, ``metric``) points of one method over one channel, sorted by bits."""
    points = [(r["payload_bits"], r[metric]) for r in rows
              if r["method"] == method and r["channel"] == channel and r["payload_bits"] and r.get(metric) is not None]
    return sorted(points)


def bits_to_reach(curve: Sequence[tuple[float, float]], target: float) -> float | None:
    """Fewest bits at which the curve reaches ``target`` (log-linear interpolation between points)."""
    best = None
    for i, (bits, quality) in enumerate(curve):
        if quality >= target:
            if i == 0 or curve[i - 1][1] >= target:
                candidate = bits
            else:
                (b0, q0), (b1, q1) = curve[i - 1], (bits, quality)
                t = (target - q0) / (q1 - q0)
                candidate = math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
            best = candidate if best is None else min(best, candidate)
            break
    return best


def _sends_images(rows: Sequence[dict], method: str) -> bool:
    """Whether a method's codec uploads the picture (an image baseline: JPEG, JPEG 2000, a learned image codec)."""
    from intelliflow.codec.registry import codec_class

    names = {r["codec"] for r in rows if r["method"] == method and r.get("codec")}
    classes = [codec_class(str(n)) for n in names]
    return bool(classes) and all(c is not None and c.takes == "image" for c in classes)


def summarize(rows: Sequence[dict], ours: str | None = None, fraction: float = 0.95,
              clean: float | None = None, semantic_target: float = 0.95) -> list[dict]:
    """Per method (over the ideal link): bits to reach ``fraction`` of the clean CIDEr-D and to reach
    ``semantic_target`` semantic accuracy, each with its ratio to ours; ``image`` marks the image
    baselines (their codec uploads the picture).

    ``ours`` defaults to the first method whose kind is ``learned`` and whose name is not ``mse-codec``.
    """
    clean = clean if clean is not None else clean_cider(rows)
    methods = list(dict.fromkeys(r["method"] for r in rows if r["channel"] == "none"))
    if ours is None:
        ours = next((m for m in methods if any(r["method"] == m and r.get("kind") == "learned"
                                               and "mse" not in m for r in rows)), None)
    target = None if clean is None else fraction * clean
    table = []
    for method in methods:
        curve = rate_curve(rows, method)
        semantic = rate_curve(rows, method, metric="semantic_accuracy")
        best = max((q for _, q in curve), default=None)
        table.append({"method": method, "points": len(curve), "best_CIDEr-D": best,
                      "min_bits": curve[0][0] if curve else None,
                      "bits_to_target": bits_to_reach(curve, target) if target is not None else None,
                      "bits_to_semantic": bits_to_reach(semantic, semantic_target),
                      "image": _sends_images(rows, method)})
    for key, ratio in (("bits_to_target", "ratio_to_ours"), ("bits_to_semantic", "semantic_ratio_to_ours")):
        ours_bits = next((t[key] for t in table if t["method"] == ours), None)
        for t in table:
            t[ratio] = (t[key] / ours_bits) if t[key] and ours_bits else None
    for t in table:
        t["ours"] = t["method"] == ours
    return table


def format_summary(table: Sequence[dict], clean: float | None, floor_bits: float | None = None,
                   fraction: float = 0.95, semantic_target: float = 0.95) -> str:
    """The summary as a Markdown table, and how ours compares with the best image baseline."""
    head = f"Targets: {fraction:.0%} of the clean CIDEr-D" + (f" ({clean:.3f} -> {fraction * clean:.3f})" if clean else "") \
        + f", and {semantic_target:g} semantic accuracy"
    lines = [head, "", "| method | best CIDEr-D | fewest bits | bits to CIDEr-D target | x ours | "
             f"bits to {semantic_target:g} sem. acc. | x ours |", "|---|---|---|---|---|---|---|"]

    def fmt(v, spec):
        return "n/a" if v is None else format(v, spec)

    for t in table:
        name = f"**{t['method']}** (ours)" if t["ours"] else t["method"] + (" (image)" if t.get("image") else "")
        reach = fmt(t["bits_to_target"], ".0f") if t["bits_to_target"] else "not reached"
        semantic = fmt(t.get("bits_to_semantic"), ".0f") if t.get("bits_to_semantic") else "not reached"
        lines.append(f"| {name} | {fmt(t['best_CIDEr-D'], '.3f')} | {fmt(t['min_bits'], '.0f')} | {reach} | "
                     f"{fmt(t['ratio_to_ours'], '.1f')} | {semantic} | {fmt(t.get('semantic_ratio_to_ours'), '.1f')} |")
    ours = next((t for t in table if t["ours"]), None)
    images = [t for t in table if t.get("image")]
    if ours and images:
        lines.append("")
        for key, ratio, what in (("bits_to_target", "ratio_to_ours", "the CIDEr-D target"),
                                 ("bits_to_semantic", "semantic_ratio_to_ours", f"{semantic_target:g} semantic accuracy")):
            reached = [t for t in images if t.get(key)]
            if not reached or not ours.get(key):
                lines.append(f"- {what}: no image baseline{'' if ours.get(key) else ' or ours'} reaches it")
                continue
            best = min(reached, key=lambda t: t[key])
            lines.append(f"- {what}: the best image baseline is {best['method']} with {best[key]:.0f} bits; "
                         f"ours needs {ours[key]:.0f}, {best[ratio]:.1f}x fewer")
    if floor_bits:
        reached = ours if ours and ours["bits_to_target"] else None
        lines += ["", f"Semantic-entropy floor: {floor_bits:.1f} bits per image"
                  + (f"; ours needs {reached['bits_to_target'] / floor_bits:.1f}x the floor" if reached else "")]
    return "\n".join(lines)


def shannon_limits(rows: Sequence[dict], floor_bits: float | None) -> list[tuple[str, float, float]]:
    """``(channel, SNR, channel uses)`` for every channel and SNR in ``rows``: the fewest channel uses
    that Shannon capacity allows for ``floor_bits`` (the semantic entropy) at that SNR, the limit
    every method's channel uses are measured against; empty without a floor.

    >>> shannon_limits([{"channel": "awgn", "snr_db": 0.0}, {"channel": "none", "snr_db": None}], 15.6)
    [('awgn', 0.0, 15.6)]
    """
    from intelliflow.channels import shannon_channel_uses
    from intelliflow.errors import ConfigError

    if not floor_bits:
        return []
    out = []
    for channel, snr in sorted({(r["channel"], r["snr_db"]) for r in rows
                                if r.get("channel") not in (None, "none") and r.get("snr_db") is not None}):
        try:
            out.append((channel, float(snr), float(shannon_channel_uses(floor_bits, float(snr), channel))))
        except ConfigError:   # a channel without a closed-form capacity (ofdm-tdl): no line
            continue
    return out


def plot_curves(rows: Sequence[dict], path: str | Path, floor_bits: float | None = None,
                clean: float | None = None, title: str = "") -> Path:
    """Draw the panel figure to ``path`` (PNG): CIDEr-D and semantic accuracy against payload bits
    on the ideal link; below them, when some row went over a channel, CIDEr-D against SNR and
    against channel uses (results on the ideal link alone get the top row only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean = clean if clean is not None else clean_cider(rows)
    over_channel = any(r.get("channel") not in (None, "none") for r in rows)
    fig, axes = plt.subplots(2 if over_channel else 1, 2, figsize=(12, 9 if over_channel else 4.8), squeeze=False)
    (ax_bits, ax_sem), (ax_snr, ax_uses) = axes[0], (axes[1] if over_channel else (None, None))
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["channel"]), []).append(r)
    channels = sorted({c for _, c in groups if c != "none"})
    styles = {c: ("-", "--", ":", "-.")[i % 4] for i, c in enumerate(channels)}  # one line style per channel
    colors = iter(plt.get_cmap("tab20").colors * 4)
    for (method, channel), members in groups.items():
        label = method if channel == "none" else f"{method} / {channel}"
        ideal = channel == "none"
        if ideal:
            pts = sorted((r["payload_bits"], r["CIDEr-D"], r.get("semantic_accuracy")) for r in members
                         if r["payload_bits"] and r["CIDEr-D"] is not None)
            if pts:
                ax_bits.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=label)
                if all(p[2] is not None for p in pts):
                    ax_sem.plot([p[0] for p in pts], [p[2] for p in pts], "o-", label=label)
            continue
        # over a channel: one line per bandwidth / rate point, against SNR and against channel uses
        by_variant: dict = {}
        for r in members:
            by_variant.setdefault((r.get("rate_point"), r.get("symbols")), []).append(r)
        for (q, s), variant in by_variant.items():
            name = label + (f" q={q:g}" if q is not None else "") + (f" n/img≈{variant[0]['channel_uses']:.0f}"
                                                                       if s is not None and variant[0]["channel_uses"] else "")
            pts = sorted((r["snr_db"], r["CIDEr-D"]) for r in variant if r["snr_db"] is not None)
            if pts:
                ax_snr.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ls=styles[channel],
                            color=next(colors), label=name)
        uses = sorted((r["channel_uses"], r["CIDEr-D"]) for r in members if r["channel_uses"])
        if uses:   # one line per method and channel, through its points in order of channel uses
            ax_uses.plot([u[0] for u in uses], [u[1] for u in uses], marker="o", ms=4, ls=styles[channel], label=label)
    limit_colors = iter(plt.get_cmap("Greys")(np.linspace(0.45, 0.95, max(1, len(shannon_limits(rows, floor_bits))))))
    for channel, snr, least in shannon_limits(rows, floor_bits):
        ax_uses.axvline(least, color=next(limit_colors), ls=styles.get(channel, ":"), lw=1)
        ax_uses.text(least, ax_uses.get_ylim()[0], f" Shannon limit, {channel} {snr:g} dB", rotation=90,
                     va="bottom", fontsize=7)
    for ax in (ax_bits, ax_sem):
        ax.set_xscale("log")
        ax.set_xlabel("payload bits per image (headers included)")
        if floor_bits:
            ax.axvline(floor_bits, color="k", ls=":", lw=1)
            ax.text(floor_bits, ax.get_ylim()[0], " semantic-entropy floor", rotation=90, va="bottom", fontsize=8)
    if clean:
        for ax in (ax_bits, ax_snr, ax_uses) if over_channel else (ax_bits,):
            ax.axhline(clean, color="grey", ls="--", lw=1)
            ax.axhline(0.95 * clean, color="grey", ls=":", lw=1)
    ax_bits.set_ylabel("CIDEr-D")
    ax_bits.set_title("caption quality vs payload (ideal link)")
    ax_sem.set_ylabel("semantic accuracy")
    ax_sem.set_title("semantic accuracy vs payload (ideal link)")
    if over_channel:
        ax_snr.set_xlabel("SNR (dB)")
        ax_snr.set_ylabel("CIDEr-D")
        ax_snr.set_title("caption quality vs SNR")
        ax_uses.set_xscale("log")
        ax_uses.set_xlabel("channel uses per image")
        ax_uses.set_ylabel("CIDEr-D")
        ax_uses.set_title("caption quality vs channel uses (limits: Shannon, semantic entropy)")
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def codec_family(method: str) -> str:
    """A codec trained at several split points, by one name: ``shapes-hyperprior-k2`` ->
    ``shapes-hyperprior`` (the ``-k<split>`` suffix the shipped split-point codecs carry)."""
    return re.sub(r"-k\d+$", "", str(method))


def split_table(rows: Sequence[dict], device_flops: Mapping[int, float], codec_flops: Mapping[str, float] | None = None,
                fraction: float = 0.95, clean: float | None = None, semantic_target: float = 0.95,
                baseline: str | None = None) -> list[dict]:
    """The split point as an axis: per (method, split) over the ideal link, the bits to reach
    ``fraction`` of the clean CIDEr-D and ``semantic_target`` semantic accuracy, and what the device
    computes there (the model's head, ``device_flops[split]``, plus the codec's encoder,
    ``codec_flops[method]``).

    Rows of one method at several split points (an ``intelliflow eval --split`` each) count apart.
    ``baseline`` (a codec family, e.g. ``shapes-mse-codec``) adds ``x_baseline``: the baseline's bits
    at the same split and target over this row's (how many times fewer bits this method needs).
    Sorted by family, then split.
    """
    clean = clean if clean is not None else clean_cider(rows)
    codec_flops = dict(codec_flops or {})
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        if r.get("channel") == "none" and r.get("split") not in (None, "") and r.get("kind") != "identity":
            groups.setdefault((r["method"], int(r["split"])), []).append(r)
    table = []
    for (method, split), members in groups.items():
        cider, semantic = rate_curve(members, method), rate_curve(members, method, metric="semantic_accuracy")
        head = device_flops.get(split)
        table.append({"family": codec_family(method), "method": method, "split": split,
                      "head_flops": head, "codec_flops": codec_flops.get(method, 0.0),
                      "device_flops": None if head is None else head + codec_flops.get(method, 0.0),
                      "best_CIDEr-D": max((q for _, q in cider), default=None),
                      "bits_to_target": bits_to_reach(cider, fraction * clean) if clean else None,
                      "bits_to_semantic": bits_to_reach(semantic, semantic_target)})
    table.sort(key=lambda t: (t["family"], t["split"]))
    if baseline is not None:
        base = {t["split"]: t for t in table if t["family"] == codec_family(baseline)}
        for t in table:
            b = base.get(t["split"])
            for key, out in (("bits_to_target", "x_baseline"), ("bits_to_semantic", "x_baseline_semantic")):
                t[out] = (b[key] / t[key]) if b and b.get(key) and t.get(key) else None
    return table


def format_split_table(table: Sequence[dict], floor_bits: float | None = None) -> str:
    """:func:`split_table` as a Markdown table (``not reached`` where a curve stays under a target)."""
    def fmt(v, spec, missing="n/a"):
        return missing if v is None else format(v, spec)

    baseline = any("x_baseline" in t for t in table)
    head = "| codec | split k | device MFLOP (head + encoder) | bits to CIDEr-D target | bits to sem. target |"
    rule = "|---|---|---|---|---|"
    if baseline:
        head, rule = head + " x fewer than baseline (CIDEr-D / sem.) |", rule + "---|"
    if floor_bits:
        head, rule = head + " x floor |", rule + "---|"
    lines = [head, rule]
    for t in table:
        flops = "n/a" if t["device_flops"] is None else \
            f"{t['device_flops'] / 1e6:.0f} ({t['head_flops'] / 1e6:.0f} + {t['codec_flops'] / 1e6:.0f})"
        line = (f"| {t['method']} | {t['split']} | {flops} | {fmt(t['bits_to_target'], '.1f', 'not reached')} | "
                f"{fmt(t['bits_to_semantic'], '.1f', 'not reached')} |")
        if baseline:
            line += f" {fmt(t.get('x_baseline'), '.1f')} / {fmt(t.get('x_baseline_semantic'), '.1f')} |"
        if floor_bits:
            worst = max(t["bits_to_target"] or math.inf, t["bits_to_semantic"] or math.inf)
            line += f" {fmt(None if math.isinf(worst) else worst / floor_bits, '.2f')} |"
        lines.append(line)
    return "\n".join(lines)


def plot_split_table(table: Sequence[dict], path: str | Path, floor_bits: float | None = None, title: str = "") -> Path:
    """Bits at the targets and device compute against the split point, one line per codec family:
    left, bits per image to reach the CIDEr-D target (solid) and the semantic target (dashed), log
    axis, the semantic-entropy floor marked; right, the device's MFLOP per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_bits, ax_flops) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = iter(plt.get_cmap("tab10").colors * 4)
    for family in dict.fromkeys(t["family"] for t in table):
        members = sorted((t for t in table if t["family"] == family), key=lambda t: t["split"])
        color = next(colors)
        for key, style, what in (("bits_to_target", "o-", "CIDEr-D target"), ("bits_to_semantic", "s--", "sem. target")):
            pts = [(t["split"], t[key]) for t in members if t[key]]
            if pts:
                ax_bits.plot(*zip(*pts), style, color=color, label=f"{family}: {what}")
        pts = [(t["split"], t["device_flops"] / 1e6) for t in members if t["device_flops"] is not None]
        if pts:
            ax_flops.plot(*zip(*pts), "o-", color=color, label=family)
    if floor_bits:
        ax_bits.axhline(floor_bits, color="k", ls=":", lw=1)
        ax_bits.text(ax_bits.get_xlim()[0], floor_bits, " semantic-entropy floor", va="bottom", fontsize=8)
    splits = sorted({t["split"] for t in table})
    for ax in (ax_bits, ax_flops):
        ax.set_xticks(splits)
        ax.set_xlabel("split point k (encoder layers on the device)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    ax_bits.set_yscale("log")
    ax_bits.set_ylabel("bits per image at the target")
    ax_bits.set_title("payload to reach 95 % of clean CIDEr-D / 0.95 sem. acc.")
    ax_flops.set_ylabel("device MFLOP per image (head + codec encoder)")
    ax_flops.set_title("what the device computes")
    ax_flops.set_ylim(bottom=0)
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)
