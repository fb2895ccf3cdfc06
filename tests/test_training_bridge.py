"""task: bridge: train a codec inside any torch model, for that model's own loss, through the channel."""

import csv
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from intelliflow.codec import resolve_codec
from intelliflow.errors import ConfigError
from intelliflow.flow import CodecLink
from intelliflow.models import split_at
from intelliflow.recipes.cli import main
from intelliflow.training.bridge import recipe_from_dict, train_bridge

HERE = Path(__file__).parent


# ---------------------------------------------------------------------- entry points the recipes name
def tiny_net() -> nn.Module:
    """A small CNN: 16x16 pixels -> features [B, 32, 4, 4] after "body.3" -> 6 outputs."""
    body = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU())
    net = nn.Sequential()
    net.add_module("body", body)
    net.add_module("head", nn.Sequential(nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                                         nn.Linear(32 * 4, 6)))
    with torch.no_grad():
        net.head[-1].weight.mul_(20.0)    # answers of a few units, so the features matter
    return net


def clean_outputs(count: int = 64) -> TensorDataset:
    """Images and what the unsplit tiny_net (seed 0, as the recipe builds it) answers: the codec
    learns to keep the model's answers (the task loss: their mean squared error)."""
    torch.manual_seed(0)
    net = tiny_net().eval()
    x = torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return TensorDataset(x, net(x))


def batches_of_pairs():
    """An iterable of batches (not a dataset): four of them, then the entry point is called again."""
    data = clean_outputs(32)
    return [(data.tensors[0][i:i + 8], data.tensors[1][i:i + 8]) for i in range(0, 32, 8)]


def not_pairs():
    return [torch.zeros(4, 3, 16, 16)]


def not_a_model():
    return "a string"


def outputs_as_loss(outputs, targets):
    return outputs


def per_sample_mse(outputs, targets):
    return (outputs - targets).pow(2).mean(1)


def recipe(**changes) -> dict:
    data = {"task": "bridge", "log_every": 5, "checkpoint_every": 0, "checkpoint_minutes": 0,
            "model": {"entry": "test_training_bridge:tiny_net", "split": "body.3"},
            "data": {"entry": "test_training_bridge:clean_outputs"},
            "loss": "torch.nn.functional:mse_loss",
            "codec": {"name": "hyperprior", "hidden_channels": 16, "latent_channels": 8, "hyper_channels": 8},
            "objective": {"lambda_low_rate": 1.0e-6, "lambda_high_rate": 1.0e-7},
            "train": {"steps": 40, "batch_size": 16, "lr": 3.0e-3, "warmup_steps": 1, "threads": 1}}
    for key, value in changes.items():
        node = data
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return data


def log_rows(folder: Path) -> list[dict]:
    return list(csv.DictReader((folder / "train_log.csv").open()))


# ---------------------------------------------------------------------- tests
def test_training_lowers_the_task_loss_and_leaves_the_model_alone(tmp_path):
    final = train_bridge(recipe_from_dict(recipe(**{"log_every": 1, "eval.every": 40, "eval.batches": 2,
                                                     "eval.rate_points": [0, 5]})), output=tmp_path)
    rows = log_rows(tmp_path)
    task = [float(r["task_loss"]) for r in rows]
    first, last = sum(task[:5]) / 5, sum(task[-5:]) / 5
    assert len(rows) == 40 and last < 0.5 * first
    assert all(float(r["bits"]) > 0 for r in rows)
    # the saved codec, back in the same (frozen, unchanged) model through the link: real payloads
    codec = resolve_codec(str(final))
    assert codec.trained_for == {"model": "test_training_bridge:tiny_net"}
    data = clean_outputs(16)
    torch.manual_seed(0)
    net = tiny_net().eval()
    link = CodecLink(codec, q=5.0)
    with split_at(net, "body.3", transform=link), torch.no_grad():
        coded = net(data.tensors[0])
    assert link.last.bits == [8 * len(p) for p in link.last_sent.data]
    assert nn.functional.mse_loss(coded, data.tensors[1]) < 0.5 * first
    evals = list(csv.DictReader((tmp_path / "eval_log.csv").open()))
    assert [r["point"] for r in evals] == ["q=0.0", "q=5.0"]
    assert float(evals[0]["payload_bits"]) < float(evals[1]["payload_bits"])   # real bits rise with q


def test_stop_and_resume_gives_the_same_codec(tmp_path):
    data = recipe(**{"train.steps": 6, "log_every": 1})
    whole = train_bridge(recipe_from_dict(data), output=tmp_path / "whole")
    assert train_bridge(recipe_from_dict(data), output=tmp_path / "parts", stop_at=3).name == "checkpoint"
    parts = train_bridge(recipe_from_dict(data), output=tmp_path / "parts", resume=True)
    a, b = resolve_codec(str(whole)).state_dict(), resolve_codec(str(parts)).state_dict()
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_an_analog_codec_trains_through_the_channel_on_batches_an_iterable_gives(tmp_path):
    data = recipe(**{"train.steps": 6, "log_every": 2, "data.entry": "test_training_bridge:batches_of_pairs",
                     "loss": "test_training_bridge:per_sample_mse",
                     "codec": {"name": "jscc", "hidden_channels": 16, "symbol_channels": 4},
                     "channel": {"name": "awgn", "snr_db": [0, 20], "symbols": [2, 4]},
                     "eval.every": 6, "eval.batches": 1, "eval.snr_db": [5]})
    train_bridge(recipe_from_dict(data), output=tmp_path)
    rows = log_rows(tmp_path)
    assert len(rows) == 3 and all(float(r["bits"]) == 0 and float(r["task_loss"]) > 0 for r in rows)
    (row,) = csv.DictReader((tmp_path / "eval_log.csv").open())
    assert row["point"] == "snr=5.0" and float(row["channel_uses"]) == 4 * 2 * 2   # 4 symbols x a 2x2 latent grid


def test_the_shipped_recipe_runs_from_the_command_line(tmp_path):
    recipe_file = HERE.parent / "recipes" / "shapes" / "bridge_resnet18.yaml"
    args = ["train", str(recipe_file), "--out", str(tmp_path), "--set", "train.steps=2", "--set", "train.batch_size=4",
            "--set", "codec.hidden_channels=16", "--set", "codec.latent_channels=8", "--set", "codec.hyper_channels=8",
            "--set", "log_every=1", "--set", "eval.every=0"]
    assert main(args) == 0
    assert resolve_codec(str(tmp_path / "codec")).config.in_channels == 128     # ResNet-18's layer2 width
    assert len(log_rows(tmp_path)) == 2


@pytest.mark.parametrize("changes, message", [
    ({"model.entry": "tiny_net"}, "'model.entry': 'tiny_net' is not an entry point 'package.module:name'"),
    ({"model.entry": "no_such_module:net"}, "'model.entry': cannot import 'no_such_module'"),
    ({"model.entry": "test_training_bridge:nope"}, "'model.entry': 'test_training_bridge' has no 'nope'"),
    ({"model.entry": "test_training_bridge:not_a_model"}, "gave a str, not a torch nn.Module"),
    ({"loss": "torch.nn.functional:nope"}, "'loss': 'torch.nn.functional' has no 'nope'"),
    ({"model.split": "body.9"}, "no submodule 'body.9'"),
    ({"data.entry": "test_training_bridge:not_pairs"}, "data batches must be \\(inputs, targets\\) pairs"),
    ({"loss": "test_training_bridge:outputs_as_loss"}, "the loss must return a float scalar or one value per sample"),
    ({"codec": {"name": "quantize"}}, "has nothing to train"),
    ({"codec": {"name": "jscc"}}, "an analog codec trains through a channel"),
])
def test_bad_recipes_fail_with_one_clear_line(tmp_path, changes, message):
    with pytest.raises(ConfigError, match=message):
        train_bridge(recipe_from_dict(recipe(**changes)), output=tmp_path)


def test_a_recipe_names_its_model_and_data():
    with pytest.raises(ConfigError, match="'model.entry' is required"):
        recipe_from_dict({"task": "bridge", "model": {"split": "layer2"}, "data": {"entry": "a:b"}})
    with pytest.raises(ConfigError, match="unknown recipe key 'model.name'"):
        recipe_from_dict(recipe(**{"model.name": "x"}))
