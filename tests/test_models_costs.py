"""Cost accounting per split point, the registry, and the models/eval commands."""

import csv
import json

import pytest
import torch

from intelliflow.errors import CheckpointError, RegistryError
from intelliflow.models import load_split_model
from intelliflow.models.costs import costs_for_every_split, split_costs
from intelliflow.recipes.cli import main
from test_models_split import IMAGES, tiny_shapes_captioner


def test_costs_move_from_server_to_device_as_k_grows():
    model = tiny_shapes_captioner()
    rows = costs_for_every_split(model, IMAGES)
    assert [r.split for r in rows] == [0, 1, 2, 3] and model.split == 3  # split restored
    total = sum(p.numel() for p in model.parameters())
    for a, b in zip(rows, rows[1:]):
        assert b.device_flops > a.device_flops and b.server_flops < a.server_flops
        assert b.device_params > a.device_params
    assert all(r.device_params + r.server_params == total for r in rows)
    # one ViT layer's parameters move from server to device per step of k
    layer = sum(p.numel() for p in model.encoder.layers[0].parameters())
    assert rows[1].device_params - rows[0].device_params == layer
    assert rows[0].feature_floats == 64 * 32


def test_device_flops_match_a_hand_count_for_the_stem():
    model = tiny_shapes_captioner(split=0)
    cost = split_costs(model, IMAGES)
    # the stem: stride-2 3x3 convs 3 -> 32 -> 64 -> 32 (hidden size) on a 64x64 image
    convs = [(3, 32, 32), (32, 64, 16), (64, 32, 8)]  # (c_in, c_out, output side)
    expected = sum(2 * ci * co * 9 * side * side for ci, co, side in convs)
    assert cost.device_flops == expected


@pytest.fixture(scope="module")
def saved_captioner(tmp_path_factory):
    folder = tmp_path_factory.mktemp("captioner")
    tiny_shapes_captioner().save(folder)
    return folder


def test_registry_loads_folders_and_rejects_unknown_names(saved_captioner, tmp_path):
    model = load_split_model(saved_captioner, split=1)
    assert model.split == 1 and model.feature_grid == (8, 8)
    with pytest.raises(RegistryError, match="unknown model 'nope'"):
        load_split_model("nope")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(RegistryError, match="no split adapter"):
        load_split_model(tmp_path)


def test_models_info_command_lists_every_split(saved_captioner, capsys):
    assert main(["models", "info", str(saved_captioner), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [r["split"] for r in info["splits"]] == [0, 1, 2, 3] and info["default_split"] == 3


def test_eval_command_writes_results_and_coco_captions(saved_captioner, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(saved_captioner), "--split", "2", "--codec", "identity",
                 "--channel", "none", "--dataset", "shapes:test", "--limit", "6", "--out", str(out),
                 "--no-meteor"]) == 0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 1
    row = rows[0]
    for column in ("model", "split", "codec", "channel", "snr_db", "payload_bits", "channel_uses", "BLEU-4",
                   "CIDEr-D", "ROUGE-L", "METEOR", "semantic_accuracy", "relation_accuracy", "n_images"):
        assert column in row
    assert row["split"] == "2" and row["n_images"] == "6" and float(row["payload_bits"]) == 32 * 64 * 32 + 32  # float32 features + the 4-byte shape header
    captions = json.loads((out / "captions.json").read_text())
    assert sorted(c["image_id"] for c in captions) == list(range(6))
    assert all(isinstance(c["caption"], str) for c in captions)
    assert main(["eval", "--model", str(saved_captioner), "--codec", "zip", "--out", str(out)]) == 2
    assert main(["eval", "--model", str(saved_captioner), "--codec", "quantize-4", "--dataset", "shapes:test",
                 "--limit", "4", "--out", str(out), "--no-meteor"]) == 0
    row = next(csv.DictReader((out / "results.csv").open()))
    assert row["codec"] == "quantize-4" and 0 < float(row["payload_bits"]) < 64 * 32 * 4 + 200
