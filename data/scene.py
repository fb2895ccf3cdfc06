"""Scene graphs of the ``shapes`` benchmark.

A scene is a few coloured shapes, each in its own cell of a coarse grid. Its *canonical* form
lists the objects in reading order of their cells (column first, then row: left to right, and
top to bottom inside a column) and states one relation between each pair of consecutive objects:

- different columns: the earlier object is ``"left"`` of the next one;
- the same column:   the earlier object is ``"above"`` the next one.

These ``n - 1`` chain relations imply every other pairwise relation (the column/row order is
transitive), so the canonical scene graph is everything a perfect caption says: the object count,
each object's (size, colour, shape), and the chain of relations.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from intelliflow.errors import DatasetError

#: The relation an earlier object (in canonical order) has to the next one.
CANONICAL_RELATIONS = ("left", "above")
#: The converse of each relation: ``a left b`` is ``b right a``.
CONVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}

Attributes = tuple[str, str, str]  # (size, colour, shape)
Relation = tuple[int, str, int]  # (index of earlier object, "left" | "above", index of next)


@dataclass(frozen=True)
class SceneObject:
    """One object: its discrete attributes, its grid cell, and where it was drawn (pixels)."""

    size: str
    colour: str
    shape: str
    row: int
    col: int
    x: float = 0.0
    y: float = 0.0
    extent: float = 0.0

    @property
    def attributes(self) -> Attributes:
        """``(size, colour, shape)``: what a caption says about the object."""
        return (self.size, self.colour, self.shape)


def cell_relation(a: SceneObject, b: SceneObject) -> str:
    """The relation of ``a`` to ``b`` in {left, right, above, below}, from their cells alone."""
    if (a.row, a.col) == (b.row, b.col):
        raise DatasetError(f"two objects share the grid cell (row {a.row}, col {a.col})")
    if a.col != b.col:
        return "left" if a.col < b.col else "right"
    return "above" if a.row < b.row else "below"


@dataclass(frozen=True)
class Scene:
    """A canonical scene graph: ``objects`` in reading order of their cells.

    Build one with :meth:`from_objects` (any order in, canonical order out).
    """

    objects: tuple[SceneObject, ...]

    @classmethod
    def from_objects(cls, objects) -> "Scene":
        """Sort ``objects`` into canonical order (column, then row) and check the cells differ."""
        ordered = tuple(sorted(objects, key=lambda o: (o.col, o.row)))
        cells = [(o.row, o.col) for o in ordered]
        if len(set(cells)) != len(cells):
            raise DatasetError(f"objects must sit in distinct grid cells, got cells {cells}")
        return cls(ordered)

    @property
    def relations(self) -> tuple[Relation, ...]:
        """The chain relations ``(i, rel, i + 1)`` with ``rel`` in :data:`CANONICAL_RELATIONS`."""
        return tuple((i, cell_relation(a, b), i + 1)
                     for i, (a, b) in enumerate(zip(self.objects, self.objects[1:])))

    def relation_triples(self) -> list[tuple[Attributes, str, Attributes]]:
        """The chain relations with objects named by their attributes, as a caption states them."""
        return [(self.objects[i].attributes, rel, self.objects[j].attributes)
                for i, rel, j in self.relations]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: ``{"objects": [...], "relations": [[i, rel, j], ...]}``."""
        objects = []
        for o in self.objects:
            d = asdict(o)
            for key in ("x", "y", "extent"):
                d[key] = round(float(d[key]), 3)
            objects.append(d)
        return {"objects": objects, "relations": [list(r) for r in self.relations]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Scene":
        """Inverse of :meth:`to_dict` (relations are recomputed from the cells, not trusted)."""
        try:
            objects = [SceneObject(**o) for o in data["objects"]]
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"malformed scene graph {str(data)[:120]!r}: {str(exc)[:120]}") from exc
        return cls.from_objects(objects)
