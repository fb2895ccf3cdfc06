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
