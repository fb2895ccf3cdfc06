"""Helpers every command group shares: JSON output, number lists, reading images."""

from __future__ import annotations

import contextlib
import json
import math
import sys


def print_json(obj) -> None:
    """Print ``obj`` as indented JSON (NaN and infinities as ``null``)."""
    def clean(v):
        if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    print(json.dumps(clean(obj), indent=2))


def float_list(text: str) -> list[float]:
    """``"0,5,10"`` or ``"0:20:5"`` (start:stop:step, stop included) -> floats."""
    from intelliflow.errors import ConfigError

    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            n = int(round((stop - start) / step)) + 1
            return [round(start + i * step, 6) for i in range(n)]
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ConfigError(f"expected a list like 0,5,10 or 0:20:5, got {text!r}") from exc


def read_image(path):
    """An image file as an RGB PIL image (:func:`intelliflow.data.coco.open_image`)."""
    from intelliflow.data.coco import open_image

    return open_image(path)


def action_group(sub, name: str, help: str):
    """A command with actions (``intelliflow NAME ACTION``): its sub-parsers, one required."""
    group = sub.add_parser(name, help=help)
    actions = group.add_subparsers(dest=f"{name}_command", metavar="ACTION")
    actions.required = True
    return actions


class RegisteredNames:
    """argparse ``choices`` read from a registry only when a value is checked or listed, so building
    the parser imports nothing heavy: ``choices=RegisteredNames(available_channels)``."""

    def __init__(self, names):
        self.names = names

    def __contains__(self, value) -> bool:
        return value in self.names()

    def __iter__(self):
        return iter(self.names())


class InputFailures:
    """A command over many inputs reports a failing one in one line on stderr, naming it, and goes on
    with the rest; its exit status is then 2 (:attr:`status`).

    >>> failures = InputFailures("decode")
    >>> for path in ["a.iflow", "b.iflow"]:
    ...     with failures.of(path):
    ...         if path == "a.iflow":
    ...             raise OSError("no such file")
    >>> failures.count, failures.status
    (1, 2)
    """

    def __init__(self, command: str):
        self.command, self.count = command, 0

    @contextlib.contextmanager
    def of(self, name):
        """Run the block for input ``name``; a library error or an OS error in it is reported, not raised."""
        from intelliflow.errors import IntelliflowError

        try:
            yield
        except (IntelliflowError, OSError) as exc:
            self.count += 1
            print(f"intelliflow {self.command}: {name}: {exc}", file=sys.stderr)

    @property
    def status(self) -> int:
        return 2 if self.count else 0


def add_draft_arguments(p, effect: str) -> None:
    """``--draft DRAFTER`` and ``--early-threshold`` (speculative captioning) on a command whose
    ``effect`` with a draft the help completes."""
    p.add_argument("--draft", default=None, metavar="DRAFTER",
                   help="speculative captioning: the device drafts the caption with this drafter (shapes-drafter or "
                        f"a folder), the draft rides in the payload, the receiver verifies it in one pass; {effect}")
    p.add_argument("--early-threshold", type=float, default=0.9,
                   help="with --draft: the drafter confidence at which the device shows its draft at once "
                        "(default 0.9)")
