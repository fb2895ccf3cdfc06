"""Training losses, per image and in natural units (nats), the codec objective built from them, and
the per-image draws of rate point and SNR that make one codec learn a whole curve.

A codec is trained for what the receiver does with the features (see :mod:`intelliflow.training.codec`)::

    loss per image = caption nats + distill_kl × KL nats + feature_mse × normalised feature MSE
                     (objective ``caption``), or the normalised feature MSE alone (``mse``)
                   + λ(q) × bits                                   (digital codecs only)
    loss           = mean over the batch (+ the entropy model's auxiliary loss, digital codecs)

Any model's task loss (``task: bridge``, :mod:`intelliflow.training.bridge`) takes the caption's place
in :func:`rate_distortion`.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def per_caption_nats(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Token cross-entropy summed over each caption: logits [B, T, V], labels [B, T] (``-100``
    ignored) -> [B] nats."""
    ce = F.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none",
                         label_smoothing=label_smoothing)
    return ce.sum(1)


def per_caption_kl(teacher_logits: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(teacher ‖ student) summed over each caption's scored tokens: logits [B, T, V] each,
    labels [B, T] (``-100`` not scored) -> [B] nats."""
    kl = F.kl_div(F.log_softmax(logits.float(), -1), F.log_softmax(teacher_logits.float(), -1),
                  log_target=True, reduction="none").sum(-1)
    return (kl * (labels != -100)).sum(1)


def rate_lambda(q: torch.Tensor, max_q: float, objective) -> torch.Tensor:
    """λ per image: rate points q [B] -> [B], log-linear from ``objective.lambda_low_rate`` (q = 0)
    to ``objective.lambda_high_rate`` (q = ``max_q``)."""
    lo, hi = math.log(objective.lambda_low_rate), math.log(objective.lambda_high_rate)
    return torch.exp(lo + (q / max(max_q, 1e-9)) * (hi - lo))


def codec_objective(objective, features: torch.Tensor, sent: dict, feature_scale: torch.Tensor, model=None,
                    targets: list[str] | None = None, q: torch.Tensor | None = None,
                    max_q: float = 0.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The codec's training loss for one batch (see the module docstring).

    - ``objective``: the recipe's objective section (``kind``, ``label_smoothing``, ``distill_kl``,
      ``feature_mse``, ``lambda_low_rate``, ``lambda_high_rate``);
    - ``features``: the clean split features [B, ...]; ``sent``: what the flow returned for them,
      ``features_hat`` [B, ...] and, for a digital codec, ``bits`` [B] and ``aux_loss`` (scalar);
    - ``feature_scale``: the features' mean square (scalar), which normalises the MSE;
    - ``model`` and ``targets`` (B captions): the split model whose tail scores the captions
      (``caption`` objective only);
    - ``q`` [B]: the rate points of a digital codec (``None``: an analog codec) and ``max_q`` its top one.

    Returns the scalar loss and, per image [B], ``caption_nats``, ``kl_nats``, ``feature_nmse`` and
    ``bits`` (zeros where a term does not apply).
    """
    digital = q is not None
    f_hat = sent["features_hat"]
    nmse = (f_hat.float() - features.float()).pow(2).flatten(1).mean(1) / feature_scale   # float32 under autocast
    zeros = torch.zeros(features.shape[0], device=features.device)
    nats = kl = zeros
    if objective.kind == "caption":
        logits, labels = model.tail_logits(f_hat, targets)
        logits, labels = logits.float(), labels.to(features.device)
        nats = per_caption_nats(logits, labels, objective.label_smoothing)
        if objective.distill_kl:
            with torch.no_grad():
                clean_logits = model.tail_logits(features, targets)[0].float()
            kl = per_caption_kl(clean_logits, logits, labels)
        per_image = nats + objective.distill_kl * kl + objective.feature_mse * nmse
    else:
        per_image = nmse
    bits = sent["bits"] if digital else zeros
    loss = rate_distortion(per_image, sent, q, max_q, objective)
    return loss, {"caption_nats": nats, "kl_nats": kl, "feature_nmse": nmse, "bits": bits}


def rate_distortion(distortion: torch.Tensor, sent: dict, q: torch.Tensor | None, max_q: float,
                    objective) -> torch.Tensor:
    """The scalar a codec minimises: mean over the batch of ``distortion`` [B] (or a scalar, the
    batch's mean) + λ(q) × ``sent["bits"]`` [B], plus ``sent["aux_loss"]`` (the entropy model's
    quantile fit), for a digital codec (``q`` [B], its rate points); ``distortion`` alone for an
    analog one (``q=None``). λ: :func:`rate_lambda` from ``objective``."""
    if q is None:
        return distortion.mean()
    return (distortion + rate_lambda(q, max_q, objective) * sent["bits"]).mean() + sent["aux_loss"]


def draw_snr(batch: int, low: float, high: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """SNRs in dB, uniform in ``[low, high]``: [B]."""
    return low + (high - low) * torch.rand(batch, generator=generator)


def draw_rate_points(batch: int, max_q: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rate points uniform in ``[0, max_q]``: [B]."""
    return max_q * torch.rand(batch, generator=generator)
