"""A model folder is input: a malformed or oversized config.json, a config that does not belong to
its weights and a missing tokenizer are one-line errors before anything large is allocated."""

import json
import shutil
import time

import pytest

from intelliflow.errors import IntelliflowError
from intelliflow.models import load_split_model
from test_models_split import tiny_shapes_captioner
from tiny_models import tiny_blip


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    tiny_shapes_captioner().save(root / "captioner")
    model, tok = tiny_blip()
    model.save_pretrained(root / "blip")
    tok.save_pretrained(root / "blip")
    return root


def variant(folders, tmp_path, source, change=None, drop=(), text=None):
    """A copy of ``source`` with its config changed (``change(config)``), files dropped, or config.json
    replaced by ``text``."""
    folder = tmp_path / f"{source}-variant"
    shutil.copytree(folders / source, folder)
    for f in list(folder.iterdir()):
        if any(part in f.name for part in drop):
            f.unlink()
    if change is not None:
        config = json.loads((folder / "config.json").read_text())
        change(config)
        (folder / "config.json").write_text(json.dumps(config))
    if text is not None:
        (folder / "config.json").write_text(text)
    return folder


def grow_captioner(config):
    config["config"]["encoder"]["hidden_size"] = 40_000
    config["config"]["decoder"]["n_embd"] = 40_000


def grow_blip(config):
    config["text_config"]["vocab_size"] = 20_000_000


@pytest.mark.parametrize("source,change,drop,text,expected", [
    ("captioner", grow_captioner, (), None, r"describes a model of \d+\.\d GB, but its weight files hold"),
    ("blip", grow_blip, (), None, r"describes a model of \d+\.\d GB, but its weight files hold"),
    ("captioner", None, ("token",), None, "has no tokenizer files"),
    ("blip", None, ("token", "vocab", "special"), None, "has no tokenizer files"),
    ("blip", None, (), "{not json", "is not valid JSON"),
    ("blip", None, (), "[1, 2]", "must hold a JSON object, got a list"),
    ("blip", None, (), "[" * 20000 + "]" * 20000, "nested too deeply"),
    ("blip", None, (), "{" + " " * (5 << 20) + "}", "over the limit"),
    ("blip", lambda c: c["text_config"].update(hidden_size=-3), (), None, "can be built|is not a BlipConfig"),
    ("blip", None, ("model.safetensors",), None, "the weights do not load"),
])
def test_a_bad_model_folder_is_one_line_before_any_allocation(folders, tmp_path, source, change, drop, text,
                                                               expected):
    import resource

    folder = variant(folders, tmp_path, source, change, drop, text)
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter()
    with pytest.raises(IntelliflowError, match=expected) as info:
        load_split_model(folder)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400 and str(folder) in str(info.value)
    assert time.perf_counter() - start < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000   # kB: under 100 MB more at peak


def test_good_folders_still_load(folders):
    assert load_split_model(folders / "captioner").caption
    assert load_split_model(folders / "blip", split=1).split == 1
