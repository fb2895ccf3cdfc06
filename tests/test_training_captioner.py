"""Captioner training runner: recipes validate, runs resume bit for bit, bad losses stop the run."""

import pytest
import torch

from intelliflow.checkpoint import load_checkpoint
from intelliflow.errors import ConfigError
from intelliflow.recipes.cli import main
from intelliflow.config import apply_overrides, read_recipe
from intelliflow.training.captioner import recipe_from_dict, train_captioner

TINY = {"task": "captioner", "checkpoint_every": 2, "log_every": 1,
        "model": {"hidden_size": 32, "encoder_layers": 2, "decoder_layers": 1, "heads": 2, "stem_channels": [8, 16]},
        "train": {"steps": 4, "batch_size": 4, "warmup_steps": 2, "threads": 1},
        "eval": {"every": 4, "images": 4, "batch_size": 4}}


def tiny_recipe(**changes):
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    return recipe_from_dict(apply_overrides(data, [f"{k}={v}" for k, v in changes.items()]))


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    straight = train_captioner(tiny_recipe(), output=tmp_path / "a")
    train_captioner(tiny_recipe(), output=tmp_path / "b", stop_at=2)
    assert load_checkpoint(tmp_path / "b" / "checkpoint")[1]["step"] == 2
    resumed = train_captioner(tiny_recipe(), output=tmp_path / "b", resume=True)
    a, _ = load_checkpoint(straight)
    b, _ = load_checkpoint(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "b" / "eval_log.csv").read_text().splitlines()
    assert log[0].startswith("step,CIDEr-D") and log[1].startswith("4,")


def test_resume_refuses_a_different_recipe(tmp_path):
    train_captioner(tiny_recipe(), output=tmp_path, stop_at=2)
    with pytest.raises(ConfigError, match="different recipe"):
        train_captioner(tiny_recipe(**{"train.lr": 0.1}), output=tmp_path, resume=True)


def test_non_finite_loss_stops_with_a_message_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    import intelliflow.training.captioner as runner

    calls = []
    real_loss = runner.caption_loss

    def exploding_loss(*args, **kwargs):  # the third step's loss is NaN
        calls.append(1)
        loss = real_loss(*args, **kwargs)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(runner, "caption_loss", exploding_loss)
    with pytest.raises(FloatingPointError, match="at step 2.*last good checkpoint"):
        train_captioner(tiny_recipe(**{"train.steps": 6}), output=tmp_path)
    assert load_checkpoint(tmp_path / "checkpoint")[1]["step"] == 2


def test_recipe_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="'train.stpes'"):
        tiny_recipe(**{"train.stpes": 3})
    with pytest.raises(ConfigError, match="'train.lr': expected a number"):
        tiny_recipe(**{"train.lr": "fast"})
    with pytest.raises(ConfigError, match="one of 'canonical', 'references'"):
        tiny_recipe(caption_form="poetry")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: captioner\nmodel: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        read_recipe(bad)


def test_train_command_runs_the_shipped_recipe_with_overrides(tmp_path, capsys):
    overrides = [f"--set={k}" for k in ("model.hidden_size=32", "model.encoder_layers=1", "model.decoder_layers=1",
                                         "model.heads=2", "train.steps=2", "train.batch_size=2", "eval.every=0",
                                         "train.threads=1")]
    code = main(["train", "recipes/shapes/captioner.yaml", "--out", str(tmp_path), *overrides])
    assert code == 0 and (tmp_path / "model" / "model.safetensors").is_file()
    assert "trained:" in capsys.readouterr().out
    assert main(["train", "recipes/shapes/captioner.yaml", "--set", "train.nope=1"]) == 2


def test_llava_architecture_trains_resumes_and_saves_a_folder_any_llava_loader_reads(tmp_path):
    """``model.architecture: llava``: a CLIP tower, LLaVA's projector and a Llama decoder, all
    transformers classes; the final folder is a LLaVA folder that load_split_model splits."""
    from intelliflow.models import load_split_model
    from intelliflow.models.vlm_adapters import LlavaSplit

    llava = {"model.architecture": "llava", "model.image_size": 32, "model.patch_size": 8}
    straight = train_captioner(tiny_recipe(**llava), output=tmp_path / "a")
    train_captioner(tiny_recipe(**llava), output=tmp_path / "b", stop_at=2)
    resumed = train_captioner(tiny_recipe(**llava), output=tmp_path / "b", resume=True)
    a, b = load_split_model(straight), load_split_model(resumed, split="vision.1")
    assert isinstance(a, LlavaSplit) and a.split_names == ["vision.0", "vision.1", "projector"]
    assert a.prompt_text() == "<image>" and a.feature_grid == (4, 4)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    weights, _ = load_checkpoint(tmp_path / "b" / "checkpoint")
    trained = {k[len("model.model."):]: v for k, v in weights.items() if k.startswith("model.model.")}
    assert trained and all(torch.equal(sa[k], v) for k, v in trained.items())
    assert "LLaVA-architecture" in (straight / "README.md").read_text()
