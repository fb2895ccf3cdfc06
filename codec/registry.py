"""Codecs by name: a decorator registry (CompressAI's habit) and the one name resolver.

A codec module registers its class where it defines it::

    @register_codec("jpeg", option="quality")
    class JpegUpload(ImageUploadCodec): ...

and nothing else needs to know the name: the package imports every module of
:mod:`intelliflow.codec` once, on the first look-up, so a new module is a new codec.

Two entry points:

- :func:`build_codec` builds a registered codec *architecture* from ``{"name": ..., **params}``
  (untrained where the codec learns): what training recipes use.
- :func:`resolve_codec` turns any name a user types into a ready codec: a shipped codec
  (``shapes-hyperprior``), an alias (``mse-codec``), a checkpoint folder, a fixed baseline with its
  option after a dash (``jpeg-30``, ``quantize-6``, ``avif-50``) or without (``text``, ``identity``).

A malformed name is a :class:`~intelliflow.errors.RegistryError` or
:class:`~intelliflow.errors.ConfigError` that says what is allowed.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from pathlib import Path, PurePath
from typing import Any, Callable, Mapping

from intelliflow.errors import ConfigError, RegistryError
from intelliflow.registry import Registry

#: names that stand for a shipped checkpoint
ALIASES = {"mse-codec": "shapes-mse-codec"}


@dataclass(frozen=True)
class CodecEntry:
    """One registered codec: its class, its config dataclass (if it takes one) and the
    construction option a ``name-VALUE`` spelling sets."""

    name: str
    cls: type
    config: type | None
    option: str | None

    @property
    def allowed(self) -> list[str]:
        """The parameters :func:`build_codec` accepts for this codec."""
        if self.config is not None:
            return [f.name for f in fields(self.config)]
        return [p for p in inspect.signature(self.cls.__init__).parameters if p != "self"]

    def build(self, **params):
        unknown = sorted(set(params) - set(self.allowed))
        if unknown:
            raise ConfigError(f"codec {self.name!r} has no parameter(s) {unknown}; allowed: {self.allowed}")
        return self.cls(self.config(**params)) if self.config is not None else self.cls(**params)


CODECS = Registry("codec", __package__)
_PAYLOAD_IDS: dict[int, str] = {}


def register_codec(name: str, *, config: type | None = None, option: str | None = None,
                   payload_id: int | None = None) -> Callable[[type], type]:
    """Class decorator: register a codec under ``name``.

    :param config: the dataclass the codec's constructor takes (its fields are the parameters).
    :param option: the constructor parameter that ``name-VALUE`` sets (``quality`` for ``jpeg-30``).
    :param payload_id: the 4-bit kind this codec writes in its payload header (1..15, unique).
    """
    def register(cls: type) -> type:
        if "-" in name:   # "name-option" is how a name carries its option (jpeg-30)
            raise RegistryError(f"codec name {name!r} has a dash; a dash separates a codec's option")
        if payload_id is not None:
            if not 1 <= payload_id <= 15 or _PAYLOAD_IDS.get(payload_id, name) != name:
                raise RegistryError(f"payload id {payload_id} of codec {name!r} is out of 1..15 or taken by "
                                    f"{_PAYLOAD_IDS.get(payload_id)!r}")
            _PAYLOAD_IDS[payload_id] = name
        cls.registered_name = name
        cls.payload_id = payload_id
        CODECS.add(name, CodecEntry(name, cls, config, option))
        return cls
    return register


def entry(name: str) -> CodecEntry:
    """The registered codec ``name``, or a :class:`RegistryError` listing the registered ones."""
    return CODECS.get(name)


def registered_codecs() -> dict[str, CodecEntry]:
    """Every registered codec, by name."""
    return CODECS.items()


def available_codecs() -> list[str]:
    """Registered codec names and aliases of shipped checkpoints (``mse-codec``)."""
    return sorted([*CODECS.names(), *ALIASES])


def payload_kind_name(payload_id: int) -> str:
    """The codec that writes ``payload_id`` in its header (``"unknown"`` if none)."""
    CODECS.names()  # every codec module imported, so every id is known
    return _PAYLOAD_IDS.get(payload_id, "unknown")


def build_codec(config: str | Mapping[str, Any]):
    """Build a registered codec from its name or ``{"name": ..., **parameters}`` (untrained where
    the codec learns; load trained ones with :func:`resolve_codec`)."""
    params = {"name": config} if isinstance(config, str) else dict(config)
    name = params.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"a codec config needs a 'name'; registered: {sorted(registered_codecs())}")
    return entry(name).build(**params)


# ---------------------------------------------------------------------- names users type
def checkpoint_folder(name: str | Path, folders: bool = True) -> Path | None:
    """The checkpoint folder a name stands for: a shipped codec, an alias, or (with ``folders``) a
    folder; else ``None``."""
    from .persistence import shipped_codecs

    shipped, name = shipped_codecs(), str(name)
    name = ALIASES.get(name, name)
    if name in shipped:
        return shipped[name]
    if not folders:
        return None
    folder = Path(name)
    return folder if (folder / "config.json").is_file() else None


def _split_option(name: str) -> tuple[CodecEntry, Any] | None:
    """``jpeg-30`` -> (the jpeg entry, 30); ``None`` when the base is not a registered codec."""
    base, dash, option = name.partition("-")
    if base not in CODECS:
        return None
    found = CODECS.get(base)
    if not dash:
        return found, None
    if found.option is None:
        raise ConfigError(f"codec {base!r} takes no option after a dash, got {name!r}")
    kind = inspect.signature(found.cls.__init__).parameters[found.option].annotation
    try:
        value = int(option) if kind in (int, "int") else float(option)
    except ValueError:
        raise ConfigError(f"codec {name!r}: the {found.option} after the dash must be "
                          f"{'an integer' if kind in (int, 'int') else 'a number'}, got {option!r}") from None
    return found, value


def resolve_codec(name: str | Mapping[str, Any], folders: bool = True):
    """A ready codec from any name a user types (see the module docstring); a mapping is built
    with :func:`build_codec`. Learned codecs come back in eval mode with their weights.

    :param folders: also load checkpoint folders; ``False`` for names that arrived from elsewhere
        (a received file): then only shipped codecs, aliases and fixed codecs resolve.
    """
    if not isinstance(name, str):
        return build_codec(name)
    folder = checkpoint_folder(name, folders)
    if folder is not None:
        from .persistence import load_codec

        codec = load_codec(folder)
        codec.checkpoint_name = name
        return codec
    parsed = _split_option(name)
    if parsed is None:
        from .persistence import shipped_codecs

        raise RegistryError(f"unknown codec {name!r}: not a registered codec ({CODECS.names()}), not a shipped "
                            f"codec ({sorted([*shipped_codecs(), *ALIASES])}) and not a checkpoint folder")
    found, value = parsed
    if found.cls.learned:
        from .persistence import shipped_codecs

        raise ConfigError(f"codec {name!r} needs trained weights: give a shipped codec "
                          f"({sorted([*shipped_codecs(), *ALIASES])}) or a checkpoint folder")
    return found.build(**({} if value is None else {found.option: value}))


def codec_class(name: str) -> type | None:
    """The class a codec name stands for, without loading weights (a checkpoint's ``config.json``
    is read); ``None`` when the name resolves to nothing here."""
    folder = checkpoint_folder(name)
    if folder is not None:
        from .persistence import codec_info

        try:
            return entry(codec_info(folder)["name"]).cls
        except (OSError, KeyError, ValueError, RegistryError):
            return None
    try:
        parsed = _split_option(name)
    except ConfigError:
        return None
    return parsed[0].cls if parsed else None


def canonical_name(name: str) -> str:
    """The identifier two ends of a deployment compare, from the string alone (no file is looked
    at, so a received name cannot probe the receiver's disk): a folder's last component, an alias
    resolved to its shipped name, and for image uploads the format alone (any quality decodes the
    same way)."""
    ident = PurePath(str(name)).name or str(name)
    ident = ALIASES.get(ident, ident)
    try:
        parsed = _split_option(ident)
    except ConfigError:
        return ident
    if parsed is not None and parsed[0].cls.takes == "image":
        return parsed[0].name
    return ident


def codec_metadata(name: str) -> dict:
    """What trained a learned codec (its checkpoint's ``config.json``), or ``{}`` for other names."""
    from .persistence import codec_info

    folder = checkpoint_folder(name)
    return codec_info(folder) if folder is not None else {}
