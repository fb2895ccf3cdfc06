"""Caption metrics with pycocoevalcap's own scorers (BLEU, METEOR, ROUGE-L, CIDEr-D).

This is COCOEvalCap's pipeline without SPICE (which downloads CoreNLP): tokenise references and
results (PTBTokenizer, or the pure-Python stand-in when Java is missing), then run the scorers
on the same ``{image_id: [tokenised captions]}`` dictionaries. pycocoevalcap's ``Cider`` is
CIDEr-D (Gaussian length penalty, clipped counts), so it is reported under that name.

>>> scores = caption_metrics({1: "a red circle"}, {1: ["a red circle", "a red disc"]}, tokenizer="python",
...                          meteor=False)
>>> round(scores["BLEU-1"], 6), scores["METEOR"], scores["n_images"]
(1.0, None, 1)
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path
from typing import Mapping, Sequence

from intelliflow.data.coco import check_entry, parse_coco_annotations, read_json
from intelliflow.errors import DatasetError, MetricError

from .tokenize import PythonPTBTokenizer, coco_tokenizer, java_available

METRIC_KEYS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")


def _check_ids(results: Mapping, references: Mapping) -> None:
    missing = [i for i in references if i not in results]
    extra = [i for i in results if i not in references]
    if extra:
        raise MetricError(f"{len(extra)} result(s) for image ids absent from the annotations, e.g. {extra[:5]}")
    if missing:
        raise MetricError(f"{len(missing)} annotated image(s) have no result caption, e.g. {missing[:5]}")
    for image_id, refs in references.items():
        if isinstance(refs, str) or not refs:
            raise MetricError(f"image {image_id!r} needs a non-empty list of reference captions, got {refs!r}")
    for image_id, caption in results.items():
        if not isinstance(caption, str):
            raise MetricError(f"the result for image {image_id!r} must be a string, got {type(caption).__name__}")


def caption_metrics(results: Mapping[object, str], references: Mapping[object, Sequence[str]], *,
                    tokenizer: str = "auto", meteor: bool | str = "auto") -> dict:
    """Score one caption per image against its references.

    :param results: ``{image_id: caption}``, one per annotated image.
    :param references: ``{image_id: [reference, ...]}``.
    :param tokenizer: ``"auto"`` (Java PTBTokenizer when ``java`` is on PATH), ``"java"`` or ``"python"``.
    :param meteor: ``"auto"`` (when Java exists), ``True`` or ``False``.
    :return: ``{"BLEU-1".."BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D", "tokenizer", "n_images"}``;
        ``METEOR`` is ``None`` with ``METEOR_reason`` saying why when it is not computed.
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    _check_ids(results, references)
    order = list(references)
    tok = coco_tokenizer(tokenizer)
    gts = tok.tokenize({i: [{"caption": c} for c in references[i]] for i in order})
    res = tok.tokenize({i: [{"caption": results[i]}] for i in order})

    scores: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocoevalcap prints progress to stdout
        bleu, _ = Bleu(4).compute_score(gts, res)
        scores.update({f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)})
        scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
        scores["CIDEr-D"] = float(Cider().compute_score(gts, res)[0])
    scores["METEOR"] = None
    want_meteor = java_available() if meteor == "auto" else bool(meteor)
    if want_meteor:
        scores["METEOR"] = _meteor(gts, res)
    else:
        scores["METEOR_reason"] = ("java was not found on PATH (METEOR runs in Java)"
                                   if not java_available() else "METEOR was not requested")
    scores["tokenizer"] = "python" if isinstance(tok, PythonPTBTokenizer) else "java-ptb"
    scores["n_images"] = len(order)
    return {k: scores[k] for k in (*METRIC_KEYS, *[k for k in scores if k not in METRIC_KEYS])}


def _meteor(gts: dict, res: dict) -> float:
    """METEOR 1.5 through pycocoevalcap's Java wrapper; the Java process is always stopped."""
    from pycocoevalcap.meteor.meteor import Meteor

    if not java_available():
        raise MetricError("METEOR needs java on PATH")
    scorer = Meteor()
    try:
        return float(scorer.compute_score(gts, res)[0])
    except ValueError as exc:  # the Java process died or answered garbage
        raise MetricError(f"METEOR failed: {exc}") from exc
    finally:
        process = scorer.meteor_p
        with contextlib.suppress(Exception):
            process.stdin.close()
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------------------------
# COCO files


def read_coco_results(path: str | Path) -> dict:
    """COCO results file (a list of ``{"image_id", "caption"}``) -> ``{image_id: caption}``."""
    data = read_json(path, "results file")
    if not isinstance(data, list):
        raise DatasetError(f"results file {path} must hold a JSON list of {{image_id, caption}} objects")
    results: dict = {}
    for k, item in enumerate(data):
        if not isinstance(item, dict) or "image_id" not in item or "caption" not in item:
            raise DatasetError(f"results file {path}: entry {k} must be an object with 'image_id' and 'caption', got {str(item)[:80]!r}")
        check_entry(f"results file {path}: entry {k}", item["image_id"], item["caption"])
        if item["image_id"] in results:
            raise MetricError(f"results file {path}: image {item['image_id']!r} has more than one result")
        results[item["image_id"]] = item["caption"]
    return results


def read_coco_annotations(path: str | Path) -> tuple[dict, dict]:
    """COCO captions annotations -> (``{image_id: [captions]}``, ``{image_id: scene dict}``).

    The file is parsed by :func:`intelliflow.data.coco.parse_coco_annotations`; every image must have
    a caption. The scene dictionary is empty unless the file comes from
    ``intelliflow data export shapes:...`` (which stores each image's scene graph under the
    top-level key ``"scenes"``).
    """
    parsed = parse_coco_annotations(path)
    references = parsed.captions
    empty = [i for i, refs in references.items() if not refs]
    if empty:
        raise DatasetError(f"annotations file {path}: {len(empty)} image(s) have no caption, e.g. {empty[:5]}")
    return references, parsed.scenes


def score_files(results_path: str | Path, annotations_path: str | Path, **options) -> dict:
    """``intelliflow score``: metrics of a COCO results file against a COCO captions file.

    Adds ``semantic_accuracy`` and ``relation_accuracy`` when the annotations carry ``shapes``
    scene graphs. ``options`` go to :func:`caption_metrics`.
    """
    from intelliflow.data.scene import Scene

    from .semantic import semantic_accuracy

    results = read_coco_results(results_path)
    references, scenes = read_coco_annotations(annotations_path)
    scores = caption_metrics(results, references, **options)
    if scenes:
        if set(scenes) != set(references):
            raise DatasetError(f"annotations file {annotations_path}: 'scenes' must cover every image")
        semantic = semantic_accuracy(results, {i: Scene.from_dict(s) for i, s in scenes.items()})
        scores.update({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in semantic.items()})
    return scores
