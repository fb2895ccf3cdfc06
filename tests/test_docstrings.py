"""Every ``>>>`` example in the library's docstrings runs offline, quickly, and shows what it gives.

One test per module: the top-level ``intelliflow`` modules and every module of the packages in
``PACKAGES``. A module's test fails when any of its examples fails (the message holds doctest's
report). Examples that cannot run cheaply are plain ``.. code-block:: python`` blocks, not ``>>>``.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import intelliflow

#: Packages whose modules' examples are run; add a package's name here to cover it too.
PACKAGES = ["intelliflow.data", "intelliflow.channels", "intelliflow.models", "intelliflow.codec", "intelliflow.flow",
            "intelliflow.evaluation", "intelliflow.deploy", "intelliflow.training", "intelliflow.system",
            "intelliflow.recipes"]

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def module_names() -> list[str]:
    """``intelliflow`` and its own modules (not its sub-packages), then each package and its modules."""
    names = ["intelliflow"] + [m.name for m in pkgutil.iter_modules(intelliflow.__path__, "intelliflow.")
                               if not m.ispkg]
    for package in PACKAGES:
        names.append(package)
        names += [m.name for m in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}.")]
    return names


@pytest.mark.parametrize("name", module_names())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        runner.run(test, out=report.append)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}:\n" + "".join(report)


def test_every_package_is_collected():
    names = module_names()
    assert {"intelliflow.errors", "intelliflow.data.coco", "intelliflow.channels.registry",
            "intelliflow.models.captioner", "intelliflow.evaluation.metrics"} <= set(names)
    assert len(names) == len(set(names))
