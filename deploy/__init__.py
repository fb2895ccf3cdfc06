"""intelliflow.deploy: a real split deployment. ``.iflow`` files (:mod:`.container`, :mod:`.files`),
the edge/cloud HTTP service (:mod:`.service`) and the device client (:mod:`.client`), all on the
one inference path of :mod:`intelliflow.flow`."""
