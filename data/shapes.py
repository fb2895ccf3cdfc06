"""The built-in ``shapes`` scene-captioning benchmark: generated offline, deterministic.

An image is a dark background (plain, gradient or light noise) with 1 to 3 bright objects, each
with a shape, colour and size, each in its own cell of a coarse grid (jittered inside it). Image
``i`` of a split is drawn from ``numpy.random.default_rng((stream, seed + i))`` where ``stream``
names the split, so every split is bit-identical across runs and machines and the ``train``
stream never repeats ``val``/``test`` images.

>>> from intelliflow.data.shapes import ShapesConfig, ShapesDataset
>>> test = ShapesDataset("test")            # 1000 images
>>> sample = test[0]
>>> sample.image.size, len(sample.captions)
((64, 64), 5)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from intelliflow.errors import ConfigError

from .captions import reference_captions
from .sample import CaptionSample
from .scene import Scene, SceneObject

SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond")
COLOURS = {
    "red": (225, 35, 35), "green": (40, 190, 50), "blue": (45, 85, 240), "yellow": (245, 225, 35),
    "purple": (165, 60, 215), "orange": (250, 145, 25), "cyan": (40, 215, 225),
    "white": (250, 250, 250),
}
SIZES = ("small", "large")
#: Object extent (bounding-box width) as a fraction of the image side: 12-14 px and 19.5-21.3 px at 64 (a cell is 21.3).
SIZE_RANGES = {"small": (0.19, 0.218), "large": (0.305, 0.333)}
SPLIT_SIZES = {"val": 500, "test": 1000}
_SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
_SUPERSAMPLE = 4  # objects are drawn at 4x and box-filtered down, for smooth edges


@dataclass(frozen=True)
class ShapesConfig:
    """How scenes are generated. Defaults are the benchmark; change them for variants.

    Object count is uniform on ``[min_objects, max_objects]``, the cells are a uniform draw
    without replacement from the ``grid x grid`` cells, and shape, colour and size are
    independent and uniform; the semantic entropy (:mod:`intelliflow.data.entropy`) relies on it.
    """

    image_size: int = 64
    grid: int = 3
    min_objects: int = 1
    max_objects: int = 3
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    sizes: tuple[str, ...] = SIZES
    n_references: int = 5
    seed: int = 0

    def __post_init__(self):
        if self.image_size < 16:
            raise ConfigError(f"shapes image_size must be at least 16 pixels, got {self.image_size}")
        if self.grid < 1:
            raise ConfigError(f"shapes grid must be at least 1, got {self.grid}")
        if not 1 <= self.min_objects <= self.max_objects <= self.grid ** 2:
            raise ConfigError(
                "shapes needs 1 <= min_objects <= max_objects <= grid**2, got "
                f"min_objects={self.min_objects}, max_objects={self.max_objects}, grid={self.grid}")
        for name, allowed in (("shapes", SHAPES), ("colours", tuple(COLOURS)), ("sizes", SIZES)):
            chosen = getattr(self, name)
            unknown = [v for v in chosen if v not in allowed]
            if unknown or not chosen or len(set(chosen)) != len(chosen):
                raise ConfigError(f"shapes {name} must be distinct values from {allowed}, got {chosen}")

    @classmethod
    def from_dict(cls, data: dict) -> "ShapesConfig":
        """Build from a plain mapping; unknown keys fail with the allowed ones."""
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(f"unknown shapes config key(s) {unknown}; allowed: {sorted(allowed)}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)


def scene_rng(split: str, index: int, seed: int = 0) -> np.random.Generator:
    """The random generator of image ``index`` of ``split``: ``default_rng((stream, seed + index))``."""
    if split not in _SPLIT_STREAMS:
        raise ConfigError(f"unknown shapes split {split!r}; allowed: {sorted(_SPLIT_STREAMS)}")
    return np.random.default_rng((_SPLIT_STREAMS[split], seed + index))


def sample_scene(rng: np.random.Generator, config: ShapesConfig = ShapesConfig()) -> Scene:
    """Draw one scene graph (with pixel positions) from ``rng``."""
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    cells = rng.choice(config.grid * config.grid, size=n, replace=False)
    cell_px = config.image_size / config.grid
    objects = []
    for cell in cells:
        row, col = divmod(int(cell), config.grid)
        shape = config.shapes[int(rng.integers(len(config.shapes)))]
        colour = config.colours[int(rng.integers(len(config.colours)))]
        size = config.sizes[int(rng.integers(len(config.sizes)))]
        lo, hi = SIZE_RANGES[size]
        extent = float(rng.uniform(lo, hi)) * config.image_size
        slack = max(0.0, (cell_px - extent) / 2 - 0.5)  # keep the object inside its cell
        x = (col + 0.5) * cell_px + float(rng.uniform(-slack, slack))
        y = (row + 0.5) * cell_px + float(rng.uniform(-slack, slack))
        # positions are kept to 1/1000 px so a scene survives its JSON form exactly
        objects.append(SceneObject(size, colour, shape, row, col, round(x, 3), round(y, 3), round(extent, 3)))
    return Scene.from_objects(objects)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A dark, low-saturation background [size, size, 3] float: plain, gradient or light noise."""
    def dark_colour():
        level = rng.uniform(20, 80)
        return np.clip(level + rng.uniform(-12, 12, size=3), 0, 255)

    kind = int(rng.integers(3))
    base = dark_colour()
    if kind == 0:
        return np.broadcast_to(base, (size, size, 3)).copy()
    if kind == 1:
        other = dark_colour()
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.linspace(0.0, 1.0, size)
        t = np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None]
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        return base + t[..., None] * (other - base)
    return np.clip(base + rng.normal(0, 8, size=(size, size, 3)), 0, 255)


def _polygon(shape: str, x: float, y: float, extent: float) -> list[tuple[float, float]] | None:
    """Vertices of a shape centred at (x, y) with bounding-box width ``extent``; None for a circle."""
    r = extent / 2
    if shape == "square":
        return [(x - r, y - r), (x + r, y - r), (x + r, y + r), (x - r, y + r)]
    if shape == "triangle":
        return [(x, y - r), (x + r, y + r), (x - r, y + r)]
    if shape == "diamond":
        return [(x, y - r), (x + 0.75 * r, y), (x, y + r), (x - 0.75 * r, y)]
    if shape == "cross":
        t = r / 3
        return [(x - t, y - r), (x + t, y - r), (x + t, y - t), (x + r, y - t), (x + r, y + t),
                (x + t, y + t), (x + t, y + r), (x - t, y + r), (x - t, y + t), (x - r, y + t),
                (x - r, y - t), (x - t, y - t)]
    if shape == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.48 * r)
        return [(x + rr * np.cos(a), y + 0.95 * rr * np.sin(a) + 0.1 * r) for a, rr in zip(angles, radii)]
    return None


def render_scene(scene: Scene, rng: np.random.Generator, image_size: int = 64) -> Image.Image:
    """Draw ``scene`` on a background drawn from ``rng``: an RGB PIL image of ``image_size``²."""
    background = _background(rng, image_size).round().astype(np.uint8)
    big = image_size * _SUPERSAMPLE
    canvas = Image.fromarray(background).resize((big, big), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        colour = COLOURS[obj.colour]
        x, y, extent = (v * _SUPERSAMPLE for v in (obj.x, obj.y, obj.extent))
        vertices = _polygon(obj.shape, x, y, extent)
        if vertices is None:
            draw.ellipse([x - extent / 2, y - extent / 2, x + extent / 2, y + extent / 2], fill=colour)
        else:
            draw.polygon(vertices, fill=colour)
    return canvas.resize((image_size, image_size), Image.BOX)


def make_sample(split: str, index: int, config: ShapesConfig = ShapesConfig()) -> CaptionSample:
    """Image ``index`` of ``split``: image, scene graph and ``config.n_references`` captions."""
    rng = scene_rng(split, index, config.seed)
    scene = sample_scene(rng, config)
    image = render_scene(scene, rng, config.image_size)
    captions = reference_captions(scene, rng, config.n_references)
    return CaptionSample(image_id=index, image=image, captions=captions, scene=scene,
                         file_name=f"{split}_{index:06d}.png")


class ShapesDataset(Dataset):
    """A fixed split (``val``: 500 images, ``test``: 1000) as a map-style dataset of
    :class:`~intelliflow.data.sample.CaptionSample`. ``limit`` keeps the first images only."""

    def __init__(self, split: str = "test", config: ShapesConfig = ShapesConfig(),
                 limit: int | None = None):
        if split not in SPLIT_SIZES:
            raise ConfigError(f"ShapesDataset takes a fixed split {sorted(SPLIT_SIZES)}, got {split!r}; "
                              "use ShapesStream for the endless 'train' stream")
        self.split, self.config = split, config
        self.length = SPLIT_SIZES[split] if limit is None else min(int(limit), SPLIT_SIZES[split])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> CaptionSample:
        if not -self.length <= index < self.length:
            raise IndexError(f"shapes:{self.split} has {self.length} images, asked for {index}")
        return make_sample(self.split, index % self.length, self.config)

    @property
    def name(self) -> str:
        return f"shapes:{self.split}"


@dataclass
class ShapesStream(IterableDataset):
    """The endless ``train`` stream, image ``start``, ``start + 1``, ...

    Shards across DataLoader workers and across distributed ranks (``rank`` of ``world_size``)
    by striding, so no two workers or ranks see the same image.
    """

    config: ShapesConfig = field(default_factory=ShapesConfig)
    start: int = 0
    rank: int = 0
    world_size: int = 1

    def __post_init__(self):
        super().__init__()

    def __iter__(self) -> Iterator[CaptionSample]:
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        stride = workers * self.world_size
        index = self.start + self.rank * workers + worker
        while True:
            yield make_sample("train", index, self.config)
            index += stride



class ShapeClasses(Dataset):
    """One object per image, labelled by its shape: a small classification set for any torch
    classifier (``intelliflow train`` recipes of ``task: bridge`` take it as ``data.entry``).

    Item ``i`` is image ``i`` of ``split`` drawn with ``min_objects = max_objects = 1`` at
    ``image_size``: ``(pixels [3, S, S] float in [0, 1], label)``, the label the shape's index in
    :data:`SHAPES` (0..5). ``length`` items (any number for ``train``, which never repeats
    ``val``/``test``).

    >>> pixels, label = ShapeClasses("val", length=10, image_size=32)[3]
    >>> tuple(pixels.shape), SHAPES[label]
    ((3, 32, 32), 'circle')
    """

    def __init__(self, split: str = "train", length: int = 10_000, image_size: int = 32, seed: int = 0):
        if split not in _SPLIT_STREAMS:
            raise ConfigError(f"unknown shapes split {split!r}; allowed: {sorted(_SPLIT_STREAMS)}")
        if isinstance(length, bool) or not isinstance(length, int) or length < 1:
            raise ConfigError(f"ShapeClasses length must be a positive integer, got {length!r}")
        self.split, self.length = split, length
        self.config = ShapesConfig(image_size=image_size, min_objects=1, max_objects=1, seed=seed)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not 0 <= index < self.length:
            raise IndexError(f"ShapeClasses has {self.length} images, asked for {index}")
        sample = make_sample(self.split, index, self.config)
        pixels = torch.from_numpy(np.asarray(sample.image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return pixels, SHAPES.index(sample.scene.objects[0].shape)
