"""``intelliflow eval``: caption a dataset through a split model and a codec, score it, and write
``results.csv`` (one row per evaluated point) and ``captions.json``.

Codecs: ``identity`` (the clean float32 features), and the byte-payload baselines over an ideal
link: ``quantize-B``, ``jpeg-Q``, ``webp-Q``, ``text``, or a digital codec checkpoint folder. The
channel is ``none`` until the end-to-end flow lands (channels and analog codecs plug in here).
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
from intelliflow.errors import RegistryError

RESULT_COLUMNS = ["model", "split", "codec", "channel", "snr_db", "payload_bits", "channel_uses", "BLEU-1",
                  "BLEU-4", "CIDEr-D", "ROUGE-L", "METEOR", "semantic_accuracy", "relation_accuracy",
                  "exact_match", "n_images"]
AVAILABLE_CHANNELS = ("none",)


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


def run_eval(model_name: str, split: int | None, codec: str, channel: str, snr: list[float] | None,
             dataset_spec: str, out: str | Path, limit: int | None = None, batch_size: int = 50,
             num_beams: int = 1, max_new_tokens: int = 32, meteor="auto") -> list[dict]:
    """Evaluate one model/split/codec/channel over the SNRs; write ``results.csv`` and ``captions.json``."""
    from intelliflow.data.datasets import open_dataset
    from intelliflow.models import load_split_model

    from intelliflow.flow.files import resolve_codec

    codec_object = None if codec == "identity" else resolve_codec(codec)
    if channel not in AVAILABLE_CHANNELS:
        raise RegistryError(f"unknown channel {channel!r}; available now: {list(AVAILABLE_CHANNELS)}")
    model = load_split_model(model_name, split=split)
    dataset = open_dataset(dataset_spec, limit=limit)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    generation = {"num_beams": num_beams, "max_new_tokens": max_new_tokens}
    rows, all_captions = [], []
    for snr_db in (snr or [None]):
        results, references, scenes, bits = caption_dataset(
            model, dataset, batch_size, generation, codec=codec_object,
            desc=f"{model_name} k={model.split} {codec}/{channel}")
        scores = score(results, references, scenes, meteor=meteor)
        h, w = model.feature_grid
        row = {"model": model_name, "split": model.split, "codec": codec, "channel": channel,
               "snr_db": "" if snr_db is None else snr_db,
               # identity: the raw float32 features; others: mean real payload bits, headers included
               "payload_bits": sum(bits) / len(bits) if bits else 32 * (model.prefix_tokens + h * w) * model.feature_dim,
               "channel_uses": "", "n_images": len(results)}
        for key in RESULT_COLUMNS:
            if key not in row:
                value = scores.get(key)
                row[key] = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
        rows.append(row)
        all_captions += [{"image_id": i, "caption": c, "codec": codec, "channel": channel,
                          "snr_db": snr_db} for i, c in results.items()]
    with (out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RESULT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    # COCO results format: one {image_id, caption} per image (per point when several SNRs)
    (out / "captions.json").write_text(json.dumps(
        [{"image_id": c["image_id"], "caption": c["caption"]} for c in all_captions]
        if len(rows) == 1 else all_captions, indent=1))
    return rows
