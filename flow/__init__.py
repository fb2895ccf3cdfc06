"""intelliflow.flow: composition. :class:`Flow` (head + codec + channel + tail, for training and
inference), the one inference path it uses, :class:`Device` and :class:`Receiver`, and
:class:`CodecLink`, a codec and a channel inside any torch model (:mod:`intelliflow.flow.bridge`)."""

from .bridge import CodecLink, LinkReport, LinkTotals
from .endpoints import Device, Receiver, Sent
from .flow import Delivery, Flow, FlowResult

__all__ = ["CodecLink", "Delivery", "Device", "Flow", "FlowResult", "LinkReport", "LinkTotals", "Receiver", "Sent"]
