"""intelliflow.flow: composition. :class:`Flow` (head + codec + channel + tail, for training and
inference) and the one inference path it uses, :class:`Device` and :class:`Receiver`."""

from .endpoints import Device, Receiver, Sent
from .flow import Flow, FlowResult

__all__ = ["Device", "Flow", "FlowResult", "Receiver", "Sent"]
