"""docs/architecture.md "To add ...": each row checked by adding a throwaway one in ONE new file of
its own (a plugin module written here), used through the public entry points, with no other file
touched. The count of files written is the table's claim."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

PLUGINS = {
    "metric": """
        import numpy as np
        from depthsmith.metrics import Metric, register_metric
        register_metric(Metric("throwaway_mae", "tMAE", "lower", {"throwaway_abs": lambda p, g: np.abs(p - g)},
                               lambda s: s["throwaway_abs"] / s["n"], unit="m"))
    """,
    "dataset": """
        import numpy as np
        from depthsmith.data import DATASETS
        from depthsmith.data.base import DepthDataset

        @DATASETS.register("throwaway-flat")
        class Flat(DepthDataset):
            root_key = "folder"

            def __init__(self, folder=None, **kwargs):
                super().__init__(**kwargs)
                self.folder = folder

            def _count(self):
                return 2

            def _load(self, i):
                return np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 2.0, np.float32), f"flat{i}"
    """,
    "decoder": """
        from depthsmith.models.decoders import register_decoder
        from depthsmith.models.decoders.registry import DECODERS

        @register_decoder("throwaway-decoder")
        class Mine(DECODERS.get("transposed")):
            pass
    """,
    "protocol": """
        from depthsmith.evaluate import Protocol, register_protocol
        register_protocol(Protocol("throwaway-protocol", "test", "1-4 m, no crop", min_depth=1.0, max_depth=4.0))
    """,
    "backend": """
        from depthsmith.runtime import Backend, register
        from depthsmith.runtime.torch_backends import TorchRunner

        register(Backend("throwaway-backend", lambda model, device="cpu", **kw: TorchRunner(model, device, "fp32"),
                         "fp32 eager, again", "fp32", tolerance=1e-6, auto=False))
    """,
}
REGISTRY_OF = {"metric": ("depthsmith.metrics", "METRICS", "throwaway_mae"),
               "dataset": ("depthsmith.data", "DATASETS", "throwaway-flat"),
               "decoder": ("depthsmith.models.decoders.registry", "DECODERS", "throwaway-decoder"),
               "protocol": ("depthsmith.evaluate", "PROTOCOLS", "throwaway-protocol"),
               "backend": ("depthsmith.runtime.base", "BACKEND_REGISTRY", "throwaway-backend")}


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture
def plugin(tmp_path: Path, request):
    """Write the row's plugin as one module, import it; unregister it afterwards."""
    what = request.param
    before = _files(tmp_path)
    path = tmp_path / f"plugin_{what}.py"
    path.write_text(textwrap.dedent(PLUGINS[what]))
    spec = importlib.util.spec_from_file_location(f"plugin_{what}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    src = Path(__file__).resolve().parents[1] / "src"
    assert not any(p.stat().st_mtime > path.stat().st_mtime for p in src.rglob("*.py"))  # no package file touched
    yield what, len(_files(tmp_path) - before)
    mod, name, key = REGISTRY_OF[what]
    getattr(importlib.import_module(mod), name).remove(key)
    sys.modules.pop(f"plugin_{what}", None)


@pytest.mark.parametrize("plugin", list(PLUGINS), indirect=True)
def test_each_to_add_row_is_one_file(plugin) -> None:
    from depthsmith.evaluate import evaluate_predictions, format_table

    what, files = plugin
    assert files == 1
    gt = np.full((6, 6), 2.0)
    pred = gt + 0.5
    if what == "metric":
        result = evaluate_predictions([pred], [gt], protocol="none", max_depth=10.0)
        assert result.metrics["throwaway_mae"] == pytest.approx(0.5) and "tMAE" in format_table(result)
    elif what == "protocol":
        gt[0, 0] = 6.0  # outside 1-4 m
        result = evaluate_predictions([pred], [gt], protocol="throwaway-protocol")
        assert result.metrics["n_valid"] == 35
    elif what == "dataset":
        from depthsmith.data import build_dataset
        from depthsmith.train.data import _with_root

        cfg = _with_root({"type": "throwaway-flat"}, "/data/flat")
        assert cfg["folder"] == "/data/flat" and len(build_dataset(cfg)) == 2
    elif what == "decoder":
        import depthsmith

        model = depthsmith.create_model("test_resnet", decoder="throwaway-decoder", encoder_kwargs={"out_indices": [4]})
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1, 64, 64)
    elif what == "backend":
        import depthsmith
        from depthsmith.runtime import backend_choices, create_runner

        assert "throwaway-backend" in backend_choices()
        model = depthsmith.create_model("test_resnet", decoder="transposed", encoder_kwargs={"out_indices": [4]}).eval()
        x = torch.rand(1, 3, 64, 64)
        with torch.no_grad():
            assert torch.allclose(create_runner("throwaway-backend", model, device="cpu")(x), model(x), atol=1e-6)
