"""The pretrained zoo: entries, published numbers with their source, loadability asked of the
loader at run time, ``depthsmith models --pretrained`` and README's table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from depthsmith.cli import main
from depthsmith.commands.catalog import zoo_table
from depthsmith.models.zoo import DEFAULT_MODEL, ZOO, ZooEntry, converter_present, weights_cached

ROOT = Path(__file__).resolve().parents[1]


def test_the_zoo_lists_every_family_of_issue_19():
    ids = set(ZOO.names())
    for size in ("Small", "Base", "Large"):
        assert f"depth-anything/Depth-Anything-V2-{size}-hf" in ids
        assert f"depth-anything/Depth-Anything-V2-Metric-Indoor-{size}-hf" in ids
        assert f"depth-anything/Depth-Anything-V2-Metric-Outdoor-{size}-hf" in ids
        assert f"LiheYoung/depth-anything-{size.lower()}-hf" in ids
    for v in "sbl":
        assert {f"depth_anything_v2_vit{v}.pth", f"depth_anything_v2_metric_hypersim_vit{v}.pth",
                f"depth_anything_v2_metric_vkitti_vit{v}.pth"} <= ids
    assert {"Intel/dpt-large", "Intel/dpt-hybrid-midas", "Intel/dpt-beit-large-512", "Intel/dpt-beit-base-384",
            "Intel/zoedepth-nyu", "Intel/zoedepth-kitti", "Intel/zoedepth-nyu-kitti", "apple/DepthPro-hf"} <= ids
    for family in ("MoGe-2", "UniDepth", "Metric3D v2", "Video Depth Anything", "Marigold"):
        assert ZOO.get(family).unsupported and not converter_present(ZOO.get(family))
    assert ZOO.get(DEFAULT_MODEL).licence == "apache-2.0"


def _csv_row(protocol: str, method: str, backbone: str) -> dict[str, str]:
    with open(ROOT / "src" / "depthsmith" / "results" / f"{protocol}.csv", newline="") as f:
        return next(r for r in csv.DictReader(f) if (r["method"], r["backbone"]) == (method, backbone))


def test_published_numbers_are_the_results_rows_with_their_source():
    table = zoo_table()
    nyu = _csv_row("nyu-eigen", "ZoeDepth", "BEiT-L (ZoeD-M12-N)")
    kitti = _csv_row("kitti-garg", "ZoeDepth", "BEiT-L (ZoeD-M12-K)")
    assert (nyu["abs_rel"], nyu["d1"], kitti["abs_rel"], kitti["d1"]) == ("0.077", "0.951", "0.054", "0.971")
    row = {line.split(" | ")[0].strip("| `"): line for line in table.splitlines()[2:]}
    assert "0.077 / 0.951 (Bhat et al. 2023)" in row["Intel/zoedepth-nyu"]
    assert "0.054 / 0.971 (Depth Anything (V1) metric_depth/README.md)" in row["Intel/zoedepth-kitti"]
    # Only rows with a source carry numbers.
    numbered = [i for i, line in row.items() if "0.0" in line.split(" | ")[6] + line.split(" | ")[7]]
    assert sorted(numbered) == ["Intel/zoedepth-kitti", "Intel/zoedepth-nyu"]


def test_loadability_is_asked_of_the_loader():
    assert converter_present(ZOO.get(DEFAULT_MODEL))  # depth_anything: hf_depth converts it
    assert converter_present(ZOO.get("depth_anything_v2_vits.pth"))  # models/da2_pth.py
    assert not converter_present(ZooEntry("x/y", "none", "metric", loader=("model_type", "no_such_model_type")))
    assert not converter_present(ZooEntry("x.pth", "none", "metric", loader=("module", "depthsmith.models.nope")))


def test_weights_cached_looks_in_the_hub_cache_only(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    entry = ZOO.get("depth_anything_v2_vits.pth")
    assert not weights_cached(entry)
    repo = tmp_path / "models--depth-anything--Depth-Anything-V2-Small"
    (repo / "snapshots" / "abc").mkdir(parents=True)
    (repo / "snapshots" / "abc" / "depth_anything_v2_vits.pth").write_bytes(b"x")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc")
    assert weights_cached(entry)


def test_models_pretrained_prints_the_table(capsys):
    assert main(["models", "--pretrained"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(zoo_table(cached=True).splitlines()[0])
    assert "| `apple/DepthPro-hf` |" in printed and "download (apple/DepthPro-hf)" in printed


def test_readme_zoo_table_is_the_registry():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- zoo-table -->\n", 1)[1].split("\n<!-- /zoo-table -->", 1)[0]
    assert block == zoo_table()  # regenerate README's table (zoo_table()) after changing the zoo or a converter
