"""Files of a model folder or a Hub repo that several loaders read: the download, the licence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["resolve_folder", "read_license", "source_license", "HUB_FILES"]

# What a converter needs from a Hub repo: never the training checkpoints or other large extras.
HUB_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json", "README.md", "preprocessor_config.json"]


def resolve_folder(path_or_hub_id: str | Path, **hub_kwargs: Any) -> Path:
    """A local folder as is; a Hub id downloaded (config, weights, card, processor config only)."""
    path = Path(path_or_hub_id)
    if path.exists():
        return path
    from huggingface_hub import snapshot_download

    allowed = {k: v for k, v in hub_kwargs.items() if k in ("revision", "cache_dir", "local_files_only", "token")}
    return Path(snapshot_download(str(path_or_hub_id), allow_patterns=HUB_FILES, **allowed))


def read_license(folder: str | Path) -> str | None:
    """The ``license:`` of a model folder's README.md front matter (None without one)."""
    readme = Path(folder) / "README.md"
    if not readme.is_file():
        return None
    from huggingface_hub import metadata_load

    value = (metadata_load(readme) or {}).get("license")
    return str(value) if value else None


def source_license(source: str | Path | None) -> str | None:
    """The licence in the card of a local folder or an already-downloaded Hub model (no network)."""
    if not source:
        return None
    try:
        return read_license(resolve_folder(source, local_files_only=True))
    except Exception:  # not in the cache: the card then says the licence is not recorded
        return None
