"""One meaning per name: a public name that several modules export is the same object in each.

A package facade re-exporting a function is fine (same object); two functions under one name
(data.load_config vs train.load_config, as it was) are what a reader confuses. The public names are
each module's ``__all__``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import defaultdict

import depthsmith


def _public_names():
    names = defaultdict(dict)
    for info in pkgutil.walk_packages(depthsmith.__path__, "depthsmith."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            names[name][info.name] = getattr(module, name)
    return names


def test_a_public_name_means_one_object():
    clashes = {name: sorted(by_module) for name, by_module in _public_names().items()
               if len({id(v) for v in by_module.values()}) > 1}
    assert not clashes, f"names exported with different meanings: {clashes}"


def test_the_check_sees_a_clash(monkeypatch):
    # Negative control: give one module's exported name another object and the check must fail.
    import depthsmith.evaluate.scorer as scorer

    monkeypatch.setattr(scorer, "resize_map", lambda x, size: x)
    names = _public_names()["resize_map"]
    assert len({id(v) for v in names.values()}) > 1
