"""The built-in shapes benchmark: determinism, geometry, captions, streams."""

import hashlib

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from intelliflow.data.captions import parse_caption
from intelliflow.data.sample import collate_samples
from intelliflow.data.scene import Scene, SceneObject
from intelliflow.data.shapes import (COLOURS, SIZE_RANGES, ShapesConfig, ShapesDataset, ShapesStream,
                                     make_sample, render_scene, sample_scene, scene_rng)
from intelliflow.errors import ConfigError, DatasetError


def digest(sample):
    return hashlib.sha256(sample.image.tobytes() + "|".join(sample.captions).encode()).hexdigest()


def test_same_seed_same_images_other_seed_other_images():
    a = [digest(make_sample("test", i)) for i in range(5)]
    b = [digest(make_sample("test", i)) for i in range(5)]
    c = [digest(make_sample("test", i, ShapesConfig(seed=1))) for i in range(5)]
    assert a == b
    assert all(x != y for x, y in zip(a, c))


def test_train_stream_is_image_i_from_seed_plus_i_and_differs_from_test():
    cfg = ShapesConfig(seed=7)
    stream = iter(ShapesStream(cfg))
    first = [next(stream) for _ in range(3)]
    assert [digest(s) for s in first] == [digest(make_sample("train", i, cfg)) for i in range(3)]
    # seed + i: shifting the seed by one shifts the stream by one image
    assert digest(make_sample("train", 1, ShapesConfig(seed=7))) == digest(make_sample("train", 0, ShapesConfig(seed=8)))
    test_digests = {digest(make_sample("test", i, cfg)) for i in range(20)}
    assert not test_digests & {digest(make_sample("train", i, cfg)) for i in range(20)}


def test_split_sizes_and_indexing():
    assert len(ShapesDataset("val")) == 500
    assert len(ShapesDataset("test")) == 1000
    assert len(ShapesDataset("test", limit=10)) == 10
    with pytest.raises(IndexError):
        ShapesDataset("test", limit=10)[10]
    with pytest.raises(ConfigError, match="ShapesStream"):
        ShapesDataset("train")


def test_objects_have_the_specified_sizes_and_stay_in_their_cells():
    cfg = ShapesConfig()
    cell = cfg.image_size / cfg.grid
    for i in range(300):
        scene = sample_scene(scene_rng("test", i), cfg)
        assert 1 <= len(scene.objects) <= 3
        for o in scene.objects:
            lo, hi = SIZE_RANGES[o.size]
            assert lo * 64 <= o.extent <= hi * 64
            assert 12 <= o.extent <= 14 if o.size == "small" else 19.5 <= o.extent <= 24
            # the bounding box stays inside its own grid cell, so objects never overlap
            assert o.col * cell <= o.x - o.extent / 2 and o.x + o.extent / 2 <= (o.col + 1) * cell
            assert o.row * cell <= o.y - o.extent / 2 and o.y + o.extent / 2 <= (o.row + 1) * cell


def test_object_colour_is_drawn_where_the_object_is_and_background_stays_dark():
    obj = SceneObject("large", "red", "square", 1, 1, 32.0, 32.0, 21.0)
    image = np.asarray(render_scene(Scene.from_objects([obj]), np.random.default_rng(0)))
    assert image.shape == (64, 64, 3)
    assert tuple(image[32, 32]) == COLOURS["red"]
    assert image[2, 2].max() < 110  # backgrounds are dark, far from every object colour
    assert image[32, 23].tolist() == list(COLOURS["red"]) and image[32, 45].max() < 110  # square spans 21.5-42.5


def test_image_size_is_configurable_and_objects_scale():
    sample = make_sample("val", 3, ShapesConfig(image_size=128))
    assert sample.image.size == (128, 128)
    assert all(o.extent >= 24 for o in sample.scene.objects)


def test_references_are_five_distinct_and_each_parses_back_to_the_scene():
    from intelliflow.evaluation.semantic import score_caption
    for i in range(200):
        sample = make_sample("val", i)
        assert len(sample.captions) == 5 and len(set(sample.captions)) == 5
        for caption in sample.captions:
            score = score_caption(caption, sample.scene)
            assert score.exact_match, (caption, sample.scene)


def test_relations_follow_from_cells():
    a = SceneObject("small", "red", "circle", 0, 0)
    b = SceneObject("small", "blue", "square", 2, 0)  # same column, lower row
    c = SceneObject("large", "green", "star", 0, 2)  # other column
    scene = Scene.from_objects([c, b, a])
    assert [o.colour for o in scene.objects] == ["red", "blue", "green"]
    assert scene.relations == ((0, "above", 1), (1, "left", 2))
    with pytest.raises(DatasetError, match="distinct grid cells"):
        Scene.from_objects([a, SceneObject("large", "red", "star", 0, 0)])
    assert Scene.from_dict(scene.to_dict()) == scene


def test_dataloader_with_workers_gives_the_same_samples():
    loader = DataLoader(ShapesDataset("test", limit=8), batch_size=4, num_workers=2,
                        collate_fn=collate_samples)
    batches = list(loader)
    assert [i for b in batches for i in b["image_ids"]] == list(range(8))
    assert batches[1]["images"][0].tobytes() == make_sample("test", 4).image.tobytes()


def test_stream_shards_over_workers_and_ranks_without_repeats():
    seen = []
    for rank in range(2):
        loader = DataLoader(ShapesStream(rank=rank, world_size=2), batch_size=3, num_workers=2,
                            collate_fn=collate_samples)
        it = iter(loader)
        for _ in range(2):
            seen += next(it)["image_ids"]
    assert sorted(seen) == list(range(12))


def test_config_rejects_unknown_keys_and_values():
    with pytest.raises(ConfigError, match="allowed"):
        ShapesConfig.from_dict({"image_sise": 32})
    with pytest.raises(ConfigError, match="colours"):
        ShapesConfig(colours=("red", "magenta"))
    with pytest.raises(ConfigError, match="max_objects"):
        ShapesConfig(grid=1, max_objects=2)
    assert ShapesConfig.from_dict({"shapes": ["circle", "star"]}).shapes == ("circle", "star")


def test_parse_caption_handles_free_text_and_reversed_relations():
    parsed = parse_caption("There is a big violet disc to the right of a tiny cyan plus!")
    assert parsed.objects == (("large", "purple", "circle"), ("small", "cyan", "cross"))
    assert parsed.relations == ((1, "left", 0),)
    assert parse_caption("").objects == ()
    assert parse_caption("a red thing next to nothing").objects == ()
    assert parse_caption("a red circle and a square").objects == ((None, "red", "circle"), (None, None, "square"))
    assert parse_caption("a red circle and a square").relations == ()
