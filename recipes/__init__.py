"""intelliflow.recipes: the YAML recipes (``recipes/shapes``, ``recipes/coco``), the ``intelliflow``
command (:mod:`.cli`, one module per command group in :mod:`.commands`) and the demo
(:mod:`.demo`). Thin runners over the library; nothing imports this package."""
