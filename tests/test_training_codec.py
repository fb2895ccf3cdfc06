"""Codec training through the channel: recipes validate, runs resume bit for bit, codecs come out
usable, a bad loss stops the run, and two DDP processes end with identical weights."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from intelliflow.checkpoint import load_checkpoint
from intelliflow.codec.persistence import load_codec
from intelliflow.errors import ConfigError
from intelliflow.config import apply_overrides
from intelliflow.training.codec import Objective, recipe_from_dict, train_codec
from intelliflow.training.losses import rate_lambda
from test_models_split import tiny_shapes_captioner


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny") / "model"
    tiny_shapes_captioner().save(folder)
    return folder


def recipe(model_dir, codec="hyperprior", **changes):
    data = {"task": "codec", "checkpoint_every": 2, "log_every": 1, "model": {"name": str(model_dir)},
            "train": {"steps": 4, "batch_size": 4, "warmup_steps": 1, "threads": 1},
            "eval": {"every": 4, "images": 4, "batch_size": 4, "rate_points": [0, 2], "snr_db": [0, 10]}}
    if codec == "hyperprior":
        data["codec"] = {"name": "hyperprior", "hidden_channels": 16, "latent_channels": 8, "hyper_channels": 8,
                         "rate_points": 3}
    elif codec == "rvq":
        data["codec"] = {"name": "rvq", "hidden_channels": 16, "latent_channels": 8, "codebooks": 3,
                         "codebook_size": 16}
    elif codec == "tofc":
        data["codec"] = {"name": "tofc", "hidden_channels": 16, "latent_channels": 8, "hyper_channels": 8,
                         "rate_points": 3, "keep_ratio": 0.25}
    else:
        data["codec"] = {"name": "jscc", "hidden_channels": 16, "symbol_channels": 4}
        data["channel"] = {"name": "awgn", "snr_db": [0, 20], "symbols": [2, 4]}
    return recipe_from_dict(apply_overrides(data, [f"{k}={v}" for k, v in changes.items()]))


@pytest.mark.parametrize("codec", ["hyperprior", "jscc", "rvq", "tofc"])
def test_resumed_run_equals_an_uninterrupted_one_and_the_codec_loads(model_dir, tmp_path, codec):
    straight = train_codec(recipe(model_dir, codec), output=tmp_path / "a")
    train_codec(recipe(model_dir, codec), output=tmp_path / "b", stop_at=2)
    assert load_checkpoint(tmp_path / "b" / "checkpoint")[1]["step"] == 2
    resumed = train_codec(recipe(model_dir, codec), output=tmp_path / "b", resume=True)
    a, b = load_codec(straight).state_dict(), load_codec(resumed).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "a" / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,loss,caption_nats") and len(log) == 5
    evals = (tmp_path / "a" / "eval_log.csv").read_text().splitlines()
    assert len(evals) == 3 and evals[1].startswith("4,")   # two points at step 4
    _, meta = load_checkpoint(straight)
    assert meta["model"] == str(model_dir) and meta["steps"] == 4


@pytest.mark.parametrize("codec,changes", [("hyperprior", {"objective.kind": "mse"}), ("jscc", {})])
def test_resume_across_a_validation_equals_an_uninterrupted_run(model_dir, tmp_path, codec, changes):
    # validation at step 2 builds the entropy tables (hyperprior) or draws channel noise (jscc) before
    # the checkpoint at the stop; the mse objective's feature scale comes from the first batch
    changes = {"eval.every": 2, "train.steps": 3, **changes}
    straight = train_codec(recipe(model_dir, codec, **changes), output=tmp_path / "a")
    train_codec(recipe(model_dir, codec, **changes), output=tmp_path / "b", stop_at=2)
    resumed = train_codec(recipe(model_dir, codec, **changes), output=tmp_path / "b", resume=True)
    a, b = load_codec(straight).state_dict(), load_codec(resumed).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    logs = [(tmp_path / run / "train_log.csv").read_text().splitlines() for run in "ab"]
    assert [line.rsplit(",", 1)[0] for line in logs[0]] == [line.rsplit(",", 1)[0] for line in logs[1]]


@pytest.mark.parametrize("codec,changes", [("hyperprior", {}), ("hyperprior", {"objective.kind": "mse"}),
                                           ("jscc", {})])
def test_a_run_killed_inside_a_save_resumes_to_the_same_weights(model_dir, tmp_path, monkeypatch, codec, changes):
    """Killed in step 4's save after its new weights were renamed in but before its manifest (the
    worst moment): the checkpoint reads back as step 2's and the resumed run ends where an
    uninterrupted one does, for the digital, mse and JSCC objectives."""
    from test_training_loop import Killed, killed_in_a_save

    straight = train_codec(recipe(model_dir, codec, **changes), output=tmp_path / "a")
    with pytest.raises(Killed), killed_in_a_save(monkeypatch, 4 + 4):
        train_codec(recipe(model_dir, codec, **changes), output=tmp_path / "b")
    assert load_checkpoint(tmp_path / "b" / "checkpoint")[1]["step"] == 2
    resumed = train_codec(recipe(model_dir, codec, **changes), output=tmp_path / "b", resume=True)
    a, b = load_codec(straight).state_dict(), load_codec(resumed).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_moves_the_codec_and_the_frozen_model_stays(model_dir, tmp_path):
    from intelliflow.models import load_split_model

    out = train_codec(recipe(model_dir, **{"train.steps": 3, "eval.every": 0}), output=tmp_path)
    codec = load_codec(out)
    torch.manual_seed(0)
    from intelliflow.codec import build_codec

    fresh = build_codec({"name": "hyperprior", "in_channels": 32, "hidden_channels": 16, "latent_channels": 8,
                         "hyper_channels": 8, "rate_points": 3})
    assert not torch.equal(codec.g_a[0].weight, fresh.g_a[0].weight)
    before = load_split_model(str(model_dir)).state_dict()
    after = load_split_model(str(model_dir)).state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_recipe_errors_name_the_key(model_dir):
    with pytest.raises(ConfigError, match="objective.lambda_low"):
        recipe(model_dir, **{"objective.lambda_low": 1})
    with pytest.raises(ConfigError, match="snr_db"):
        recipe(model_dir, "jscc", **{"channel.snr_db": "[10, 0]"})
    with pytest.raises(ConfigError, match="through a channel"):
        train_codec(recipe(model_dir, "jscc", **{"channel.name": "none"}))


def test_rate_lambda_goes_log_linearly_between_the_ends():
    o = Objective(lambda_low_rate=0.1, lambda_high_rate=0.001)
    lam = rate_lambda(torch.tensor([0.0, 1.0, 2.0]), 2.0, o)
    assert torch.allclose(lam, torch.tensor([0.1, 0.01, 0.001]))


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(model_dir, tmp_path, monkeypatch):
    import intelliflow.training.losses as runner

    real = runner.per_caption_nats
    calls = []

    def exploding(*args, **kwargs):
        calls.append(1)
        out = real(*args, **kwargs)
        return out * float("nan") if len(calls) == 3 else out

    monkeypatch.setattr(runner, "per_caption_nats", exploding)
    with pytest.raises(FloatingPointError, match="step 2"):
        train_codec(recipe(model_dir, **{"eval.every": 0}), output=tmp_path)
    assert load_checkpoint(tmp_path / "checkpoint")[1]["step"] == 2


def test_two_ddp_processes_on_cpu_end_with_identical_weights(model_dir, tmp_path):
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(f"""task: codec
model: {{name: {model_dir}}}
codec: {{name: hyperprior, hidden_channels: 16, latent_channels: 8, hyper_channels: 8, rate_points: 3}}
train: {{steps: 3, batch_size: 4, warmup_steps: 1, threads: 1}}
eval: {{every: 0}}
""")
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29517",
                          "-m", "intelliflow.recipes.cli", "train", str(recipe_file), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    digests = [(tmp_path / "out" / f"weights_rank{r}.sha256").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    assert "2 process(es)" in run.stderr
    single = train_codec(recipe_from_dict({"task": "codec", "model": {"name": str(model_dir)},
                                           "codec": {"name": "hyperprior", "hidden_channels": 16,
                                                     "latent_channels": 8, "hyper_channels": 8, "rate_points": 3},
                                           "train": {"steps": 3, "batch_size": 4, "warmup_steps": 1, "threads": 1},
                                           "eval": {"every": 0}}), output=tmp_path / "single")
    assert (tmp_path / "single" / "weights_rank0.sha256").read_text() != digests[0]  # the ranks saw other images
    assert load_codec(single) is not None


def test_coco_blip_recipe_trains_on_a_tiny_fixture_model_and_dataset(tmp_path):
    from PIL import Image
    import json

    from intelliflow.recipes.cli import main
    from tiny_models import tiny_blip

    model, tokenizer = tiny_blip()
    model.save_pretrained(tmp_path / "blip")
    tokenizer.save_pretrained(tmp_path / "blip")
    images = tmp_path / "coco" / "images"
    images.mkdir(parents=True)
    annotations = {"images": [], "annotations": []}
    for i in range(4):
        Image.new("RGB", (40, 30), (60 * i, 20, 200 - 40 * i)).save(images / f"{i}.jpg")
        annotations["images"].append({"id": i, "file_name": f"{i}.jpg"})
        annotations["annotations"] += [{"id": 10 * i + j, "image_id": i, "caption": f"a red circle {j}"}
                                       for j in range(2)]
    (tmp_path / "coco" / "annotations.json").write_text(json.dumps(annotations))
    recipe = Path(__file__).parent.parent / "recipes" / "coco" / "blip_hyperprior.yaml"
    args = ["train", str(recipe), "--set", f"model.name={tmp_path / 'blip'}", "--set", "model.split=1",
            "--set", f"data=coco:{tmp_path / 'coco'}", "--set", "train.steps=2", "--set", "train.batch_size=2",
            "--set", "codec.hidden_channels=16", "--set", "codec.latent_channels=8",
            "--set", "codec.hyper_channels=8", "--set", "log_every=1"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    codec = load_codec(tmp_path / "run" / "codec")
    # two DataLoader workers decode the images: the same batches, the same codec
    assert main([*args, "--set", "train.workers=2", "--out", str(tmp_path / "workers")]) == 0
    helped = load_codec(tmp_path / "workers" / "codec").state_dict()
    assert all(torch.equal(v, helped[k]) for k, v in codec.state_dict().items())
    assert codec.config.in_channels == 32                       # the tiny BLIP's feature width
    log = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert len(log) == 3
    nats, kl, bits = (float(log[-1].split(",")[k]) for k in (2, 3, 5))
    assert nats > 0 and kl >= 0 and bits > 0                   # caption, distillation and rate terms all run


def test_init_from_starts_at_a_trained_codec_of_the_same_shape(model_dir, tmp_path):
    source = train_codec(recipe(model_dir, **{"train.steps": 2, "eval.every": 0}), output=tmp_path / "src")
    tuned = train_codec(recipe(model_dir, **{"train.steps": 1, "train.lr": 1e-12, "train.aux_lr": 1e-12,
                                             "eval.every": 0, "init_from": str(source)}), output=tmp_path / "ft")
    a, b = load_codec(source).state_dict(), load_codec(tuned).state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a if k.startswith(("g_a", "g_s")))
    with pytest.raises(ConfigError, match="init_from"):
        train_codec(recipe(model_dir, **{"codec.latent_channels": 4, "init_from": str(source)}), output=tmp_path / "x")


@pytest.mark.parametrize("codec", ["hyperprior", "jscc"])
def test_bfloat16_autocast_trains_with_the_entropy_model_in_float32(model_dir, tmp_path, codec, monkeypatch):
    """``train.precision: bfloat16`` runs the model and the codec's transforms under autocast (here
    on the CPU, as on a GPU): the likelihoods and the symbols stay float32, the loss is finite, and
    the codec comes out usable."""
    from intelliflow.codec.digital import HyperpriorFeatureCodec

    seen = []
    forward = HyperpriorFeatureCodec._entropy_forward

    def spy(self, y):
        out = forward(self, y)
        seen.append((y.dtype, {k: v.dtype for k, v in out[1].items()}))
        return out

    monkeypatch.setattr(HyperpriorFeatureCodec, "_entropy_forward", spy)
    out = train_codec(recipe(model_dir, codec, **{"train.precision": "bfloat16", "train.steps": 2, "eval.every": 0}),
                      output=tmp_path)
    log = (tmp_path / "train_log.csv").read_text().splitlines()
    assert len(log) == 3 and all(torch.isfinite(torch.tensor(float(line.split(",")[1]))) for line in log[1:])
    if codec == "hyperprior":
        assert seen and all(d == torch.float32 and set(v.values()) == {torch.float32} for d, v in seen)
    assert load_codec(out) is not None
    with pytest.raises(ConfigError, match="precision"):
        train_codec(recipe(model_dir, codec, **{"train.precision": "float16"}), output=tmp_path / "bad")


def test_a_token_codec_trains_on_a_multimodal_llm_s_query_tokens(tmp_path):
    """rvq on BLIP-2's Q-Former outputs (8 query tokens on no grid, 1 x 8): trained through
    the captioning loss with intelliflow's one codec loop; its payloads decode to what it coded."""
    import tiny_vlms
    from intelliflow.models import load_split_model

    folder = tiny_vlms.blip2(tmp_path / "blip2")
    data = recipe(folder, "rvq", **{"model.split": 3, "eval.every": 0})
    out = train_codec(data, output=tmp_path / "run")
    codec = load_codec(out)
    model = load_split_model(folder, split="qformer")
    features = model.head(model.preprocess([torch.zeros(32, 32, 3, dtype=torch.uint8).numpy()] * 2))
    grid = features.transpose(1, 2).reshape(2, model.feature_dim, 1, 8)
    payloads = codec.encode(grid, q=2)
    assert torch.equal(codec.decode(payloads, expected=(model.feature_dim, 1, 8)), codec.eval()(grid, q=2)["f_hat"])
    assert load_checkpoint(out)[1]["split"] == 3
