"""Recipes: YAML files validated into dataclasses, with ``--set a.b=c`` overrides.

An unknown key fails with its dotted name and the allowed keys; a value of the wrong type fails
with the key, the expected type and the value. Types understood: ``int``, ``float`` (ints are
accepted), ``bool``, ``str``, ``Literal[...]``, ``list[...]``/``tuple[...]`` of those, ``X | None``
and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from intelliflow.errors import ConfigError


def _type_name(tp) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp, key: str):
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"recipe key '{key}': {_short(value)} fits none of "
                          f"{[_type_name(o) for o in options]}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"recipe key '{key}': expected {_type_name(tp)}, got {_short(value)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"recipe key '{key}': expected a list, got {_short(value)}")
        (item,) = get_args(tp)[:1] or (Any,)
        items = [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"recipe key '{key}': expected true or false, got {_short(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"recipe key '{key}': expected an integer, got {_short(value)}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"recipe key '{key}': expected a number, got {_short(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"recipe key '{key}': expected a string, got {_short(value)}")
        return value
    if tp is dict or get_origin(tp) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"recipe key '{key}': expected a mapping, got {_short(value)}")
        return dict(value)
    raise ConfigError(f"recipe key '{key}': unsupported type {tp}")


def from_dict(cls, data: Any, prefix: str = ""):
    """Build dataclass ``cls`` from a mapping, checking every key and type."""
    where = prefix or "top level"
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe section '{where}' must be a mapping, got {_short(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        names = ", ".join(f"'{prefix + '.' if prefix else ''}{k}'" for k in unknown)
        raise ConfigError(f"unknown recipe key {names}; allowed in {where}: {sorted(fields)}")
    values = {name: _convert(value, hints[name], f"{prefix}.{name}" if prefix else name)
              for name, value in data.items()}
    try:
        return cls(**values)
    except TypeError as exc:  # a required key is missing
        raise ConfigError(f"recipe section '{where}': {exc}") from exc


def to_dict(obj) -> dict:
    """A recipe dataclass back to plain data (for writing next to a run)."""
    return dataclasses.asdict(obj)


#: what a recipe may be: its file size, its nesting depth, and how much of a bad value an error echoes
MAX_RECIPE_BYTES = 1 << 20
MAX_DEPTH = 32
ECHO_CHARS = 120


def safe_yaml(text: str, where: str):
    """YAML to plain data, with limits a recipe never needs to exceed: no aliases (a few hundred
    bytes of nested aliases expand to gigabytes), at most :data:`MAX_DEPTH` levels of nesting;
    any failure is a one-line :class:`ConfigError` naming ``where``."""
    try:
        depth = 0
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.AliasToken):
                raise ConfigError(f"{where}: YAML aliases (*name) are not allowed in recipes")
            if isinstance(token, (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken,
                                  yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels")
            elif isinstance(token, (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)):
                depth -= 1
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{where} is not valid YAML: {first[:ECHO_CHARS]}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply") from None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + f"... ({len(text)} characters)"


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=c`` overrides to nested ``data`` (values parsed as YAML: ``3``, ``1e-3``, ``[1, 2]``)."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set takes key=value, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
        node[parts[-1]] = safe_yaml(raw, f"--set {key}")
    return data


def entry_point(spec: Any, key: str):
    """The Python object a recipe names as ``"package.module:name"`` (``name`` may be dotted:
    ``"module:Class.method"``): the module is imported (a module in the current folder too, as
    ``python -m`` finds it) and the name looked up. Recipes are code, as a script is: the module
    runs when it is imported. A malformed name, a module that does not import and a missing name
    each raise a :class:`ConfigError` naming ``key``.

    >>> entry_point("torch.nn.functional:cross_entropy", "loss").__name__
    'cross_entropy'
    >>> entry_point("torch.nn.functional.cross_entropy", "loss")
    Traceback (most recent call last):
    ...
    intelliflow.errors.ConfigError: recipe key 'loss': 'torch.nn.functional.cross_entropy' is not an entry point 'package.module:name'
    """
    import importlib
    import sys

    if not isinstance(spec, str) or spec.count(":") != 1 or not all(spec.split(":")):
        raise ConfigError(f"recipe key '{key}': {_short(spec)} is not an entry point 'package.module:name'")
    module_name, name = spec.split(":")
    here = str(Path.cwd())
    if here not in sys.path and "" not in sys.path:
        sys.path.append(here)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:   # not found, or the module failed while it ran
        raise ConfigError(f"recipe key '{key}': cannot import {module_name!r} ({type(exc).__name__}: "
                          f"{str(exc)[:ECHO_CHARS]})") from exc
    found: Any = module
    for part in name.split("."):
        if not hasattr(found, part):
            raise ConfigError(f"recipe key '{key}': {module_name!r} has no {name!r}")
        found = getattr(found, part)
    return found


def read_recipe(path: str | Path, overrides: list[str] | None = None) -> dict:
    """Read a YAML recipe into a dict and apply overrides; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe file not found: {path}")
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise ConfigError(f"recipe {path} is {path.stat().st_size} bytes, over the {MAX_RECIPE_BYTES}-byte limit")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"recipe {path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    data = safe_yaml(text, f"recipe {path}") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping at the top level")
    return apply_overrides(data, overrides or [])
