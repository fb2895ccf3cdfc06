"""Exact semantic entropy of the ``shapes`` generator: the floor for every codec.

The canonical scene graph (:mod:`intelliflow.data.scene`) is the object count ``n``, the
attributes of the objects in canonical order, and the ``n - 1`` chain relation types. Under the
generator (:class:`~intelliflow.data.shapes.ShapesConfig`) attributes are i.i.d. uniform and
independent of the cells, so the attributes in canonical order are i.i.d. uniform too, and::

    H(G) = H(n) + sum_n P(n) * (n * log2(|sizes| * |colours| * |shapes|) + H(chain types | n))

``H(chain types | n)`` is computed exactly by enumerating every set of ``n`` cells (the cells are a
uniform draw without replacement). Nothing is sampled. A perfect caption says exactly ``G``, so no
codec can carry what the caption needs in fewer bits per image on average.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

from .scene import Scene, SceneObject, cell_relation
from .shapes import ShapesConfig


def scene_key(scene: Scene) -> tuple:
    """A hashable canonical form: ``((size, colour, shape), ...), (relation types ...)``.

    Two scenes get the same key exactly when a perfect caption of one describes the other.
    """
    return (tuple(o.attributes for o in scene.objects), tuple(rel for _, rel, _ in scene.relations))


def chain_type_distribution(grid: int, n: int) -> dict[tuple[str, ...], float]:
    """P(chain relation types) for ``n`` objects in distinct cells drawn uniformly from ``grid``²."""
    counts: Counter = Counter()
    for cells in itertools.combinations(range(grid * grid), n):
        objects = sorted((divmod(c, grid) for c in cells), key=lambda rc: (rc[1], rc[0]))
        marks = [SceneObject("", "", "", row, col) for row, col in objects]
        counts[tuple(cell_relation(a, b) for a, b in zip(marks, marks[1:]))] += 1
    total = sum(counts.values())
    return {types: c / total for types, c in counts.items()}


def _entropy_bits(probabilities) -> float:
    return -sum(p * math.log2(p) for p in probabilities if p > 0)


def entropy_breakdown(config: ShapesConfig = ShapesConfig()) -> dict[str, float]:
    """The entropy split into its parts: object count, attributes, relations (bits per image)."""
    counts = range(config.min_objects, config.max_objects + 1)
    p_count = 1.0 / len(counts)
    attribute_bits = math.log2(len(config.sizes) * len(config.colours) * len(config.shapes))
    return {
        "count_bits": _entropy_bits([p_count] * len(counts)),
        "attribute_bits": sum(p_count * n * attribute_bits for n in counts),
        "relation_bits": sum(p_count * _entropy_bits(chain_type_distribution(config.grid, n).values())
                             for n in counts),
    }


def semantic_entropy_bits(config: ShapesConfig = ShapesConfig()) -> float:
    """Exact entropy, in bits per image, of the canonical scene graph under ``config``."""
    return sum(entropy_breakdown(config).values())
