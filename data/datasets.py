"""Datasets by name, and export to COCO-captions format.

A dataset spec is a string, as the command line takes it:

- ``shapes:val``, ``shapes:test``: the built-in benchmark's fixed splits;
- ``coco:DIR``: a folder with ``annotations.json`` and ``images/`` (what :func:`export_dataset`
  writes, so exported ``shapes`` splits load back this way); ``coco:FILE.json`` takes the images
  from an ``images/`` folder beside the file, or the file's own folder;
- ``flickr8k:DIR``: a folder with ``Flickr8k.token.txt`` (or ``captions.txt``) and
  ``Flicker8k_Dataset/`` (or ``Images/``); ``flickr8k:DIR:test`` picks a split.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from torch.utils.data import Dataset
from tqdm import tqdm

from intelliflow.checkpoint import atomic_write_bytes
from intelliflow.errors import DatasetNotFoundError, RegistryError

from .coco import CocoCaptions, Flickr8k
from .shapes import SPLIT_SIZES, ShapesConfig, ShapesDataset

DATASET_KINDS = ("shapes", "coco", "flickr8k")


def open_dataset(spec: str, limit: int | None = None, shapes_config: ShapesConfig = ShapesConfig()) -> Dataset:
    """Open a dataset from its spec (see the module docstring); ``limit`` keeps the first images."""
    kind, _, rest = spec.partition(":")
    if kind == "shapes":
        if rest not in SPLIT_SIZES:
            raise RegistryError(f"unknown shapes split in {spec!r}; use one of "
                                f"{[f'shapes:{s}' for s in SPLIT_SIZES]}")
        return ShapesDataset(rest, shapes_config, limit=limit)
    if kind == "coco":
        path = Path(rest)
        if path.is_dir():
            annotations, images = path / "annotations.json", path / "images"
        else:
            annotations = path
            images = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
        return CocoCaptions(annotations, images, limit=limit)
    if kind == "flickr8k":
        folder, _, split = rest.partition(":")
        folder = Path(folder)
        captions = next((folder / n for n in ("Flickr8k.token.txt", "captions.txt") if (folder / n).is_file()), None)
        images = next((folder / n for n in ("Flicker8k_Dataset", "Flickr8k_Dataset", "Images")
                       if (folder / n).is_dir()), None)
        if captions is None or images is None:
            raise DatasetNotFoundError(f"{folder} must hold Flickr8k.token.txt (or captions.txt) and "
                                       "Flicker8k_Dataset/ (or Images/)")
        return Flickr8k(captions, images, split=split or None, limit=limit)
    raise RegistryError(f"unknown dataset {spec!r}; a spec starts with one of {list(DATASET_KINDS)} "
                        "(e.g. shapes:test, coco:DIR, flickr8k:DIR)")


def export_dataset(dataset: Dataset, out_dir: str | Path, description: str = "",
                   progress: bool = False) -> Path:
    """Write ``dataset`` as COCO captions: ``out_dir/images/*.png`` and ``out_dir/annotations.json``.

    Scene graphs (``shapes``) go under the extra top-level key ``"scenes"``. The output is
    byte-identical for the same dataset. ``progress`` shows a progress bar on stderr.
    Returns the annotations path.
    """
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    images, annotations, scenes = [], [], []
    for k in tqdm(range(len(dataset)), desc=f"export {description}".strip(), unit="img",
                  disable=not progress, file=sys.stderr):
        sample = dataset[k]
        file_name = sample.file_name or f"{sample.image_id:06d}.png"
        if not file_name.endswith(".png"):
            file_name = Path(file_name).stem + ".png"
        sample.image.save(out_dir / "images" / file_name, format="PNG")
        images.append({"id": sample.image_id, "file_name": file_name,
                       "width": sample.image.width, "height": sample.image.height})
        for caption in sample.captions:
            annotations.append({"id": len(annotations) + 1, "image_id": sample.image_id, "caption": caption})
        if sample.scene is not None:
            scenes.append({"image_id": sample.image_id, **sample.scene.to_dict()})
    data = {"info": {"description": description or getattr(dataset, "name", "intelliflow export"),
                     "created_by": "intelliflow data export"},
            "images": images, "annotations": annotations}
    if scenes:
        data["scenes"] = scenes
    path = out_dir / "annotations.json"
    atomic_write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))
    return path
