"""Real captioning datasets from local files: COCO captions (optionally Karpathy splits) and Flickr8k.

Both yield :class:`~intelliflow.data.sample.CaptionSample` like ``shapes`` (with ``scene=None``).
Nothing is downloaded: point them at files you have. Every missing or malformed file is a
:class:`~intelliflow.errors.DatasetError` naming the file.

.. code-block:: python

    ds = CocoCaptions("annotations/captions_val2014.json", "val2014/")
    ds = CocoCaptions("captions_val2014.json", "val2014/", karpathy="dataset_coco.json", split="test")
    ds = Flickr8k("Flickr8k.token.txt", "Flicker8k_Dataset/", split="test")
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from intelliflow.errors import DatasetError, DatasetNotFoundError

from .sample import CaptionSample
from .scene import Scene

KARPATHY_SPLITS = ("train", "val", "test", "restval")


def _existing(path: str | Path, what: str, folder: bool = False) -> Path:
    path = Path(path)
    ok = path.is_dir() if folder else path.is_file()
    if not ok:
        raise DatasetNotFoundError(f"{what} not found: {path}")
    return path


def read_json(path: str | Path, what: str):
    """Parse a JSON file; a missing file or bad JSON is a :class:`DatasetError` naming ``what`` and the path."""
    path = _existing(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{what} {path} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise DatasetError(f"{what} {path} is nested too deeply to be a COCO file") from None


#: the longest caption a COCO file may hold (a caption is a sentence; megabytes keep the scorers busy for minutes)
MAX_CAPTION_CHARS = 2000


def check_entry(where: str, image_id, caption) -> None:
    """A COCO entry's ``image_id`` is an integer or a string and its caption a string of at most
    :data:`MAX_CAPTION_CHARS` characters; anything else is a :class:`DatasetError` naming ``where``."""
    if not isinstance(image_id, (int, str)) or isinstance(image_id, bool):
        raise DatasetError(f"{where} has image_id {str(image_id)[:40]!r}; expected an integer or a string")
    if not isinstance(caption, str) or len(caption) > MAX_CAPTION_CHARS:
        raise DatasetError(f"{where}: the caption must be a string of at most {MAX_CAPTION_CHARS} characters, got "
                           + (f"{len(caption)} characters" if isinstance(caption, str) else f"{str(caption)[:40]!r}"))


@dataclass
class CocoAnnotations:
    """A COCO captions file, parsed (see :func:`parse_coco_annotations`).

    :ivar path: the file.
    :ivar images: ``{image_id: entry of "images"}`` (the entry holds ``file_name``, ``width``, ...);
        ``None`` when the file has no ``images`` list.
    :ivar captions: ``{image_id: [caption, ...]}`` in file order: every id of ``images`` (possibly
        with no caption), then the ids that only ``annotations`` names. Captions are as written.
    :ivar scenes: ``{image_id: scene dict}`` from the extra top-level key ``"scenes"`` that
        ``intelliflow data export shapes:...`` writes; empty for other files.
    """

    path: Path
    images: dict[Any, dict] | None = None
    captions: dict[Any, list[str]] = field(default_factory=dict)
    scenes: dict[Any, dict] = field(default_factory=dict)


def parse_coco_annotations(path: str | Path) -> CocoAnnotations:
    """Parse a COCO captions file (``annotations.json``, ``captions_val2014.json``, ...).

    The one reader of that format: :class:`CocoCaptions` and
    :func:`intelliflow.evaluation.metrics.read_coco_annotations` both use it. ``annotations`` is a
    list of ``{"image_id", "caption"}`` objects; ``images``, when present, a list of objects with an
    ``id``. Anything else is a :class:`~intelliflow.errors.DatasetError` naming the file.

    >>> import json, tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = pathlib.Path(folder) / "annotations.json"
    ...     _ = path.write_text(json.dumps({"images": [{"id": 7, "file_name": "a.png"}, {"id": 8}],
    ...         "annotations": [{"id": 1, "image_id": 7, "caption": "a red circle"}]}))
    ...     parse_coco_annotations(path).captions
    {7: ['a red circle'], 8: []}
    """
    data = read_json(path, "COCO annotations file")
    path = Path(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list) \
            or not isinstance(data.get("images", []), list):
        raise DatasetError(f"COCO annotations file {path} must be a COCO captions object with an 'annotations' "
                           "list (and an 'images' list)")
    parsed = CocoAnnotations(path, images=None if "images" not in data else {})
    for k, image in enumerate(data.get("images", [])):
        if not isinstance(image, dict) or "id" not in image:
            raise DatasetError(f"COCO annotations file {path} has a malformed entry: image {k} needs an 'id', "
                               f"got {str(image)[:80]!r}")
        check_entry(f"COCO annotations file {path}: image {k}", image["id"], "")
        parsed.images[image["id"]] = image
        parsed.captions[image["id"]] = []
    for k, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or "image_id" not in ann or "caption" not in ann:
            raise DatasetError(f"COCO annotations file {path} has a malformed entry: annotation {k} needs "
                               f"'image_id' and a string 'caption', got {str(ann)[:80]!r}")
        check_entry(f"COCO annotations file {path}: annotation {k}", ann["image_id"], ann["caption"])
        parsed.captions.setdefault(ann["image_id"], []).append(ann["caption"])
    scenes = data.get("scenes", [])
    for k, scene in enumerate(scenes if isinstance(scenes, list) else [scenes]):
        if not isinstance(scene, dict) or "image_id" not in scene:
            raise DatasetError(f"COCO annotations file {path} has a malformed scene: entry {k} of 'scenes' "
                               f"needs an 'image_id', got {str(scene)[:80]!r}")
        check_entry(f"COCO annotations file {path}: scene {k}", scene["image_id"], "")
        parsed.scenes[scene["image_id"]] = scene
    return parsed


#: the largest picture read from a file (its header is read first): bounds what one file can cost
MAX_IMAGE_PIXELS = 8192 * 8192


def open_image(path: str | Path) -> Image.Image:
    """An image file as an RGB PIL image: 16-bit and float pictures scaled to 8 bits (not clipped
    to white), pictures over :data:`MAX_IMAGE_PIXELS` and decompression bombs refused; any failure is
    a :class:`DatasetError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise DatasetError(f"image file {path} is {image.width}x{image.height}, over the limit of "
                                   f"{MAX_IMAGE_PIXELS} pixels")
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                values = np.asarray(image, dtype=np.float64)
                top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
                image = Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
            return image.convert("RGB")
    except DatasetError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise DatasetError(f"image file {path} cannot be read as an image: {exc}") from exc


class _FileCaptionDataset(Dataset):
    """Shared indexing: a list of (image_id, image path, captions)."""

    name = "captions"

    def __init__(self, entries: list[tuple[int, Path, list[str]]], limit: int | None,
                 scenes: dict[int, Scene] | None = None):
        if limit is not None:
            entries = entries[: int(limit)]
        self.entries = entries
        self.scenes = scenes or {}

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> CaptionSample:
        image_id, path, captions = self.entries[index]
        return CaptionSample(image_id=image_id, image=open_image(path), captions=list(captions),
                             scene=self.scenes.get(image_id), file_name=path.name)


class CocoCaptions(_FileCaptionDataset):
    """COCO captions: an ``annotations.json`` (COCO captions format) and its image folder.

    :param annotations: ``captions_*.json`` with ``images`` (``id``, ``file_name``) and
        ``annotations`` (``image_id``, ``caption``).
    :param images: the folder holding the images (``file_name`` is looked up inside it, and
        inside a sub-folder named by the Karpathy file's ``filepath`` when one is given).
    Scene graphs stored under the key ``"scenes"`` (an exported ``shapes`` split) come back
    on the samples.

    :param karpathy: optional Karpathy split file (``dataset_coco.json``); with ``split``, only its
        images of that split are kept (``"train"`` includes ``"restval"``).

    An exported ``shapes`` split is such a pair of file and folder:

    >>> import tempfile
    >>> from intelliflow.data.datasets import export_dataset
    >>> from intelliflow.data.shapes import ShapesDataset
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     annotations = export_dataset(ShapesDataset("test", limit=2), folder)
    ...     ds = CocoCaptions(annotations, annotations.parent / "images")
    ...     sample = ds[1]
    >>> len(ds), sample.image.size, len(sample.captions), sample.scene is not None
    (2, (64, 64), 5, True)
    """

    name = "coco"

    def __init__(self, annotations: str | Path, images: str | Path, karpathy: str | Path | None = None,
                 split: str | None = None, limit: int | None = None):
        parsed = parse_coco_annotations(annotations)
        annotations = parsed.path
        images = _existing(images, "COCO image folder", folder=True)
        if parsed.images is None:
            raise DatasetError(f"COCO annotations file {annotations} needs 'images' and 'annotations' lists")
        files: dict[int, str] = {}
        for image_id, image in parsed.images.items():
            if not isinstance(image.get("file_name"), str):
                raise DatasetError(f"COCO annotations file {annotations} has a malformed entry: image {image_id!r} "
                                   f"needs a 'file_name', got {image!r}")
            files[image_id] = image["file_name"]
        captions = {i: [c.strip() for c in caps] for i, caps in parsed.captions.items() if caps}
        unknown = sorted(set(captions) - set(files))
        if unknown:
            raise DatasetError(f"COCO annotations file {annotations}: captions for image ids not in "
                               f"'images', e.g. {unknown[:5]}")

        ids = [i for i in files if i in captions]
        folders = {}
        if karpathy is not None:
            ids, folders = self._karpathy_ids(Path(karpathy), split, files)
        elif split is not None:
            raise DatasetError("a COCO split needs the Karpathy split file (karpathy=...)")
        entries = []
        for i in ids:
            path = images / folders.get(i, "") / files[i]
            if not path.is_file() and (images / files[i]).is_file():
                path = images / files[i]
            entries.append((i, path, captions.get(i, [])))
        missing = [str(p) for _, p, _ in entries if not p.is_file()]
        if missing:
            raise DatasetNotFoundError(f"{len(missing)} image file(s) listed in {annotations} are missing, "
                                       f"e.g. {missing[:3]}")
        scenes = None
        if parsed.scenes:
            try:
                scenes = {i: Scene.from_dict(s) for i, s in parsed.scenes.items()}
            except (KeyError, TypeError) as exc:
                raise DatasetError(f"COCO annotations file {annotations} has a malformed scene: {exc!r}") from exc
        super().__init__(entries, limit, scenes)

    @staticmethod
    def _karpathy_ids(path: Path, split: str | None, files: dict) -> tuple[list[int], dict]:
        if split not in KARPATHY_SPLITS:
            raise DatasetError(f"Karpathy split must be one of {KARPATHY_SPLITS}, got {split!r}")
        wanted = {"train": {"train", "restval"}}.get(split, {split})
        data = read_json(path, "Karpathy split file")
        try:
            chosen = [(img["cocoid"], img.get("filepath", "")) for img in data["images"]
                      if img["split"] in wanted]
        except (KeyError, TypeError) as exc:
            raise DatasetError(f"Karpathy split file {path} has a malformed entry: {exc!r}") from exc
        absent = [i for i, _ in chosen if i not in files]
        if absent:
            raise DatasetError(f"Karpathy split file {path} names COCO ids absent from the annotations, e.g. {absent[:5]}")
        return [i for i, _ in chosen], dict(chosen)


class Flickr8k(_FileCaptionDataset):
    """Flickr8k: its captions file and image folder, optionally restricted to a split.

    :param captions: ``Flickr8k.token.txt`` (lines ``name.jpg#k<TAB>caption``) or the CSV form
        ``captions.txt`` (header ``image,caption``).
    :param images: the image folder (``Flicker8k_Dataset/`` or ``Images/``).
    :param split: ``"train"``, ``"dev"`` or ``"test"``: reads ``Flickr_8k.{trainImages,devImages,
        testImages}.txt`` from ``split_dir`` (default: the captions file's folder).
    """

    name = "flickr8k"

    def __init__(self, captions: str | Path, images: str | Path, split: str | None = None,
                 split_dir: str | Path | None = None, limit: int | None = None):
        captions = _existing(captions, "Flickr8k captions file")
        images = _existing(images, "Flickr8k image folder", folder=True)
        by_image = self._read_captions(captions)
        names = sorted(by_image)
        if split is not None:
            split_names = {"train": "trainImages", "dev": "devImages", "val": "devImages", "test": "testImages"}
            if split not in split_names:
                raise DatasetError(f"Flickr8k split must be one of ['train', 'dev', 'test'], got {split!r}")
            split_file = _existing(Path(split_dir or captions.parent) / f"Flickr_8k.{split_names[split]}.txt",
                                   "Flickr8k split file")
            wanted = [n.strip() for n in split_file.read_text(encoding="utf-8").splitlines() if n.strip()]
            unknown = [n for n in wanted if n not in by_image]
            if unknown:
                raise DatasetError(f"Flickr8k split file {split_file} names images without captions, e.g. {unknown[:3]}")
            names = wanted
        entries = [(k, images / n, by_image[n]) for k, n in enumerate(names)]
        missing = [str(p) for _, p, _ in entries if not p.is_file()]
        if missing:
            raise DatasetNotFoundError(f"{len(missing)} Flickr8k image file(s) are missing, e.g. {missing[:3]}")
        super().__init__(entries, limit)

    @staticmethod
    def _read_captions(path: Path) -> dict[str, list[str]]:
        text = path.read_text(encoding="utf-8")
        by_image: dict[str, list[str]] = {}
        lines = text.splitlines()
        if lines and lines[0].strip().lower() == "image,caption":
            rows = list(csv.reader(lines[1:]))
            for k, row in enumerate(rows, start=2):
                if len(row) < 2:
                    raise DatasetError(f"Flickr8k captions file {path}, line {k}: expected 'image,caption', got {row!r}")
                by_image.setdefault(row[0].strip(), []).append(",".join(row[1:]).strip())
        else:
            for k, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                key, sep, caption = line.partition("\t")
                name = key.split("#")[0].strip()
                if not sep or "#" not in key or not name:
                    raise DatasetError(f"Flickr8k captions file {path}, line {k}: expected "
                                       f"'name.jpg#k<TAB>caption', got {line[:80]!r}")
                by_image.setdefault(name, []).append(caption.strip())
        if not by_image:
            raise DatasetError(f"Flickr8k captions file {path} holds no captions")
        return by_image
