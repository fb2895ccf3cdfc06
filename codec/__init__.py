"""intelliflow.codec: feature codecs (CompressAI bitstreams), baselines and the registry."""

from .registry import available_codecs, build_codec

__all__ = ["available_codecs", "build_codec"]
