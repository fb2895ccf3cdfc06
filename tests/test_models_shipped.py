"""The shipped shapes-captioner: it loads by name, splits exactly, and captions the test split well."""

import contextlib
import logging
import warnings

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


@contextlib.contextmanager
def transformers_log():
    """Records of the ``transformers`` loggers at WARNING and above, with one-time warnings re-armed
    (``logger.warning_once`` would otherwise stay silent after its first call in the process)."""
    logger = logging.getLogger("transformers")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logging.Logger.warning_once.cache_clear()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_batched_generation_is_quiet_and_unchanged():
    """A batch whose captions end at different lengths is padded: transformers warns about a
    missing attention mask there unless the adapter passes one, which must not change the tokens."""
    from transformers.modeling_outputs import BaseModelOutput

    model = load_split_model("shapes-captioner")
    images = [s.image for s in ShapesDataset("test", limit=12)]
    with torch.no_grad():
        px = model.preprocess(images)
        features = model.head(px)
        with transformers_log() as records, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tail_ids = model.tail_generate_ids(features)
            full_ids = model.full_generate_ids(px)
            beam_ids = model.tail_generate_ids(features, num_beams=2)
        assert [r.getMessage() for r in records] == [] and [str(w.message) for w in caught] == []
        assert (tail_ids == model.tokenizer.pad_token_id).any()  # some captions were padded
        assert torch.equal(tail_ids, full_ids) and beam_ids.shape[0] == len(images)
        # the same generate call without the mask: the capture does see the warning, and the tokens are equal
        with transformers_log() as records:
            bare = model.model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=model.vision_tail(features)))
        assert any("attention_mask" in r.getMessage() for r in records)
        assert torch.equal(bare, tail_ids)


def test_shipped_llava_captioner_loads_by_name_splits_exactly_and_captions_well():
    """shapes-llava: a LLaVA folder (CLIP tower, projector, Llama) split by the LLaVA adapter."""
    from intelliflow.models.vlm_adapters import LlavaSplit

    folder = shipped_models()["shapes-llava"]
    assert sum(p.stat().st_size for p in folder.iterdir()) < 20e6
    assert "seed" in (folder / "README.md").read_text()
    dataset = ShapesDataset("test", limit=60)
    samples = [dataset[i] for i in range(len(dataset))]
    model = load_split_model("shapes-llava")
    assert isinstance(model, LlavaSplit) and model.point == "projector" and model.feature_grid == (8, 8)
    with torch.no_grad():
        px = model.preprocess([s.image for s in samples])
        expected = model.full_generate_ids(px)
        for point in ("vision.2", "projector"):
            split = load_split_model("shapes-llava", split=point)
            assert torch.equal(split.tail_generate_ids(split.head(px)), expected), point
    captions = model.decode_ids(expected)
    scores = semantic_accuracy({s.image_id: c for s, c in zip(samples, captions)},
                               {s.image_id: s.scene for s in samples})
    assert scores["semantic_accuracy"] >= 0.9 and scores["relation_accuracy"] >= 0.8
