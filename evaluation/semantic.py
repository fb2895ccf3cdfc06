"""Semantic accuracy on ``shapes``: does the caption state the right scene graph?

A generated caption is parsed back into objects and relations
(:func:`intelliflow.data.captions.parse_caption`) and scored against the ground truth:

- object F1: the (size, colour, shape) triples of the caption against the scene's, as multisets
  (an attribute the caption leaves out never matches);
- relation accuracy: the share of the scene's chain relations (:attr:`Scene.relations`) that the
  caption states, with the right direction, between objects with the right attributes. Scenes
  with one object have no relation and are left out of this mean;
- exact match: the parsed caption equals the scene graph (same objects, same relations).

An unparseable caption scores zero on every count; nothing here raises on odd text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from intelliflow.data.captions import parse_caption
from intelliflow.data.scene import Scene


@dataclass(frozen=True)
class SemanticScore:
    """Scores of one caption against one scene."""

    object_precision: float
    object_recall: float
    object_f1: float
    relations_stated: int  # how many ground-truth relations there are
    relations_correct: int  # how many of them the caption states correctly
    exact_match: bool


def score_caption(caption: str, scene: Scene) -> SemanticScore:
    """Score one caption against its ground-truth scene."""
    parsed = parse_caption(caption)
    truth = Counter(o.attributes for o in scene.objects)
    said = Counter(parsed.objects)
    hits = sum((truth & said).values())
    precision = hits / sum(said.values()) if said else 0.0
    recall = hits / sum(truth.values()) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if hits else 0.0

    true_relations = Counter(scene.relation_triples())
    said_relations = Counter(parsed.relation_triples())
    correct = sum((true_relations & said_relations).values())
    exact = (said == truth and said_relations == true_relations
             and len(parsed.objects) == len(scene.objects))
    return SemanticScore(precision, recall, f1, sum(true_relations.values()), correct, exact)


def semantic_accuracy(captions: dict, scenes: dict) -> dict[str, float]:
    """Mean scores over images: ``{image_id: caption}`` against ``{image_id: Scene}``.

    Returns ``semantic_accuracy`` (mean object F1), ``object_precision``, ``object_recall``,
    ``relation_accuracy`` (correct / stated relations, over images with at least one relation;
    ``nan`` if there are none) and ``exact_match``.
    """
    scores = [score_caption(captions[i], scenes[i]) for i in captions]
    n = max(len(scores), 1)
    stated = sum(s.relations_stated for s in scores)
    return {
        "semantic_accuracy": sum(s.object_f1 for s in scores) / n,
        "object_precision": sum(s.object_precision for s in scores) / n,
        "object_recall": sum(s.object_recall for s in scores) / n,
        "relation_accuracy": (sum(s.relations_correct for s in scores) / stated) if stated else float("nan"),
        "exact_match": sum(s.exact_match for s in scores) / n,
    }
