"""The results table, defined once: the columns ``intelliflow eval`` writes to ``results.csv``,
their types, the writer and the reader.

One row per evaluated operating point (method, channel, SNR, rate point or bandwidth):

- ``method``, ``dataset``, ``model``, ``split``, ``codec``: what was evaluated;
- ``kind``: the codec's family (``identity``, ``learned``, ``analog``, ``bytes``);
- ``channel``, ``snr_db`` (Es/N0, dB), ``rate_point`` (``q``), ``symbols`` (JSCC symbol channels);
- ``payload_bits`` (mean real payload bits per image, every header counted), ``channel_uses``
  (mean complex symbols per image), ``mcs`` (the most used MCS index), ``loss_rate`` (fraction
  of payloads the link lost);
- the caption metrics (``BLEU-1``, ``BLEU-4``, ``CIDEr-D``, ``ROUGE-L``, ``METEOR``) and, on
  ``shapes``, ``semantic_accuracy``, ``relation_accuracy``, ``exact_match``; ``n_images``;
- with a drafter (speculative captioning): ``drafter``, ``draft_bits`` (mean bits of the draft
  part, inside ``payload_bits``), ``draft_acceptance`` (draft tokens the receiver kept / draft
  tokens sent), ``draft_accepted_tokens`` (per caption), ``draft_exact`` (drafts that were the
  receiver's caption), ``receiver_passes`` and ``greedy_passes`` (the receiver's decoder passes per
  caption, and plain greedy decoding's), ``early_share`` (images whose draft was confident enough
  to show at once), ``early_right`` (of those, the drafts that were the final caption),
  ``draft_CIDEr-D`` (the drafts scored as captions).

Empty cells mean "does not apply"; the reader turns them into ``None``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

from intelliflow.errors import DatasetNotFoundError

COLUMNS = ["method", "dataset", "model", "split", "codec", "kind", "framing", "channel", "snr_db", "rate_point", "symbols",
           "payload_bits", "channel_uses", "mcs", "loss_rate", "first_tx_loss", "mean_transmissions", "BLEU-1", "BLEU-4", "CIDEr-D", "ROUGE-L",
           "METEOR", "semantic_accuracy", "relation_accuracy", "exact_match", "n_images",
           "drafter", "draft_bits", "draft_acceptance", "draft_accepted_tokens", "draft_exact", "receiver_passes",
           "greedy_passes", "early_share", "early_right", "draft_CIDEr-D"]
#: the columns that hold numbers
NUMERIC = ("snr_db", "rate_point", "symbols", "payload_bits", "channel_uses", "loss_rate", "first_tx_loss",
           "mean_transmissions", "BLEU-1", "BLEU-4",
           "CIDEr-D", "ROUGE-L", "METEOR", "semantic_accuracy", "relation_accuracy", "exact_match", "n_images",
           "split", "mcs", "draft_bits", "draft_acceptance", "draft_accepted_tokens", "draft_exact", "receiver_passes",
           "greedy_passes", "early_share", "early_right", "draft_CIDEr-D")


def write_results(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write ``rows`` as ``results.csv`` (the columns above; ``None`` as an empty cell)."""
    path = Path(path)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows([{k: "" if row.get(k) is None else row[k] for k in COLUMNS} for row in rows])
    return path


def load_results(paths: Iterable[str | Path]) -> list[dict]:
    """Rows of ``results.csv`` files (a folder means every ``results.csv`` below it); numbers
    parsed, empty cells ``None``, ``source`` the file each row came from."""
    rows = []
    for path in paths:
        path = Path(path)
        files = sorted(path.rglob("results.csv")) if path.is_dir() else [path]
        if not files or not all(f.is_file() for f in files):
            raise DatasetNotFoundError(f"no results.csv in {path}")
        for file in files:
            with file.open(newline="") as f:
                for row in csv.DictReader(f):
                    for key in NUMERIC:
                        if key in row:
                            row[key] = float(row[key]) if row[key] not in ("", None) else None
                    row.setdefault("method", row.get("codec"))
                    for key in COLUMNS:   # a file from an older version lacks the newer columns
                        row.setdefault(key, None)
                    row["source"] = str(file)
                    rows.append(row)
    return rows


def clean_cider(rows: Sequence[dict]) -> float | None:
    """CIDEr-D of the clean features (the ``identity`` codec), if evaluated."""
    values = [r["CIDEr-D"] for r in rows if r.get("kind") == "identity" or r.get("codec") == "identity"]
    return max(values) if values else None
