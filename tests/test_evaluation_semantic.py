"""Semantic accuracy: parse captions back into scene graphs and score them against the truth."""

import math

from intelliflow.data.captions import canonical_caption
from intelliflow.data.scene import Scene, SceneObject
from intelliflow.data.shapes import ShapesDataset
from intelliflow.evaluation.semantic import score_caption, semantic_accuracy

A = SceneObject("large", "red", "circle", 0, 0)
B = SceneObject("small", "blue", "square", 1, 2)
C = SceneObject("small", "white", "star", 2, 2)
SCENE = Scene.from_objects([A, B, C])  # red circle left of blue square, which is above white star


def test_perfect_partial_and_wrong_captions():
    perfect = score_caption("a big red disc left of a small blue square above a tiny white star", SCENE)
    assert perfect.object_f1 == 1.0 and perfect.relations_correct == 2 and perfect.exact_match
    reversed_chain = score_caption("a small white star below a small blue square, which is right of a large red circle", SCENE)
    assert reversed_chain.exact_match
    wrong_relation = score_caption("a large red circle right of a small blue square above a small white star", SCENE)
    assert wrong_relation.object_f1 == 1.0 and wrong_relation.relations_correct == 1
    missing_object = score_caption("a large red circle left of a small blue square", SCENE)
    assert math.isclose(missing_object.object_f1, 0.8) and missing_object.relations_correct == 1
    wrong_colour = score_caption("a large green circle left of a small blue square above a small white star", SCENE)
    assert math.isclose(wrong_colour.object_f1, 2 / 3) and wrong_colour.relations_correct == 1


def test_unparseable_captions_score_zero_and_never_raise():
    for text in ("", "nothing to see here", "!!! ???", "a a a a", "circle" * 100, "\x00\n\t"):
        score = score_caption(text, SCENE)
        assert score.object_f1 == 0.0 and score.relations_correct == 0 and not score.exact_match


def test_a_model_that_always_says_left_of_scores_poorly_on_relations():
    dataset = ShapesDataset("test", limit=300)
    samples = [dataset[i] for i in range(len(dataset))]
    scenes = {s.image_id: s.scene for s in samples}

    captions = {}
    for s in samples:
        names = [f"a {o.size} {o.colour} {o.shape}" for o in s.scene.objects]
        if s.image_id % 2:
            names = names[::-1]
        captions[s.image_id] = " left of ".join(names)
    scores = semantic_accuracy(captions, scenes)
    assert scores["semantic_accuracy"] == 1.0
    assert scores["relation_accuracy"] < 0.5
    truth = semantic_accuracy({s.image_id: canonical_caption(s.scene) for s in samples}, scenes)
    assert truth["relation_accuracy"] == 1.0 and truth["exact_match"] == 1.0


def test_relation_accuracy_is_nan_when_no_scene_has_a_relation():
    scene = Scene.from_objects([A])
    scores = semantic_accuracy({0: "a large red circle"}, {0: scene})
    assert scores["semantic_accuracy"] == 1.0 and math.isnan(scores["relation_accuracy"])
