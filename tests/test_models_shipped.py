"""The shipped shapes-captioner: it loads by name, splits exactly, and captions the test split well."""

import torch

from intelliflow.data.shapes import ShapesDataset
from intelliflow.evaluation.semantic import semantic_accuracy
from intelliflow.models import load_split_model, shipped_models


def test_shipped_captioner_is_installed_small_and_loads_at_every_split():
    folder = shipped_models()["shapes-captioner"]
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 20e6
    assert "seed" in (folder / "README.md").read_text()
    model = load_split_model("shapes-captioner")
    assert model.split == model.default_split == 4
    assert load_split_model("shapes-captioner", split=1).split == 1


def test_shipped_captioner_describes_test_scenes_and_splits_exactly():
    dataset = ShapesDataset("test", limit=60)
    samples = [dataset[i] for i in range(len(dataset))]
    images = [s.image for s in samples]
    model = load_split_model("shapes-captioner", split=2)
    with torch.no_grad():
        px = model.preprocess(images)
        features = model.head(px)
        tail_ids = model.tail_generate_ids(features)
        assert torch.equal(tail_ids, model.full_generate_ids(px))
        captions = model.decode_ids(tail_ids)
    scores = semantic_accuracy({s.image_id: c for s, c in zip(samples, captions)},
                               {s.image_id: s.scene for s in samples})
    assert scores["semantic_accuracy"] >= 0.9 and scores["relation_accuracy"] >= 0.8
