"""The ``intelliflow`` command's groups: each module of this package registers itself with
``@COMMAND_GROUPS.register(name)`` on a ``register(sub)`` function that adds its subcommands, and
holds their thin runners over the library. A new module is a new group; nothing else changes."""

from intelliflow.registry import Registry

COMMAND_GROUPS = Registry("command group", __name__)
