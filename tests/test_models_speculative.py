"""Draft verification (models.speculative): the verified caption is token for token plain greedy
decoding, whatever the draft, batched and single, on every split adapter."""

import random

import pytest
import torch

from intelliflow.data.shapes import make_sample
from intelliflow.errors import ConfigError
from intelliflow.models import load_split_model
from test_models_split import BUILDERS, IMAGES

GEN = {"max_new_tokens": 12}


def greedy_captions(model, features, **generation):
    """Plain greedy ids per image, after the start token, up to and with the end token."""
    eos = model.decoding(**generation).eos
    out = []
    for row in model.tail_generate_ids(features, **generation)[:, 1:].tolist():
        out.append(row[:row.index(eos) + 1] if eos in row else row)
    return out


def drafts_of_every_kind(reference, vocab=30, seed=0):
    """Per image a different kind of draft: right, empty, random, wrong from the middle, too long, cut short."""
    rng = random.Random(seed)
    kinds = [lambda r: list(r), lambda r: [], lambda r: [rng.randrange(4, vocab) for _ in range(9)],
             lambda r: r[:len(r) // 2] + [(t + 1) % vocab for t in r[len(r) // 2:]],
             lambda r: r + [5] * 30, lambda r: r[:3]]
    return [kinds[i % len(kinds)](r) for i, r in enumerate(reference)]


def assert_greedy(model, features, drafts, reference, **generation):
    verified = model.tail_verify(features, drafts, **generation)
    pad = model.decoding(**generation).pad
    for i, ref in enumerate(reference):
        row = verified.ids[i, 1:].tolist()
        assert row[:len(ref)] == ref and all(t == pad for t in row[len(ref):])
        assert verified.new_tokens[i] == len(ref)
    return verified


@pytest.mark.parametrize("name", list(BUILDERS))
def test_verified_captions_are_plain_greedy_batched_and_single(name):
    model = BUILDERS[name](1)
    images = IMAGES * 2
    with torch.no_grad():
        features = model.head(model.preprocess(images))
    reference = greedy_captions(model, features, **GEN)
    drafts = drafts_of_every_kind(reference)
    verified = assert_greedy(model, features, drafts, reference, **GEN)
    assert verified.accepted[0] == len(reference[0]) and verified.passes[0] == 2       # a right draft: 2 passes
    assert verified.accepted[1] == 0 and verified.passes[1] == len(reference[1])     # no draft: plain greedy's
    assert verified.accepted[3] == len(reference[3]) // 2                             # wrong from the middle
    assert verified.passes[3] == 2 + len(reference[3]) - len(reference[3]) // 2 - 1
    assert verified.drafted[4] == len(reference[4])      # cut at its end token or at the length limit
    for i in range(len(images)):                                                      # one image at a time
        assert_greedy(model, features[i:i + 1], drafts[i:i + 1], reference[i:i + 1], **GEN)


def test_shipped_captioner_with_its_own_length_limit():
    model = load_split_model("shapes-captioner")
    images = [make_sample("test", i).image for i in range(8)]
    with torch.no_grad():
        features = model.head(model.preprocess(images))
    reference = greedy_captions(model, features)
    assert all(ref[-1] == model.decoding().eos for ref in reference)                  # real captions end
    verified = assert_greedy(model, features, drafts_of_every_kind(reference, vocab=len(model.tokenizer)),
                             reference)
    assert model.decode_ids(verified.ids) == model.tail_generate(features)


def test_settings_that_are_not_plain_greedy_are_refused():
    model = BUILDERS["vit-gpt2"](1)
    with torch.no_grad():
        features = model.head(model.preprocess(IMAGES))
    with pytest.raises(ConfigError, match="num_beams"):
        model.tail_verify(features, [[]] * 3, num_beams=2)
    model.model.generation_config.repetition_penalty = 1.3
    with pytest.raises(ConfigError, match="repetition_penalty"):
        model.tail_verify(features, [[]] * 3)
    with pytest.raises(ConfigError, match="outside the verifier's vocabulary"):
        BUILDERS["vit-gpt2"](1).tail_verify(features, [[5], [10 ** 6], [-1]])
    with pytest.raises(ConfigError, match="drafts for"):
        BUILDERS["git"](1).tail_verify(features, [[]] * 2)


@pytest.mark.parametrize("name", ["vit-gpt2", "blip", "git"])
def test_the_default_length_limit_is_generates(name):
    model = BUILDERS[name](2)
    with torch.no_grad():
        features = model.head(model.preprocess(IMAGES))
    reference = greedy_captions(model, features)
    assert_greedy(model, features, [r + [5] * 40 for r in reference], reference)
