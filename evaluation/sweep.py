"""Evaluation sweeps: caption a dataset through a split model, a codec and a channel at every
operating point (SNR, rate point or bandwidth), score it, and write ``results.csv`` (the table of
:mod:`intelliflow.evaluation.results`) and ``captions.json``.

Every codec goes through the same :class:`~intelliflow.flow.Flow` and so the one inference path:
``identity`` (the clean float32 features, ideal link only), the byte baselines (``quantize-B``,
``jpeg-Q``, ``webp-Q``, ``avif-Q``, ``text``, ``mse-codec``) and our digital codecs (real
bitstreams; over a channel they ride the 5G digital link at the adaptive MCS, so failures are
real), and analog JSCC codecs (symbols through the channel). A codec with a rate knob is evaluated
at each of its values (``rate_points`` for ``q``, ``symbols`` for JSCC bandwidths).

>>> rows = evaluate(codec="shapes-hyperprior", rate_points=[0.0, 5.0], limit=4, meteor=False, progress=False)
>>> [r["rate_point"] for r in rows], rows[0]["payload_bits"] < rows[1]["payload_bits"], rows[0]["kind"]
([0.0, 5.0], True, 'learned')
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from intelliflow.data.sample import collate_samples
from intelliflow.errors import ConfigError

from .results import COLUMNS, write_results


@dataclass
class Captioned:
    """Captions of a dataset through a flow, and what the link did per image.

    :ivar results: ``{image_id: caption}`` (``""`` where the payload was lost);
    :ivar references: ``{image_id: [reference captions]}``; :ivar scenes: ``{image_id: Scene}`` (shapes);
    :ivar bits, channel_uses, mcs: per image where they apply; :ivar lost: payloads lost (after HARQ);
    :ivar transmissions: HARQ rounds per payload sent over a digital link; :ivar first_failed: how
        many of those payloads failed their first transmission.
    """

    results: dict = field(default_factory=dict)
    references: dict = field(default_factory=dict)
    scenes: dict = field(default_factory=dict)
    bits: list = field(default_factory=list)
    channel_uses: list = field(default_factory=list)
    mcs: list = field(default_factory=list)
    lost: int = 0
    transmissions: list = field(default_factory=list)
    first_failed: int = 0
    #: with a drafter: ``{image_id: {"caption", "confidence", "bits", "drafted", "accepted", "passes",
    #: "greedy_passes"}}`` (:class:`~intelliflow.flow.flow.DraftReport` per image)
    drafts: dict = field(default_factory=dict)


def _one_thread(_worker: int) -> None:
    """A DataLoader worker computes with one thread: the main process keeps the cores for the model."""
    torch.set_num_threads(1)


class _Preprocessed:
    """A DataLoader ``collate_fn`` that runs the model's preprocessing in the worker and sends back
    pixel values [B, 3, H, W] instead of the decoded pictures."""

    def __init__(self, model):
        self.model = model

    def __call__(self, samples) -> dict:
        batch = collate_samples(samples)
        batch["pixels"] = self.model.preprocess(batch.pop("images"), device="cpu")   # pictures do not travel back
        return batch


_DRAFT_FIELDS = ("captions", "confidence", "bits", "drafted", "accepted", "passes", "greedy_passes")

SETTLE = 2 ** 32 - 1   # the "batch index" whose seed settles the link's outer loop before the batches


def batch_seed(seed: Sequence[int], batch: int) -> int:
    """The seed of one batch: a function of the run's seed, the operating point and the batch's index
    alone (numpy's ``SeedSequence``), so a batch draws the same channel noise whichever process
    captions it and whatever came before it."""
    return int(np.random.SeedSequence([*seed, batch]).generate_state(1)[0])


@torch.no_grad()
def caption_dataset(flow, dataset, *, batch_size: int = 50, desc: str = "caption", progress: bool = True,
                    seed: Sequence[int] | None = None, shard: bool = False, workers: int = 0,
                    **caption_options) -> Captioned:
    """Caption every image of ``dataset`` with ``flow.caption``; a bare split model captions from its
    clean features (head, then tail; it is left as it is, so a model in training can be validated).
    ``caption_options`` go to :meth:`~intelliflow.flow.Flow.caption` (``snr_db``, ``q``,
    ``symbols``, ``mcs``, generation options).

    :param seed: reseed every random source before each batch with :func:`batch_seed` (channel
        noise then depends on the batch alone); ``None`` leaves the random state as it is.
    :param workers: DataLoader worker processes: they read and decode the images and, for a model
        whose codec takes features, run the model's own preprocessing (its image processor), so the
        main process only runs the model; pinned memory when CUDA is there.
    :param shard: under ``torchrun``, each process captions every ``world``-th batch
        (:func:`intelliflow.distributed.my_share`) and every process gets the whole result, in
        dataset order: equal to one process captioning everything (with the same ``seed``).
    """
    from intelliflow.distributed import gather, my_share, rank_and_world
    from intelliflow.flow import Flow, FlowResult
    from intelliflow.seeding import seed_everything

    model = flow.model if isinstance(flow, Flow) else flow
    if isinstance(flow, Flow):
        flow.eval()
        caption = flow.caption
    else:
        def caption(images, **generation):
            pixel_values = images if isinstance(images, torch.Tensor) else model.preprocess(images)
            captions = model.tail_generate(model.head(pixel_values), **generation)
            return FlowResult(captions, [None] * len(images), [None] * len(images), [False] * len(images))
    n_batches = -(-len(dataset) // batch_size)
    mine = my_share(n_batches) if shard else range(n_batches)
    batches = [list(range(b * batch_size, min(len(dataset), (b + 1) * batch_size))) for b in mine]
    pixels = workers > 0 and (not isinstance(flow, Flow) or flow.codec.takes == "features")
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                        collate_fn=_Preprocessed(model) if pixels else collate_samples,
                        worker_init_fn=_one_thread if workers else None,
                        pin_memory=workers > 0 and torch.cuda.is_available())
    done = []   # (batch index, per-image records) of this process
    show = progress and rank_and_world()[0] == 0
    if seed is not None and isinstance(flow, Flow):
        # the digital link's outer loop settles first and is frozen: every batch then meets the same link,
        # whichever process captions it and whatever came before it
        seed_everything(batch_seed(seed, SETTLE))
        flow.settle_link(**caption_options)
    for b, batch in zip(mine, tqdm(loader, desc=desc, unit="batch", file=sys.stderr, disable=not show)):
        if seed is not None:
            seed_everything(batch_seed(seed, b))
        result = caption(batch["pixels"] if pixels else batch["images"], **caption_options)
        drafts = [None] * len(result.captions) if result.draft is None else \
            [dict(zip(_DRAFT_FIELDS, values)) for values in zip(*(getattr(result.draft, f) for f in _DRAFT_FIELDS))]
        done.append((b, list(zip(batch["image_ids"], result.captions, batch["captions"], batch["scenes"],
                                 result.payload_bits, result.channel_uses, result.mcs, result.lost,
                                 result.transmissions, result.first_failed, drafts))))
    if shard:
        done = sorted((item for part in gather(done) for item in part), key=lambda item: item[0])
    out = Captioned()
    for _, records in done:
        for i, text, refs, scene, bits, uses, mcs, lost, rounds, first, draft in records:
            out.results[i], out.references[i] = text, refs
            if draft is not None:
                out.drafts[i] = draft
            if scene is not None:
                out.scenes[i] = scene
            out.bits += [bits] if bits is not None else []
            out.channel_uses += [uses] if uses is not None else []
            out.mcs += [mcs] if mcs is not None else []
            out.lost += int(lost)
            out.transmissions += [rounds] if rounds is not None else []
            out.first_failed += int(bool(first))
    return out


def score(results: dict, references: dict, scenes: dict, meteor="auto", tokenizer: str = "auto") -> dict:
    """Caption metrics, plus semantic scores when the dataset has scene graphs."""
    from .metrics import caption_metrics
    from .semantic import semantic_accuracy

    scores = caption_metrics(results, references, meteor=meteor, tokenizer=tokenizer)
    if scenes and len(scenes) == len(results):
        scores.update(semantic_accuracy(results, scenes))
    return scores


def draft_scores(done: Captioned, early_threshold: float = 0.9) -> dict:
    """The drafting columns of a results row (see :mod:`intelliflow.evaluation.results`) from a
    captioning run with a drafter; ``early_threshold``: the drafter confidence at which the device
    shows its draft at once (the early answer)."""
    drafts = done.drafts
    if not drafts:
        return {}
    got = [d for d in drafts.values() if d["accepted"] is not None]   # the payloads that arrived
    drafted = sum(d["drafted"] for d in got)
    early = [i for i, d in drafts.items() if d["confidence"] >= early_threshold]
    early_right = [i for i in early if drafts[i]["accepted"] is not None and drafts[i]["captions"] == done.results[i]]
    draft_cider = score({i: d["captions"] for i, d in drafts.items()}, done.references, {}, meteor=False).get("CIDEr-D")
    mean = (lambda values: sum(values) / len(values) if values else None)
    return {"draft_bits": mean([d["bits"] for d in drafts.values()]),
            "draft_acceptance": sum(d["accepted"] for d in got) / drafted if drafted else None,
            "draft_accepted_tokens": mean([d["accepted"] for d in got]),
            "draft_exact": mean([float(d["captions"] == done.results[i]) for i, d in drafts.items()
                                 if d["accepted"] is not None]),
            "receiver_passes": mean([d["passes"] for d in got]), "greedy_passes": mean([d["greedy_passes"] for d in got]),
            "early_share": len(early) / len(drafts), "early_right": len(early_right) / len(early) if early else None,
            "draft_CIDEr-D": draft_cider}


def operating_points(codec, snr: list[float] | None, rate_values: list[float] | None) -> list[dict]:
    """The (snr_db, rate knob value) points to evaluate: every SNR times every value of the codec's
    rate knob (``None``: the codec's default)."""
    knob = codec.rate.name if codec.rate is not None else None
    return [{"snr_db": s, "knob": knob, "value": v} for s in (snr or [None])
            for v in ((rate_values or [None]) if knob else [None])]


def evaluate(*, model: str = "shapes-captioner", codec: str = "identity", split: int | None = None,
             channel: str = "none", snr: list[float] | None = None, dataset: str = "shapes:test",
             out: str | Path | None = None, limit: int | None = None, batch_size: int = 50, num_beams: int = 1,
             max_new_tokens: int = 32, meteor="auto", rate_points: list[float] | None = None,
             symbols: list[int] | None = None, mcs: int | str = "auto", channel_uses: int | None = None,
             progress: bool = True, method: str | None = None, seed: int = 0, workers: int = 0,
             device: str | None = None, harq: int = 4, framing: str = "stream", drafter: str | None = None,
             early_threshold: float = 0.9) -> list[dict]:
    """Evaluate one model/codec/channel at every SNR (and rate point or bandwidth): one results row
    (:mod:`intelliflow.evaluation.results`) per point; with ``out``, write ``results.csv`` and
    ``captions.json`` there.

    :param model: a shipped model name or a local folder; :param split: its split point (default: the model's).
    :param codec: any codec name :func:`~intelliflow.codec.resolve_codec` takes (``jpeg-50``,
        ``quantize-6``, ``text``, ``identity``, ``mse-codec``, a shipped codec, a checkpoint folder).
    :param channel: ``none`` (an ideal link) or a channel spec ``name[:key=value,...]``; an analog
        codec's own training options for the same channel are used unless given.
    :param rate_points: rate points ``q`` of a variable-rate digital codec (default its highest).
    :param symbols: symbol channels sent by a JSCC codec (bandwidths; default all).
    :param mcs: ``"auto"`` (adaptive to the SNR) or a fixed MCS index for byte payloads.
    :param channel_uses: a channel-use budget per image for a learned digital codec.
    :param method: the label of this method in results and plots (default: the codec name).
    :param workers: DataLoader worker processes reading, decoding and preprocessing the images.
    :param harq: transmissions a byte payload's code blocks get over a channel (HARQ with incremental
        redundancy, as 5G; ``1``: each block once). Results carry ``first_tx_loss`` (payloads whose
        first transmission failed), ``mean_transmissions`` and ``loss_rate`` (lost after the last).
    :param device: where the model and codec run (``"cpu"``, ``"cuda:1"``); default: a process's own
        GPU when there is CUDA (the rank's, under ``torchrun``), else the CPU.
    :param framing: ``"stream"`` (default): ``payload_bits`` is what a stream sends per image, the
        context (model, split, codec, grid, rate point) agreed once per connection and the link
        checking each code block; ``"file"``: self-contained payloads with their header and CRC-16,
        as ``.iflow`` files hold them (:class:`~intelliflow.flow.Flow`). Rows say which (``framing``).
    :param drafter: a drafter's name or folder (:mod:`intelliflow.models.drafter`): the device drafts
        every caption, the draft rides in the payload and the receiver verifies it (the captions are
        plain greedy's; ``num_beams`` must be 1); rows then carry the drafting columns
        (:func:`draft_scores`); ``early_threshold``: the confidence at which the draft is shown at once.
    :param seed: seeds torch and Sionna (channel noise, fading) so a run can be repeated exactly;
        each batch is reseeded from it, the operating point and the batch's index.

    Under ``torchrun`` (``torchrun --nproc_per_node N -m intelliflow.recipes.cli eval ...``) each
    process captions every N-th batch, the captions are gathered, and rank 0 scores and writes:
    the rows equal a one-process run's (with the same threads per process).
    """
    from intelliflow.channels import channel_config as channel_config_of
    from intelliflow.codec import resolve_codec
    from intelliflow.codec.registry import codec_metadata
    from intelliflow.data.datasets import open_dataset
    from intelliflow.devices import rank_device
    from intelliflow.distributed import distributed, gather
    from intelliflow.flow import Flow
    from intelliflow.flow.endpoints import split_for
    from intelliflow.models import load_split_model
    from intelliflow.seeding import seed_everything

    codec_object = resolve_codec(codec)
    channel_config = channel_config_of(channel)
    trained_on = codec_metadata(codec).get("recipe", {}).get("channel", {})
    analog = codec_object.sends == "symbols"
    if analog and trained_on.get("name") == channel_config["name"]:
        channel_config = {"name": channel_config["name"], **trained_on.get("options", {}),
                          **{k: v for k, v in channel_config.items() if k != "name"}}
    if channel_config["name"] != "none" and not snr:
        raise ConfigError(f"channel {channel_config['name']!r} needs --snr")
    if analog and channel_config["name"] == "none":
        raise ConfigError(f"{codec} is an analog codec: give a channel (awgn, rayleigh, ofdm-tdl) and --snr")
    seed_everything(seed, sionna=channel_config["name"] != "none")
    split_model = load_split_model(model, split=split_for(codec_object, model, split))
    flow = Flow(split_model, codec_object, channel_config, link={"max_transmissions": harq}, framing=framing,
                drafter=drafter).eval()
    data = open_dataset(dataset, limit=limit)
    generation = {"num_beams": num_beams, "max_new_tokens": max_new_tokens}
    label, channel_label = method or codec, channel_config["name"]
    rate_values = rate_points if codec_object.rate and codec_object.rate.name == "q" else symbols
    rows, all_captions = [], []
    with distributed() as (rank, _):   # under torchrun: each process captions a share of every point
        flow.to(rank_device(rank) if device is None else torch.device(device))
        for k, point in enumerate(operating_points(codec_object, snr, rate_values)):
            knob = {point["knob"]: point["value"]} if point["knob"] else {}
            desc = f"{label} {channel_label}" + (f" snr={point['snr_db']}" if point["snr_db"] is not None else "") \
                + "".join(f" {key}={v}" for key, v in knob.items() if v is not None)
            done = caption_dataset(flow, data, batch_size=batch_size, desc=desc, progress=progress, seed=(seed, k),
                                   shard=True, workers=workers, snr_db=point["snr_db"], mcs=mcs, channel_uses=channel_uses, **knob,
                                   **generation)
            if rank:   # rank 0 scores (METEOR starts Java) and writes; the others return its rows
                continue
            scores = score(done.results, done.references, done.scenes, meteor=meteor)
            row = {"method": label, "dataset": dataset, "model": model, "split": split_model.split, "codec": codec,
                   "kind": codec_object.family, "framing": framing if codec_object.streams else "file",
                   "channel": channel_label, "snr_db": point["snr_db"],
                   "rate_point": knob.get("q"), "symbols": knob.get("symbols"),
                   "payload_bits": sum(done.bits) / len(done.bits) if done.bits else None,
                   "channel_uses": sum(done.channel_uses) / len(done.channel_uses) if done.channel_uses else None,
                   "mcs": max(set(done.mcs), key=done.mcs.count) if done.mcs else None,
                   "loss_rate": done.lost / len(done.results), "n_images": len(done.results),
                   "first_tx_loss": done.first_failed / len(done.transmissions) if done.transmissions else None,
                   "mean_transmissions": (sum(done.transmissions) / len(done.transmissions)
                                          if done.transmissions else None),
                   "drafter": drafter, **draft_scores(done, early_threshold)}
            for key in COLUMNS:
                if key not in row:
                    value = scores.get(key)
                    row[key] = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
            rows.append({key: "" if v is None else v for key, v in row.items()})
            all_captions += [{"image_id": i, "caption": c, **{key: rows[-1][key] for key in
                                                               ("method", "channel", "snr_db", "rate_point", "symbols")}}
                             for i, c in done.results.items()]
        if out is not None and rank == 0:
            out = Path(out)
            out.mkdir(parents=True, exist_ok=True)
            write_results(out / "results.csv", rows)
            # COCO results format: one {image_id, caption} per image (per point when several)
            (out / "captions.json").write_text(json.dumps(
                [{"image_id": c["image_id"], "caption": c["caption"]} for c in all_captions]
                if len(rows) == 1 else all_captions, indent=1))
        rows = gather(rows)[0]
    return rows
