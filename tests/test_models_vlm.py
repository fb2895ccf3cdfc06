"""Split adapters of image-text-to-text models: head + tail give the unsplit model's tokens and
logits exactly, at every split point, greedy and beam, with the vision path run once."""

import numpy as np
import pytest
import torch

import tiny_vlms
from intelliflow.errors import ConfigError, ShapeError
from intelliflow.models import load_split_model

FAMILIES = ["llava", "llava_next", "paligemma", "idefics3", "smolvlm", "qwen2_vl", "blip2"]
CAPTIONS = ["a red circle", "two blue squares left of a green triangle", "a small yellow star"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("vlms")
    return {family: getattr(tiny_vlms, family)(root / family) for family in FAMILIES}


def images(n=3, seed=0, size=40):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("family", FAMILIES)
def test_head_and_tail_give_the_unsplit_tokens_at_every_split_point(folders, family):
    model = load_split_model(folders[family])
    assert model.point == "projector" and model.split == model.num_split_points - 1
    pixels = model.preprocess(images())
    greedy = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False)
    beam = dict(max_new_tokens=6, num_beams=3, do_sample=False)
    with torch.no_grad():
        expected = {name: model.full_generate_ids(pixels, **g) for name, g in (("greedy", greedy), ("beam", beam))}
        full_logits, full_labels = model.full_logits(pixels, CAPTIONS)
    assert expected["greedy"].shape == (3, 8)
    for point in model.split_names:
        split = load_split_model(folders[family], split=point)
        with torch.no_grad():
            features = split.head(pixels)
            prefix = split.prefix_tokens
            assert features.shape == (3, prefix + split.feature_grid[0] * split.feature_grid[1], split.feature_dim)
            for name, g in (("greedy", greedy), ("beam", beam)):
                ids = split.tail_generate_ids(features, **g)
                assert torch.equal(ids, expected[name]), (point, name)
                assert split.last_vision_calls == 1
            logits, labels = split.tail_logits(features, CAPTIONS)
        assert torch.equal(labels, full_labels) and torch.equal(logits, full_logits), point
        # the features are what the tail uses: other features, other logits
        with torch.no_grad():
            other, _ = split.tail_logits(features + 0.5 * torch.randn_like(features), CAPTIONS)
        assert not torch.allclose(other, logits)


def test_split_points_by_name_and_index_agree(folders):
    by_name = load_split_model(folders["llava"], split="vision.1")
    by_index = load_split_model(folders["llava"], split=1)
    assert by_name.split == by_index.split == 1 and by_name.point == "vision.1"
    blip2 = load_split_model(folders["blip2"], split="qformer")
    assert blip2.split_names[-2:] == ["qformer", "projector"]
    assert not blip2.on_grid and blip2.feature_grid == (1, 8) and blip2.prefix_tokens == 0
    # LLaVA selects the second-last tower layer: its tower points stop there (3 layers: 0, 1, 2)
    assert by_name.split_names == ["vision.0", "vision.1", "vision.2", "projector"]
    assert by_name.on_grid and by_name.prefix_tokens == 1 and by_name.feature_grid == (4, 4)


def test_qwen2_vl_features_lie_row_major_on_the_patch_grid(folders):
    """Qwen2-VL's tower keeps 2 x 2 blocks of patches together; the adapter's features are laid out
    row-major, so a grid codec sees neighbours as neighbours. Checked on the pixels themselves."""
    model = load_split_model(folders["qwen2_vl"], split="vision.0")
    levels = np.random.default_rng(3).permutation(64) * 3 + 20           # one grey level per 4x4 patch
    image = np.kron(levels.reshape(8, 8), np.ones((4, 4))).astype(np.uint8)[..., None].repeat(3, axis=2)
    pixels = model.preprocess([image])[0]                               # [n, C*T*P*P], the tower's order
    row_major = model.to_tokens("vision.0", pixels, 1)[0]              # the adapter's layout
    # a grey patch normalises to values affine in its level: the order of the means is the levels'
    assert torch.equal(torch.argsort(row_major.mean(dim=1)), torch.from_numpy(np.argsort(levels)))
    assert torch.equal(model.from_tokens("vision.0", row_major[None]), pixels)


def test_errors_are_one_line(folders, tmp_path):
    with pytest.raises(ConfigError, match="unknown split point 'vision.9'"):
        load_split_model(folders["llava"], split="vision.9")
    with pytest.raises(ConfigError, match="split must be in 0..3"):
        load_split_model(folders["paligemma"], split=7)
    model = load_split_model(folders["paligemma"])
    with pytest.raises(ShapeError, match=r"features must be \[B, 16, 32\] at split projector"):
        model.tail_generate_ids(torch.zeros(2, 15, 32), max_new_tokens=2)
    # a folder without its processor
    import shutil
    bare = tmp_path / "bare"
    shutil.copytree(folders["llava"], bare)
    for name in ("processor_config.json", "preprocessor_config.json"):
        (bare / name).unlink(missing_ok=True)
    with pytest.raises(ConfigError, match="processor"):
        load_split_model(bare)


def test_prompt_is_configurable_and_changes_the_tokens(folders):
    from intelliflow.models.vlm_adapters import LlavaSplit

    default = load_split_model(folders["llava"])
    other = LlavaSplit.from_pretrained(folders["llava"], prompt="red blue green")
    assert default.prompt_text() == "USER: <image>\nDescribe the image in one short sentence. ASSISTANT:"
    assert other.prompt_text() == "USER: <image>\nred blue green ASSISTANT:"
    a, b = default.prompt_inputs(1)["input_ids"], other.prompt_inputs(1)["input_ids"]
    assert a.shape != b.shape or not torch.equal(a, b)


def test_costs_per_split_point_move_work_to_the_device(folders, capsys):
    """``models info`` on a multimodal LLM: every point counted (BLIP-2's query tokens included),
    named, and each later point moves parameters and FLOPs from the server to the device."""
    from intelliflow.recipes.cli import main

    assert main(["models", "info", str(folders["blip2"]), "--json"]) == 0
    import json
    rows = json.loads(capsys.readouterr().out)["splits"]
    assert [r["point"] for r in rows] == ["vision.0", "vision.1", "vision.2", "qformer", "projector"]
    device = [r["device_params"] for r in rows]
    server = [r["server_flops"] for r in rows]
    assert device == sorted(device) and len(set(device)) == len(device)
    assert server == sorted(server, reverse=True)


def test_llava_with_several_feature_layers_splits_only_before_the_earliest(tmp_path):
    """LLaVA concatenates every selected hidden state: a point after the earliest would leave that
    state to the bypassed layers, so the points stop there, and the tokens stay exact."""
    folder = tiny_vlms.llava(tmp_path / "llava", feature_layer=[-3, -1])     # hidden states 1 and 3
    model = load_split_model(folder)
    assert model.split_names == ["vision.0", "vision.1", "projector"]
    pixels = model.preprocess(images(2))
    with torch.no_grad():
        expected = model.full_generate_ids(pixels, max_new_tokens=6, min_new_tokens=6)
        for point in model.split_names:
            split = load_split_model(folder, split=point)
            assert torch.equal(split.tail_generate_ids(split.head(pixels), max_new_tokens=6, min_new_tokens=6),
                               expected), point


def test_blip2_with_t5_is_refused_in_one_line(tmp_path):
    folder = tiny_vlms.blip2(tmp_path / "blip2-t5", language="t5")
    with pytest.raises(ConfigError, match="Flan-T5"):
        load_split_model(folder)


def test_a_failed_tail_leaves_the_model_as_it_was(folders):
    """An error inside the tail's generate restores every bypassed module (an instance forward the
    model had of its own included): the next head and the unsplit model are unchanged."""
    model = load_split_model(folders["llava"], split="vision.1")
    pixels = model.preprocess(images(2))
    own = model._embed.forward
    model._embed.forward = lambda *args, **kwargs: own(*args, **kwargs)      # e.g. an accelerate hook
    mine = model._embed.__dict__["forward"]
    with torch.no_grad():
        features = model.head(pixels)
        expected = model.full_generate_ids(pixels, max_new_tokens=4)
        with pytest.raises(Exception):
            model.tail_generate_ids(features, max_new_tokens=4, num_beams=0)
        assert model._embed.__dict__["forward"] is mine
        assert all("forward" not in layer.__dict__ for layer in model._layers)
        assert torch.equal(model.head(pixels), features)
        assert torch.equal(model.full_generate_ids(pixels, max_new_tokens=4), expected)
