"""Every "name -> entry" table is one Registry (registry.py), and only its module touches its storage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from torch import nn

from depthsmith.data import DATASETS
from depthsmith.data.base import DepthDataset
from depthsmith.data.transforms import TRANSFORMS, build_transforms
from depthsmith.evaluate import PROTOCOLS
from depthsmith.metrics import METRICS
from depthsmith.models.decoders.registry import DECODERS, register_decoder
from depthsmith.models.heads import OUTPUT_KINDS
from depthsmith.models.presets import PRESETS
from depthsmith.registry import DuplicateNameError, Registry, UnknownNameError
from depthsmith.runtime.base import BACKEND_REGISTRY

ROOT = Path(__file__).resolve().parents[1]
REGISTRIES = {"decoder": DECODERS, "dataset type": DATASETS, "preset": PRESETS, "protocol": PROTOCOLS,
              "backend": BACKEND_REGISTRY, "output kind": OUTPUT_KINDS, "transform": TRANSFORMS, "metric": METRICS}


@pytest.mark.parametrize("what", list(REGISTRIES))
def test_each_table_is_a_registry_that_refuses_duplicates_and_lists_valid_names(what: str) -> None:
    registry = REGISTRIES[what]
    assert isinstance(registry, Registry) and registry.what == what and len(registry) > 0
    first = registry.names()[0]
    with pytest.raises(DuplicateNameError, match=f"{what} '{first}' is already registered"):
        registry.add(first, registry.get(first))
    with pytest.raises(UnknownNameError) as err:
        registry.get("no-such-name")
    assert all(name in str(err.value) for name in registry.names())


def test_a_decoder_name_is_not_overwritten() -> None:
    """Decoders used to overwrite silently (a second class under "unet" replaced the first)."""
    with pytest.raises(DuplicateNameError):
        register_decoder("unet")(type("Other", (nn.Module,), {}))
    assert DECODERS.get("unet").__name__ == "UNetDecoder"


def test_data_root_fills_the_path_argument_a_new_reader_declares() -> None:
    """``data.root`` fills a reader's ``root_key``: a new reader needs no entry in a table elsewhere."""
    from depthsmith.train.data import _with_root

    class Folder(DepthDataset):
        root_key = "folder"

    DATASETS.add("throwaway-folder", Folder)
    try:
        assert _with_root({"type": "throwaway-folder"}, "/data") == {"type": "throwaway-folder", "folder": "/data"}
        assert _with_root({"type": "paired", "rgb_glob": "*.jpg"}, "/d")["root"] == "/d"
        assert _with_root({"type": "paired"}, "/d")["csv_path"] == "/d"
        assert "path" not in _with_root({"type": "synthetic"}, "/d")
    finally:
        DATASETS.remove("throwaway-folder")


def test_random_transforms_say_so_on_their_class() -> None:
    random = {name for name, cls in TRANSFORMS.items() if getattr(cls, "random", False)}
    assert random == {"hflip", "random_crop", "color_jitter", "channel_swap", "random_rotate"}
    assert len(build_transforms(["hflip", {"name": "center_crop", "size": 4}], train=False).transforms) == 1
    assert len(build_transforms([{"name": "hflip", "val": True}], train=False).transforms) == 1


def test_presets_carry_their_note() -> None:
    assert all(PRESETS.get(name).note for name in PRESETS)


def _private_registry_access() -> list[str]:
    """``._entries`` / ``._aliases`` outside registry.py, and the old private dicts, in src and tests."""
    found = []
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        if path.name == "registry.py" and path.parent.name == "depthsmith":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = (node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name)
                    else None)
            if name in ("_entries", "_aliases", "_REGISTRY", "_ALIASES", "_DECODERS"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    return found


def test_nothing_outside_a_registry_touches_its_storage() -> None:
    assert _private_registry_access() == []
