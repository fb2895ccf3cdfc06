"""The drafter: a small decoder on the head's features, distilled from the verifier's greedy
captions; what it drafts, the verifier accepts, and a drafter refuses models it was not made for."""

import pytest
import torch

from intelliflow.errors import ConfigError
from intelliflow.models.drafter import Drafter, load_drafter
from intelliflow.training.drafter import acceptance, greedy_tokens
from test_models_split import BUILDERS, IMAGES


def test_a_drafter_learns_the_verifiers_captions():
    model = BUILDERS["vit-gpt2"](1)
    with torch.no_grad():
        features = model.head(model.preprocess(IMAGES))
        targets = greedy_tokens(model, features)
    torch.manual_seed(0)
    drafter = Drafter.for_model(model, width=32, layers=1)
    before = acceptance(model, drafter.eval(), IMAGES)["acceptance"]
    confidence_before = drafter.draft(features).confidence
    optimizer = torch.optim.Adam(drafter.parameters(), lr=3e-3)
    drafter.train()
    for _ in range(60):
        loss = drafter.loss(features, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = acceptance(model, drafter.eval(), IMAGES)
    assert before < 0.5 and after["acceptance"] == 1.0 and after["exact_drafts"] == 1.0
    assert after["passes"] == 2 and after["greedy_passes"] == pytest.approx(sum(map(len, targets)) / len(targets))
    draft = drafter.draft(features)
    assert draft.tokens == targets
    assert all(b < a <= 1.0 for a, b in zip(draft.confidence, confidence_before))


def test_save_load_and_the_models_a_drafter_refuses(tmp_path):
    model = BUILDERS["blip"](1)
    drafter = Drafter.for_model(model, width=32, layers=1).eval()
    drafter.count_ngrams([[5, 6, 2], [5, 7, 2]])
    assert drafter.ngrams[f"{model.decoding().start[0]} 5"] == {"6": 1, "7": 1}
    drafter.save(tmp_path / "d")
    again = load_drafter(tmp_path / "d")
    with torch.no_grad():
        features = model.head(model.preprocess(IMAGES))
    assert again.draft(features).tokens == drafter.draft(features).tokens and again.ngrams == drafter.ngrams
    with pytest.raises(ConfigError, match="split"):
        again.check_model(BUILDERS["blip"](2))
    with pytest.raises(ConfigError, match="starts with"):
        again.check_model(_with_other_start(model))
    with pytest.raises(Exception, match="unknown drafter"):
        load_drafter(tmp_path / "nothing")


def _with_other_start(model):
    model.model.config.text_config.bos_token_id = 3
    return model


def test_the_coco_drafter_recipe_trains_for_a_local_hugging_face_captioner(tmp_path):
    import json
    from pathlib import Path

    from PIL import Image

    from intelliflow.models import load_split_model
    from intelliflow.recipes.cli import main
    from tiny_models import tiny_blip

    model, tokenizer = tiny_blip()
    model.save_pretrained(tmp_path / "blip")
    tokenizer.save_pretrained(tmp_path / "blip")
    (tmp_path / "coco" / "images").mkdir(parents=True)
    annotations = {"images": [], "annotations": []}
    for i in range(4):
        Image.new("RGB", (40, 30), (60 * i, 20, 200 - 40 * i)).save(tmp_path / "coco" / "images" / f"{i}.jpg")
        annotations["images"].append({"id": i, "file_name": f"{i}.jpg"})
        annotations["annotations"].append({"id": i, "image_id": i, "caption": "a red circle"})
    (tmp_path / "coco" / "annotations.json").write_text(json.dumps(annotations))
    recipe = Path(__file__).parent.parent / "recipes" / "coco" / "blip_drafter.yaml"
    assert main(["train", str(recipe), "--set", f"model.name={tmp_path / 'blip'}", "--set", "model.split=1",
                 "--set", f"data=coco:{tmp_path / 'coco'}", "--set", "train.steps=3", "--set", "train.batch_size=2",
                 "--set", "train.workers=0", "--set", "model.width=32", "--set", "ngram_captions=4",
                 "--out", str(tmp_path / "run")]) == 0
    drafter = load_drafter(tmp_path / "run" / "drafter")
    blip = load_split_model(tmp_path / "blip", split=1)
    drafter.check_model(blip)
    assert sum(sum(n.values()) for n in drafter.ngrams.values()) >= 4     # the counts of 4 greedy captions
    images = [Image.open(tmp_path / "coco" / "images" / f"{i}.jpg") for i in range(2)]
    with torch.no_grad():
        features = blip.head(blip.preprocess(images))
        verified = blip.tail_verify(features, drafter.draft(features).tokens)
    assert blip.decode_ids(verified.ids) == blip.tail_generate(features)
