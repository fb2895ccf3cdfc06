"""intelliflow.flow: head + codec + channel + tail as one pipeline (:class:`Flow`); files and links."""

from .flow import Flow, FlowResult, codec_kind

__all__ = ["Flow", "FlowResult", "codec_kind"]
