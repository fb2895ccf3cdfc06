"""Split models: head + tail reproduce the unsplit model exactly, for every model and several k."""

import pytest
import torch

from intelliflow.data.captions import canonical_caption, vocabulary
from intelliflow.data.shapes import make_sample
from intelliflow.errors import ConfigError, ShapeError
from intelliflow.models.captioner import ShapesCaptioner, build_captioner, build_tokenizer
from intelliflow.models.hf_adapters import BlipSplit, GitSplit, VisionEncoderDecoderSplit
from intelliflow.models.protocol import grid_to_tokens, tokens_to_grid
from tiny_models import tiny_blip, tiny_git, tiny_ved

SAMPLES = [make_sample("val", i) for i in range(3)]
IMAGES = [s.image for s in SAMPLES]
CAPTIONS = [s.captions[0] for s in SAMPLES]


def tiny_shapes_captioner(split=None):
    torch.manual_seed(0)
    tok = build_tokenizer(vocabulary())
    model = build_captioner(tok, hidden_size=32, encoder_layers=3, decoder_layers=2, heads=2).eval()
    return ShapesCaptioner(model, tok, split=split)


BUILDERS = {
    "shapes-captioner": lambda k: tiny_shapes_captioner(k),
    "vit-gpt2": lambda k: VisionEncoderDecoderSplit(*tiny_ved(), split=k),
    "blip": lambda k: BlipSplit(*tiny_blip(), split=k),
    "git": lambda k: GitSplit(*tiny_git(), split=k),
}


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("k", [0, 1, 3])
def test_identity_split_gives_the_unsplit_loss_and_tokens(name, k):
    model = BUILDERS[name](k)
    px = model.preprocess(IMAGES)
    with torch.no_grad():
        features = model.head(px)
        h, w = model.feature_grid
        assert features.shape == (3, model.prefix_tokens + h * w, model.feature_dim)
        assert torch.equal(model.tail_loss(features, CAPTIONS), model.full_loss(px, CAPTIONS))
        gen = dict(max_new_tokens=8, min_new_tokens=8)
        tail_ids = model.tail_generate_ids(features, **gen)
        full_ids = model.full_generate_ids(px, **gen)
    assert torch.equal(tail_ids, full_ids)
    assert tail_ids.shape[1] >= 8
    assert model.tail_generate(features, **gen) == model.decode_ids(full_ids)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_gradients_reach_the_head_through_the_tail(name):
    model = BUILDERS[name](1)
    model.train()
    features = model.head(model.preprocess(IMAGES))
    features.retain_grad()
    model.tail_loss(features, CAPTIONS).backward()
    assert features.grad is not None and features.grad.abs().sum() > 0
    first = next(p for n, p in model.named_parameters() if "embed" in n or "stem" in n)
    assert first.grad is not None and first.grad.abs().sum() > 0


def test_perturbed_features_change_the_output():
    model = BUILDERS["blip"](2)
    px = model.preprocess(IMAGES)
    with torch.no_grad():
        features = model.head(px)
        assert not torch.equal(model.tail_loss(features + 0.5 * torch.randn_like(features), CAPTIONS),
                               model.full_loss(px, CAPTIONS))


def test_git_runs_its_image_path_once_per_generate():
    model = BUILDERS["git"](1)
    with torch.no_grad():
        features = model.head(model.preprocess(IMAGES))
        model.tail_generate(features, max_new_tokens=6, min_new_tokens=6)
    assert model.last_image_encoder_calls == 1
    for beams in (2,):
        with torch.no_grad():
            model.tail_generate(features, max_new_tokens=4, num_beams=beams)
        assert model.last_image_encoder_calls == 1


def test_bad_split_and_bad_features_are_clear_errors():
    with pytest.raises(ConfigError, match="split must be in 0..3"):
        tiny_shapes_captioner(split=7)
    model = tiny_shapes_captioner(split=1)
    with pytest.raises(ShapeError, match=r"\[B, 64, 32\]"):
        model.tail_loss(torch.zeros(2, 10, 32), ["a", "b"])


def test_default_split_and_canonical_targets():
    model = tiny_shapes_captioner()
    assert model.split == model.default_split == 3 and model.feature_grid == (8, 8)
    labels = model.labels([canonical_caption(s.scene) for s in SAMPLES])
    assert (labels == model.tokenizer.unk_token_id).sum() == 0  # the vocabulary covers every caption word


def test_tokens_grid_round_trip():
    x = torch.randn(2, 1 + 12, 5)
    grid, prefix = tokens_to_grid(x, (3, 4), prefix_tokens=1)
    assert grid.shape == (2, 5, 3, 4) and prefix.shape == (2, 1, 5)
    assert torch.equal(grid_to_tokens(grid, prefix), x)
    assert torch.equal(grid[:, :, 1, 2], x[:, 1 + 1 * 4 + 2])  # row-major token order
    with pytest.raises(ShapeError):
        tokens_to_grid(x, (3, 3), prefix_tokens=1)


def test_shapes_captioner_save_and_load_round_trip(tmp_path):
    model = tiny_shapes_captioner(split=2)
    model.save(tmp_path / "m", card="# card")
    loaded = ShapesCaptioner.load(tmp_path / "m", split=2)
    px = model.preprocess(IMAGES)
    with torch.no_grad():
        assert torch.equal(model.full_loss(px, CAPTIONS), loaded.full_loss(px, CAPTIONS))
    assert (tmp_path / "m" / "README.md").read_text() == "# card"
