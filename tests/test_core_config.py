"""Recipes as YAML: read within limits, one-line errors."""

import pytest


def test_recipes_are_read_within_limits(tmp_path):
    """A billion-laughs recipe, deep nesting, non-UTF-8 bytes and a bad --set are one-line errors,
    and an error never echoes a huge value."""
    import time

    from intelliflow.config import read_recipe
    from intelliflow.errors import ConfigError

    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    cases = {"laughs.yaml": (laughs.encode(), "aliases"), "deep.yaml": (b"a: " + b"[" * 5000 + b"]" * 5000, "deeper"),
             "latin1.yaml": ("task: c\u00e9dille".encode("latin-1"), "UTF-8")}
    for name, (data, words) in cases.items():
        (tmp_path / name).write_bytes(data)
        start = time.perf_counter()
        with pytest.raises(ConfigError, match=words) as info:
            read_recipe(tmp_path / name)
        assert time.perf_counter() - start < 2 and len(str(info.value)) < 500 and "\n" not in str(info.value)
    (tmp_path / "ok.yaml").write_text("task: codec\n")
    with pytest.raises(ConfigError, match="--set train.steps"):
        read_recipe(tmp_path / "ok.yaml", ["train.steps=["])
    from intelliflow.training.codec import recipe_from_dict
    with pytest.raises(ConfigError) as info:
        recipe_from_dict({"task": "codec", "seed": "x" * 100_000})
    assert len(str(info.value)) < 400
