"""Captions of ``shapes`` scenes: reference templates with synonyms, and the parser back to a scene graph.

Every caption names each object as ``[a] <size> <colour> <shape>`` and joins consecutive objects
with a relation phrase, in canonical order (``a left of b``, ``a above b``) or reversed
(``b right of a``, ``b below a``). The templates wrap that chain in one of several frames
("there is ...", "two shapes: ...", "..., which is ..."), so an image gets several distinct
references, as on COCO. :func:`parse_caption` inverts any of them, and copes with free text by
returning whatever objects and relations it can find.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .scene import CONVERSE, Attributes, Scene

SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
COLOUR_WORDS = {
    "red": ("red",), "green": ("green",), "blue": ("blue",), "yellow": ("yellow",),
    "purple": ("purple", "violet"), "orange": ("orange",), "cyan": ("cyan",), "white": ("white",),
}
SHAPE_WORDS = {
    "circle": ("circle", "disc"), "square": ("square",), "triangle": ("triangle",),
    "star": ("star",), "cross": ("cross", "plus"), "diamond": ("diamond", "rhombus"),
}
RELATION_PHRASES = {
    "left": ("left of", "to the left of", "on the left of"),
    "right": ("right of", "to the right of", "on the right of"),
    "above": ("above", "over", "on top of"),
    "below": ("below", "under", "beneath"),
}
COUNT_WORDS = {1: "one shape", 2: "two shapes", 3: "three shapes", 4: "four shapes", 5: "five shapes"}

# Frames around the object chain: {chain} is the objects and relations, {count} e.g. "two shapes".
FRAMES = (
    "{chain}",
    "there is {chain}",
    "{count}: {chain}",
    "a picture of {chain}",
    "an image showing {chain}",
    "{chain} on a dark background",
    "a dark image with {chain}",
    "we can see {chain}",
    "in this image {chain}",
    "{count} on a plain background: {chain}",
)
# How two consecutive objects are joined: "{a} {rel} {b}" and the "which is" variant.
JOINS = ("{a} {rel} {b}", "{a} is {rel} {b}", "{a} placed {rel} {b}")
LATER_JOINS = (" {rel} {b}", ", which is {rel} {b}", " and that is {rel} {b}")


def object_phrase(attributes: Attributes, rng: np.random.Generator | None = None) -> str:
    """``"a small red circle"``; with ``rng``, synonyms are drawn at random."""
    size, colour, shape = attributes

    def pick(words):
        return words[0] if rng is None else words[int(rng.integers(len(words)))]

    return f"a {pick(SIZE_WORDS[size])} {pick(COLOUR_WORDS[colour])} {pick(SHAPE_WORDS[shape])}"


def canonical_caption(scene: Scene) -> str:
    """The one plain caption of a scene: canonical order, first synonyms, no frame.

    E.g. ``"a large red circle left of a small blue square above a small white star"``.
    """
    parts = [object_phrase(scene.objects[0].attributes)]
    for i, rel, j in scene.relations:
        parts.append(f"{RELATION_PHRASES[rel][0]} {object_phrase(scene.objects[j].attributes)}")
    return " ".join(parts)


def reference_captions(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """``n`` distinct reference captions drawn from the frames, joins, synonyms and directions."""
    captions: list[str] = []
    for _ in range(50 * n):
        caption = _random_caption(scene, rng)
        if caption not in captions:
            captions.append(caption)
            if len(captions) == n:
                break
    return captions


def _random_caption(scene: Scene, rng: np.random.Generator) -> str:
    phrases = [object_phrase(o.attributes, rng) for o in scene.objects]
    rels = [rel for _, rel, _ in scene.relations]
    if len(phrases) > 1 and rng.random() < 0.5:  # state the chain from its other end
        phrases = phrases[::-1]
        rels = [CONVERSE[r] for r in rels[::-1]]

    def rel_phrase(rel):
        options = RELATION_PHRASES[rel]
        return options[int(rng.integers(len(options)))]

    if not rels:
        chain = phrases[0]
    else:
        join = JOINS[int(rng.integers(len(JOINS)))]
        chain = join.format(a=phrases[0], rel=rel_phrase(rels[0]), b=phrases[1])
        for rel, phrase in zip(rels[1:], phrases[2:]):
            later = LATER_JOINS[int(rng.integers(len(LATER_JOINS)))]
            chain += later.format(rel=rel_phrase(rel), b=phrase)
    frame = FRAMES[int(rng.integers(len(FRAMES)))]
    count = COUNT_WORDS.get(len(phrases), f"{len(phrases)} shapes")
    return frame.format(chain=chain, count=count)


def vocabulary() -> list[str]:
    """Every word the templates can produce, sorted (a word-level tokenizer's vocabulary)."""
    text = " ".join(FRAMES + JOINS + LATER_JOINS + tuple(COUNT_WORDS.values()))
    for table in (SIZE_WORDS, COLOUR_WORDS, SHAPE_WORDS, RELATION_PHRASES):
        for words in table.values():
            text += " " + " ".join(words)
    text = re.sub(r"\{[a-z]+\}", " ", text) + " a"
    return sorted(set(_words(text)))


# ---------------------------------------------------------------------------------------------
# Parsing a caption back into objects and relations

_SIZE = {w: k for k, ws in SIZE_WORDS.items() for w in ws}
_COLOUR = {w: k for k, ws in COLOUR_WORDS.items() for w in ws}
_SHAPE = {w: k for k, ws in SHAPE_WORDS.items() for w in ws}
_RELATION_KEYWORDS = {"left": "left", "right": "right", "above": "above", "over": "above",
                      "top": "above", "below": "below", "under": "below", "beneath": "below"}


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


@dataclass(frozen=True)
class ParsedCaption:
    """What a caption states: objects (attributes, ``None`` where unsaid) and relations.

    ``relations`` are normalised to the canonical direction: ``(i, "left" | "above", j)``
    meaning object ``i`` is left of / above object ``j``.
    """

    objects: tuple[tuple[str | None, str | None, str], ...]
    relations: tuple[tuple[int, str, int], ...]

    def relation_triples(self):
        """Relations with objects named by their attributes."""
        return [(self.objects[i], rel, self.objects[j]) for i, rel, j in self.relations]


def parse_caption(caption: str) -> ParsedCaption:
    """Parse a caption into the objects and relations it states. Never raises on text input.

    An object is a run of size/colour words ending in a shape word ("small red circle"; a
    missing attribute is ``None``). A relation is a relation keyword found between two
    consecutive objects; ``right``/``below`` are turned around into ``left``/``above``.
    """
    words = _words(caption) if isinstance(caption, str) else []
    objects: list[tuple[str | None, str | None, str]] = []
    spans: list[tuple[int, int]] = []  # word index range of each object mention
    i = 0
    while i < len(words):
        j, size, colour = i, None, None
        while j < len(words) and (words[j] in _SIZE or words[j] in _COLOUR):
            if words[j] in _SIZE:
                size = _SIZE[words[j]]
            else:
                colour = _COLOUR[words[j]]
            j += 1
        if j < len(words) and words[j] in _SHAPE:
            objects.append((size, colour, _SHAPE[words[j]]))
            spans.append((i, j + 1))
            i = j + 1
        else:
            i = max(j, i + 1)
    relations = []
    for k in range(len(spans) - 1):
        between = words[spans[k][1]:spans[k + 1][0]]
        found = {_RELATION_KEYWORDS[w] for w in between if w in _RELATION_KEYWORDS}
        if len(found) != 1:
            continue  # no relation stated, or a contradictory one
        rel = found.pop()
        if rel in ("left", "above"):
            relations.append((k, rel, k + 1))
        else:
            relations.append((k + 1, CONVERSE[rel], k))
    return ParsedCaption(tuple(objects), tuple(relations))
