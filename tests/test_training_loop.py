"""The shared training loop on a tiny model: stop + resume equals an uninterrupted run, a NaN loss
stops the run, train_log.csv gets its rows, validation runs at the right steps, checkpoints hold
what ``keep`` says and refuse another recipe."""

import contextlib
import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from intelliflow.checkpoint import load_checkpoint
from intelliflow.errors import ConfigError, IntelliflowError, NonFiniteLossError
from intelliflow.training import LoopConfig, Step, TrainState, lr_schedule, train_loop

SCHEDULE = SimpleNamespace(steps=8, warmup_steps=2, min_lr_ratio=0.1)


def batches(start):
    """Endless batches x [8, 4], y [8, 1]; batch i is the same whatever ``start`` is."""
    i = start
    while True:
        g = torch.Generator().manual_seed(i)
        x = torch.randn(8, 4, generator=g)
        yield {"x": x, "y": x.sum(1, keepdim=True)}
        i += 1


def run(out, steps=8, stop_at=None, resume=False, nan_at=None, recipe=None, **config):
    """One run with fresh objects; returns what it did. Every random source the loop must restore is
    used: torch's global RNG (noise in the step and in validation), a generator of the run
    (``draws``) and a tensor the step keeps (``scale``, from the first batch it sees)."""
    torch.manual_seed(0)
    model, frozen = nn.Linear(4, 1), nn.Linear(4, 4)
    frozen.requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    draws = torch.Generator().manual_seed(1)
    state = TrainState({"model": model, "frozen": frozen}, optimizer, lr_schedule(optimizer, SCHEDULE),
                       clip=list(model.parameters()), keep=lambda k: not k.startswith("frozen."),
                       generators={"draws": draws})
    seen = SimpleNamespace(steps=[], losses=[], starts=[], validated=[])

    def data(start):
        seen.starts.append(start)
        return batches(start)

    def step_fn(batch, step):
        seen.steps.append(step)
        if "scale" not in state.extra:
            state.extra["scale"] = batch["y"].abs().mean()
        noise = 0.1 * torch.randn(8, 4) * torch.rand(1, generator=draws)
        err = (model(frozen(batch["x"]) + noise) - batch["y"]).pow(2).squeeze(1)  # [8]
        loss = err.mean() / state.extra["scale"]
        if step == nan_at:
            loss = loss * float("nan")
        seen.losses.append(loss.item())
        return Step(loss, {"mse": err, "bits": 123.456})

    def validate(step):
        seen.validated.append(step)
        return [{"point": "a", "score": torch.rand(1).item()}, {"point": "b", "score": 1.0}]  # draws from the RNG

    cfg = {"steps": steps, "batch_size": 8, "log_every": 1, "checkpoint_every": 2, "eval_every": 3,
           "columns": {"mse": ".5f", "bits": ".2f"}, **config}
    result = train_loop(step_fn, data, state, LoopConfig(**cfg), out, recipe or {"lr": 0.1},
                        validate=validate, resume=resume, stop_at=stop_at)
    return SimpleNamespace(model=model, result=result, state=state, **vars(seen))


def rows(path, drop_rate=True):
    lines = list(csv.reader(path.open()))
    return [line[:-1] for line in lines] if drop_rate else lines


@pytest.mark.parametrize("stop_at", [3, 4, 5])  # a validation step, a checkpoint step, neither
def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path, stop_at):
    straight = run(tmp_path / "a")
    first = run(tmp_path / "b", stop_at=stop_at)
    assert first.result.stopped and first.steps == list(range(stop_at))
    assert load_checkpoint(tmp_path / "b" / "checkpoint")[1]["step"] == stop_at
    resumed = run(tmp_path / "b", resume=True)
    assert resumed.starts == [stop_at] and resumed.steps == list(range(stop_at, 8))  # really resumed
    assert not resumed.result.stopped and resumed.result.step == 8
    assert torch.equal(resumed.state.extra["scale"], straight.state.extra["scale"])
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.losses + resumed.losses == straight.losses
    assert rows(tmp_path / "a" / "train_log.csv") == rows(tmp_path / "b" / "train_log.csv")
    assert (tmp_path / "a" / "eval_log.csv").read_text() == (tmp_path / "b" / "eval_log.csv").read_text()


def test_a_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"at step 3; the last good checkpoint is in .*checkpoint") as err:
        run(tmp_path, nan_at=3)
    assert isinstance(err.value, FloatingPointError) and isinstance(err.value, IntelliflowError)
    tensors, meta = load_checkpoint(tmp_path / "checkpoint")
    assert meta["step"] == 2
    assert [r[0] for r in rows(tmp_path / "train_log.csv")] == ["step", "1", "2", "3"]  # the NaN step not logged


def test_train_log_has_a_row_every_log_every_steps(tmp_path):
    done = run(tmp_path, steps=5, log_every=2, eval_every=0)
    log = rows(tmp_path / "train_log.csv", drop_rate=False)
    assert log[0] == ["step", "loss", "mse", "bits", "lr", "images_per_s"]
    assert [r[0] for r in log[1:]] == ["2", "4"]
    assert [float(r[1]) for r in log[1:]] == pytest.approx([done.losses[1], done.losses[3]], abs=1e-5)
    assert log[1][3] == "123.46" and float(log[1][5]) > 0
    expected_lr = [0.1 * min(1.0, (s + 1) / 2) for s in (2, 4)]  # lr after 2 and 4 steps, warm-up then cosine
    assert float(log[1][4]) == pytest.approx(expected_lr[0]) and float(log[2][4]) < expected_lr[1]


def test_validation_runs_every_eval_every_steps_and_at_the_last(tmp_path):
    done = run(tmp_path / "a", steps=7, eval_every=3)
    assert done.validated == [3, 6, 7]
    log = rows(tmp_path / "a" / "eval_log.csv", drop_rate=False)
    assert log[0] == ["step", "point", "score"]
    assert [r[:2] for r in log[1:]] == [["3", "a"], ["3", "b"], ["6", "a"], ["6", "b"], ["7", "a"], ["7", "b"]]
    assert run(tmp_path / "b", steps=4, eval_every=0).validated == []
    assert not (tmp_path / "b" / "eval_log.csv").exists()


def test_checkpoint_keeps_what_keep_says_and_refuses_another_recipe(tmp_path):
    run(tmp_path, stop_at=2)
    tensors, meta = load_checkpoint(tmp_path / "checkpoint")
    assert {"model.weight", "model.bias", "rng.torch", "rng.draws", "state.scale"} <= tensors.keys()
    assert not any(k.startswith("frozen.") for k in tensors) and meta["recipe"] == {"lr": 0.1}
    assert (tmp_path / "recipe.json").is_file()
    with pytest.raises(ConfigError, match="different recipe"):
        run(tmp_path, resume=True, recipe={"lr": 0.2})


def test_a_killed_run_resumes_with_whole_logs_and_a_trusted_checkpoint(tmp_path):
    """What a run logged after its last checkpoint is dropped on resume (the header stays, no step
    twice); weights renamed in beside an older config (a crash between the two renames) are refused."""
    import os

    from safetensors.torch import save_file

    from intelliflow.errors import CheckpointError

    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop_at=4)
    with (tmp_path / "b" / "train_log.csv").open("a") as f:  # a killed run: rows past its checkpoint
        f.write("5,0.1,0.1,1.00,0.1,1.0\n6,0.1,0.1,1.00,0.1,1.0\n")
    resumed = run(tmp_path / "b", resume=True)
    assert rows(tmp_path / "b" / "train_log.csv") == rows(tmp_path / "a" / "train_log.csv")
    assert rows(tmp_path / "b" / "eval_log.csv", False) == rows(tmp_path / "a" / "eval_log.csv", False)
    assert torch.equal(resumed.model.weight, straight.model.weight)
    ckpt = tmp_path / "b" / "checkpoint"
    tensors, _ = load_checkpoint(ckpt)
    save_file({k: v + 1 for k, v in tensors.items()}, str(ckpt / "new.tmp"))
    os.replace(ckpt / "new.tmp", ckpt / "model.safetensors")   # weights changed by hand: nothing matches
    with pytest.raises(CheckpointError, match="digest"):
        load_checkpoint(ckpt)


class Killed(BaseException):
    """Ends a run the way SIGKILL does: no ``except Exception`` and no clean-up catches it."""


@contextlib.contextmanager
def killed_in_a_save(monkeypatch, after: int):
    """Raise :class:`Killed` right after the ``after``-th file operation of checkpoint saves (writing
    the weights, renaming, linking, removing the old copy), counted from the first save."""
    import os

    import intelliflow.checkpoint as checkpoint

    done = []

    def counted(fn):
        def wrapper(*args, **kwargs):
            out = fn(*args, **kwargs)
            done.append(fn)
            if len(done) == after:
                raise Killed
            return out
        return wrapper

    class Os:  # checkpoint's view of os: its renames and links are counted
        replace, link = staticmethod(counted(os.replace)), staticmethod(counted(os.link))

        def __getattr__(self, name):
            return getattr(os, name)

    unlink = checkpoint.Path.unlink
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "save_file", counted(checkpoint.save_file))
        patch.setattr(checkpoint, "os", Os())
        patch.setattr(checkpoint.Path, "unlink", lambda self, missing_ok=False: (
            counted(unlink) if self.name == checkpoint.PREVIOUS else unlink)(self, missing_ok=missing_ok))
        yield


@pytest.mark.parametrize("after", range(1, 7))
def test_a_run_killed_at_any_point_of_a_save_resumes_to_the_same_weights(tmp_path, monkeypatch, after):
    """The save at step 4 is cut after each of its six file operations in turn (new weights written,
    a stale old copy removed, the old weights linked aside, new weights renamed in, the manifest
    renamed in, the old copy removed); the checkpoint then reads back as step 2's or step 4's, and
    the resumed run ends with the uninterrupted run's weights and log."""
    straight = run(tmp_path / "a")
    with pytest.raises(Killed):
        with killed_in_a_save(monkeypatch, 4 + after):  # step 2's save into a new folder takes 4 operations
            run(tmp_path / "b")
    step = load_checkpoint(tmp_path / "b" / "checkpoint")[1]["step"]
    assert step == (4 if after >= 5 else 2)
    resumed = run(tmp_path / "b", resume=True)
    assert resumed.starts == [step] and torch.equal(resumed.model.weight, straight.model.weight)
    assert rows(tmp_path / "b" / "train_log.csv") == rows(tmp_path / "a" / "train_log.csv")


def test_a_run_killed_by_sigkill_resumes_to_the_same_weights(tmp_path):
    """A real SIGKILL at a random moment of a real training run (a subprocess checkpointing every
    step), then a resume: the final weights equal an uninterrupted run's."""
    import random
    import signal
    import subprocess
    import sys
    import textwrap
    import time

    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_training_loop as t
        from intelliflow.checkpoint import save_checkpoint
        import intelliflow.checkpoint as checkpoint
        slow = checkpoint.save_file
        checkpoint.save_file = lambda *a, **k: (time.sleep(0.01), slow(*a, **k))[1]  # a window to be killed in
        t.run(t.Path(sys.argv[1]), steps=8, checkpoint_every=1, resume=len(sys.argv) > 2)
    """))
    straight = run(tmp_path / "a", checkpoint_every=1)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "b")])
    deadline = time.monotonic() + 60
    while not (tmp_path / "b" / "checkpoint" / "config.json").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(random.Random().uniform(0, 0.05))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run([sys.executable, str(script), str(tmp_path / "b"), "resume"], check=True)
    b = load_checkpoint(tmp_path / "b" / "checkpoint")[0]
    assert torch.equal(b["model.weight"], straight.model.weight)
    assert rows(tmp_path / "b" / "train_log.csv") == rows(tmp_path / "a" / "train_log.csv")


def test_a_run_checkpoints_by_wall_time_too_so_a_failure_keeps_its_work(tmp_path):
    with pytest.raises(NonFiniteLossError):
        run(tmp_path / "a", checkpoint_every=0, checkpoint_minutes=1e-9, eval_every=0, nan_at=3)
    assert load_checkpoint(tmp_path / "a" / "checkpoint")[1]["step"] == 3   # every step was overdue
    with pytest.raises(NonFiniteLossError):
        run(tmp_path / "b", checkpoint_every=0, checkpoint_minutes=0, eval_every=0, nan_at=3)
    assert not (tmp_path / "b" / "checkpoint").exists()                      # by steps only: nothing yet


def test_a_checkpoint_that_cannot_be_written_is_a_one_line_error(tmp_path, monkeypatch):
    import intelliflow.checkpoint as checkpoint
    from intelliflow.errors import CheckpointError

    checkpoint.save_checkpoint(tmp_path / "c", {"w": torch.ones(2)}, {"step": 1})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(CheckpointError, match="No space left"):
        checkpoint.save_checkpoint(tmp_path / "c", {"w": torch.zeros(2)}, {"step": 2})
    tensors, config = checkpoint.load_checkpoint(tmp_path / "c")           # the previous one is intact
    assert config["step"] == 1 and torch.equal(tensors["w"], torch.ones(2))
    assert not list((tmp_path / "c").glob("*.tmp"))
