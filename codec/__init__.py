"""intelliflow.codec: one codec interface (:mod:`.interface`), the codecs that implement it, and
the registry that names them (:func:`resolve_codec` for names users type, :func:`build_codec` for
untrained architectures)."""

from .interface import Codec, RateKnob
from .registry import available_codecs, build_codec, register_codec, resolve_codec

__all__ = ["Codec", "RateKnob", "available_codecs", "build_codec", "register_codec", "resolve_codec"]
