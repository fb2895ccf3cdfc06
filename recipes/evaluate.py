"""``intelliflow eval``: caption a dataset through a split model and a codec, score it, and write
``results.csv`` (one row per evaluated point) and ``captions.json``.

Every codec goes through the same :class:`~intelliflow.flow.Flow`: ``identity`` (the clean float32
features, ideal link only), the byte-payload baselines (``quantize-B``, ``jpeg-Q``, ``webp-Q``,
``text``, ``mse-codec``) and our digital codecs (real bitstreams; over a channel they ride the 5G
digital link at the adaptive MCS, so failures are real), and analog JSCC codecs (symbols through
the channel). Variable-rate codecs are evaluated at several rate points, JSCC at several bandwidths.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from intelliflow.data.sample import collate_samples
from intelliflow.errors import ConfigError

RESULT_COLUMNS = ["method", "dataset", "model", "split", "codec", "kind", "channel", "snr_db", "rate_point", "symbols",
                  "payload_bits", "channel_uses", "mcs", "loss_rate", "BLEU-1", "BLEU-4", "CIDEr-D", "ROUGE-L",
                  "METEOR", "semantic_accuracy", "relation_accuracy", "exact_match", "n_images"]


@torch.no_grad()
def caption_dataset(model, dataset, batch_size: int = 50, generation: dict | None = None,
                    codec=None, desc: str = "caption", progress: bool = True) -> tuple[dict, dict, dict, list[int]]:
    """Caption every image: ``(results {id: caption}, references {id: [..]}, scenes {id: Scene},
    payload bits per image)``. ``codec=None`` passes the clean features (no payload: bits empty)."""
    from intelliflow.flow.files import device_payloads, receiver_captions

    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples)
    results, references, scenes, bits = {}, {}, {}, []
    for batch in tqdm(loader, desc=desc, unit="batch", file=sys.stderr, disable=not progress):
        if codec is None:
            captions = model.tail_generate(model.head(model.preprocess(batch["images"])), **(generation or {}))
        else:
            payloads = device_payloads(model, codec, batch["images"])
            bits += [8 * len(p) for p in payloads]
            captions = receiver_captions(model, codec, payloads, **(generation or {}))
        for i, caption, refs, scene in zip(batch["image_ids"], captions, batch["captions"], batch["scenes"]):
            results[i], references[i] = caption, refs
            if scene is not None:
                scenes[i] = scene
    return results, references, scenes, bits


def score(results: dict, references: dict, scenes: dict, meteor="auto", tokenizer: str = "auto") -> dict:
    """Caption metrics, plus semantic scores when the dataset has scene graphs."""
    from intelliflow.evaluation.metrics import caption_metrics
    from intelliflow.evaluation.semantic import semantic_accuracy

    scores = caption_metrics(results, references, meteor=meteor, tokenizer=tokenizer)
    if scenes and len(scenes) == len(results):
        scores.update(semantic_accuracy(results, scenes))
    return scores


def parse_channel(text: str) -> dict:
    """``"rayleigh:csi=estimated,block_length=32"`` -> ``{"name": "rayleigh", "csi": "estimated", ...}``."""
    import yaml

    name, _, options = text.partition(":")
    config = {"name": name}
    for item in filter(None, options.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"channel option {item!r} must be key=value (e.g. rayleigh:csi=estimated)")
        config[key.strip()] = yaml.safe_load(value)
    return config


def evaluation_points(codec, snr: list[float] | None, rate_points: list[float] | None,
                      symbols: list[int] | None) -> list[dict]:
    """The (snr_db, q, symbols) points to evaluate for this codec."""
    from intelliflow.flow.flow import codec_kind

    kind = codec_kind(codec)
    snrs = snr or [None]
    if kind == "learned":
        return [{"snr_db": s, "q": q, "symbols": None} for s in snrs for q in (rate_points or [None])]
    if kind == "analog":
        return [{"snr_db": s, "q": None, "symbols": n} for s in snrs for n in (symbols or [None])]
    return [{"snr_db": s, "q": None, "symbols": None} for s in snrs]


def run_eval(model_name: str, split: int | None, codec: str, channel: str, snr: list[float] | None,
             dataset_spec: str, out: str | Path, limit: int | None = None, batch_size: int = 50,
             num_beams: int = 1, max_new_tokens: int = 32, meteor="auto", rate_points: list[float] | None = None,
             symbols: list[int] | None = None, mcs: int | str = "auto", channel_uses: int | None = None,
             progress: bool = True, method: str | None = None, seed: int = 0) -> list[dict]:
    """Evaluate one model/codec/channel at every SNR (and rate point or bandwidth); write
    ``results.csv`` (one row per point) and ``captions.json`` to ``out``.

    :param codec: a baseline name (``jpeg-50``, ``quantize-6``, ``text``, ``identity``, ``mse-codec``),
        a shipped codec's name or a codec checkpoint folder.
    :param channel: ``none`` (an ideal link) or a channel spec ``name[:key=value,...]``; an analog
        codec's own training options for the same channel are used unless given.
    :param rate_points: rate points ``q`` of a variable-rate digital codec (default its highest).
    :param symbols: symbol channels sent by a JSCC codec (bandwidths; default all).
    :param mcs: ``"auto"`` (adaptive to the SNR) or a fixed MCS index for byte payloads.
    :param channel_uses: a channel-use budget per image for a learned digital codec.
    :param method: the label of this method in results and plots (default: the codec name).
    :param seed: seeds torch and Sionna (channel noise, fading) so a run can be repeated exactly.
    """
    from intelliflow.seeding import seed_everything

    from intelliflow.data.datasets import open_dataset
    from intelliflow.flow.files import codec_metadata, resolve_codec
    from intelliflow.flow.flow import Flow, codec_kind
    from intelliflow.models import load_split_model

    codec_object = resolve_codec(codec)
    kind = codec_kind(codec_object)
    channel_config = parse_channel(channel)
    trained_on = codec_metadata(codec).get("recipe", {}).get("channel", {})
    if kind == "analog" and trained_on.get("name") == channel_config["name"]:
        channel_config = {"name": channel_config["name"], **trained_on.get("options", {}),
                          **{k: v for k, v in channel_config.items() if k != "name"}}
    if channel_config["name"] != "none" and not snr:
        raise ConfigError(f"channel {channel_config['name']!r} needs --snr")
    if kind == "analog" and channel_config["name"] == "none":
        raise ConfigError(f"{codec} is an analog codec: give a channel (awgn, rayleigh, ofdm-tdl) and --snr")
    seed_everything(seed, sionna=channel_config["name"] != "none")
    model = load_split_model(model_name, split=split)
    flow = Flow(model, codec_object, channel_config).eval()
    dataset = open_dataset(dataset_spec, limit=limit)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    generation = {"num_beams": num_beams, "max_new_tokens": max_new_tokens}
    rows, all_captions = [], []
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=collate_samples)
    label = method or codec
    channel_label = channel_config["name"]
    for point in evaluation_points(codec_object, snr, rate_points, symbols):
        results, references, scenes = {}, {}, {}
        bits, uses, lost, mcs_used = [], [], 0, []
        desc = f"{label} {channel_label}" + "".join(f" {k}={v}" for k, v in point.items() if v is not None)
        for batch in tqdm(loader, desc=desc, unit="batch", file=sys.stderr, disable=not progress):
            result = flow.caption(batch["images"], snr_db=point["snr_db"], q=point["q"], symbols=point["symbols"],
                                  mcs=mcs, channel_uses=channel_uses, **generation)
            bits += [b for b in result.payload_bits if b is not None]
            uses += [u for u in result.channel_uses if u is not None]
            mcs_used += [m for m in result.mcs if m is not None]
            lost += sum(result.lost)
            for i, caption, refs, scene in zip(batch["image_ids"], result.captions, batch["captions"], batch["scenes"]):
                results[i], references[i] = caption, refs
                if scene is not None:
                    scenes[i] = scene
        scores = score(results, references, scenes, meteor=meteor)
        h, w = model.feature_grid
        raw_bits = 32 * (model.prefix_tokens + h * w) * model.feature_dim
        row = {"method": label, "dataset": dataset_spec, "model": model_name, "split": model.split, "codec": codec, "kind": kind,
               "channel": channel_label, "snr_db": "" if point["snr_db"] is None else point["snr_db"],
               "rate_point": "" if point["q"] is None else point["q"],
               "symbols": "" if point["symbols"] is None else point["symbols"],
               # identity: the raw float32 features; byte codecs: mean real payload bits, headers included
               "payload_bits": sum(bits) / len(bits) if bits else (raw_bits if kind == "identity" else ""),
               "channel_uses": sum(uses) / len(uses) if uses else "",
               "mcs": (max(set(mcs_used), key=mcs_used.count) if mcs_used else ""),
               "loss_rate": lost / len(results), "n_images": len(results)}
        for key in RESULT_COLUMNS:
            if key not in row:
                value = scores.get(key)
                row[key] = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
        rows.append(row)
        all_captions += [{"image_id": i, "caption": c, **{k: row[k] for k in ("method", "channel", "snr_db",
                                                                                "rate_point", "symbols")}}
                         for i, c in results.items()]
    write_results(out / "results.csv", rows)
    # COCO results format: one {image_id, caption} per image (per point when several)
    (out / "captions.json").write_text(json.dumps(
        [{"image_id": c["image_id"], "caption": c["caption"]} for c in all_captions]
        if len(rows) == 1 else all_captions, indent=1))
    return rows


def write_results(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
