"""The ``intelliflow`` command's groups: each module registers its own subcommands with
``register(sub)`` and holds their thin runners over the library."""

from . import channels, codecs, data, deploy, evaluate, info, models, system, train

#: in the order ``intelliflow --help`` lists them
GROUPS = (info, evaluate, train, system, codecs, deploy, channels, models, data)
