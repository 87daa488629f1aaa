"""torch.hub entry points, as MiDaS and ZoeDepth offer them:

    model = torch.hub.load("<owner>/depthsmith", "depth_anything_v2_small")   # published weights
    model = torch.hub.load(repo_dir, "depth_anything_v2_small", source="local", pretrained=False)

Every preset of ``depthsmith.list_models()`` is an entry point (dashes -> underscores). For the
Depth-Anything-V2 entries ``pretrained=True`` converts the published transformers checkpoint
(relative: output 'disparity'; metric_indoor / metric_outdoor: metres, max depth 20 / 80 m);
``pretrained=False`` builds the same architecture with random weights. For the other presets
``pretrained=True`` means ImageNet encoder weights from timm (the decoders are not published).
Licences: Depth-Anything-V2 Small is Apache-2.0, Base and Large are CC-BY-NC-4.0.
"""

from __future__ import annotations

import sys
from pathlib import Path

dependencies = ["torch", "timm", "huggingface_hub", "safetensors"]

# torch.hub imports this file from a plain checkout (no pip install): use the checkout's own package.
_SRC = Path(__file__).resolve().parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

import depthsmith  # noqa: E402

_DA_V2 = {"small": "Small", "base": "Base", "large": "Large"}
_KINDS = {"": ("", {"output": "disparity"}),
          "metric_indoor_": ("Metric-Indoor-", {"output": "metric", "max_depth": 20.0}),
          "metric_outdoor_": ("Metric-Outdoor-", {"output": "metric", "max_depth": 80.0})}


def _depth_anything(size: str, kind: str):
    label, output = _KINDS[kind]
    hub_id = f"depth-anything/Depth-Anything-V2-{label}{_DA_V2[size]}-hf"

    def entry(pretrained: bool = True, **kwargs):
        if pretrained:
            return depthsmith.load_model(hub_id, **kwargs)
        return depthsmith.create_model(f"depth-anything-v2-{size}", encoder_weights=None, **{**output, **kwargs})

    entry.__name__ = f"depth_anything_v2_{kind}{size}"
    entry.__doc__ = f"Depth-Anything-V2 {kind.replace('_', ' ')}{_DA_V2[size]} ({hub_id} when pretrained)."
    return entry


def _preset(name: str):
    def entry(pretrained: bool = True, **kwargs):
        return depthsmith.create_model(name, encoder_weights="imagenet" if pretrained else None, **kwargs)

    entry.__name__ = name.replace("-", "_")
    entry.__doc__ = f"depthsmith preset {name!r} (pretrained: ImageNet encoder weights from timm)."
    return entry


for _name in depthsmith.list_models():
    if not _name.startswith("depth-anything-v2-"):
        globals()[_name.replace("-", "_")] = _preset(_name)
for _size in _DA_V2:
    for _kind in _KINDS:
        _fn = _depth_anything(_size, _kind)
        globals()[_fn.__name__] = _fn
