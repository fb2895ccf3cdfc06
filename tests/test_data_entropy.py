"""The semantic entropy is exact: checked against a brute-force enumeration of the generator."""

import itertools
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from intelliflow.data.entropy import chain_type_distribution, scene_key, semantic_entropy_bits
from intelliflow.data.scene import Scene, SceneObject
from intelliflow.data.shapes import ShapesConfig, sample_scene, scene_rng


def brute_force_entropy(cfg: ShapesConfig) -> float:
    """Enumerate every outcome of the generator (count, ordered cells, attributes per object)."""
    probs = defaultdict(float)
    counts = range(cfg.min_objects, cfg.max_objects + 1)
    attrs = list(itertools.product(cfg.sizes, cfg.colours, cfg.shapes))
    for n in counts:
        cell_tuples = list(itertools.permutations(range(cfg.grid ** 2), n))
        p = 1 / len(counts) / len(cell_tuples) / len(attrs) ** n
        for cells in cell_tuples:
            for assignment in itertools.product(attrs, repeat=n):
                objects = [SceneObject(*a, *divmod(c, cfg.grid)) for a, c in zip(assignment, cells)]
                probs[scene_key(Scene.from_objects(objects))] += p
    assert math.isclose(sum(probs.values()), 1.0)
    return -sum(p * math.log2(p) for p in probs.values())


@pytest.mark.parametrize("cfg", [
    ShapesConfig(grid=2, max_objects=3, shapes=("circle", "star"), colours=("red", "blue"), sizes=("small",)),
    ShapesConfig(grid=3, max_objects=2, shapes=("circle", "square", "star"), colours=("red",)),
    ShapesConfig(grid=3, min_objects=2, max_objects=3, shapes=("cross",), colours=("red", "white"), sizes=("large",)),
])
def test_entropy_matches_brute_force(cfg):
    assert semantic_entropy_bits(cfg) == pytest.approx(brute_force_entropy(cfg), abs=1e-9)


def test_default_entropy_value():
    # 1.585 bits for the count, 6.585 bits per object's attributes, and the relation chain
    h = semantic_entropy_bits()
    two = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))  # same column: 9 of 36 cell pairs
    assert two == pytest.approx(-sum(p * math.log2(p) for p in chain_type_distribution(3, 2).values()))
    assert 15.0 < h < 16.5


def test_generator_follows_the_distribution_the_entropy_assumes():
    cfg = ShapesConfig()
    n_samples = 3000
    counts, chains = Counter(), Counter()
    for i in range(n_samples):
        scene = sample_scene(scene_rng("train", i), cfg)
        counts[len(scene.objects)] += 1
        if len(scene.objects) == 2:
            chains[scene_key(scene)[1]] += 1
    for n in (1, 2, 3):
        assert abs(counts[n] / n_samples - 1 / 3) < 0.04
    assert abs(chains[("above",)] / sum(chains.values()) - 0.25) < 0.05
