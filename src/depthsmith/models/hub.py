"""Files of a model folder or a Hub repo that several loaders read: the download, the licence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError, MissingInputError

__all__ = ["resolve_folder", "read_license", "source_license", "hub_error", "HUB_FILES"]

# What a converter needs from a Hub repo: never the training checkpoints or other large extras.
HUB_FILES = ["config.json", "*.safetensors", "model.safetensors.index.json", "README.md", "preprocessor_config.json"]


def resolve_folder(path_or_hub_id: str | Path, **hub_kwargs: Any) -> Path:
    """A local folder as is; a Hub id downloaded (config, weights, card, processor config only)."""
    path = Path(path_or_hub_id)
    if path.exists():
        return path
    from huggingface_hub import snapshot_download

    allowed = {k: v for k, v in hub_kwargs.items() if k in ("revision", "cache_dir", "local_files_only", "token")}
    try:
        return Path(snapshot_download(str(path_or_hub_id), allow_patterns=HUB_FILES, **allowed))
    except Exception as err:  # the hub library's errors name neither the id nor network vs missing repo
        raise hub_error(str(path_or_hub_id), err) from err


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


def hub_error(repo_id: str, err: Exception) -> InputError:
    """A Hub download failure as an error naming the id and saying which it was: no such repository
    (or file, revision, or a gated one: the Hub answered, so nothing is retried) or the network."""
    from huggingface_hub import errors

    # Offline first: LocalEntryNotFoundError is an EntryNotFoundError (huggingface_hub/errors.py).
    if isinstance(err, (errors.LocalEntryNotFoundError, errors.OfflineModeIsEnabled)):
        return InputError(f"--model {repo_id}: not in the local Hub cache and the Hub could not be reached "
                          "(network down, or HF_HUB_OFFLINE set); check the connection, or give a local folder.")
    answered = [(errors.GatedRepoError, "the repository is gated: accept its terms on huggingface.co and log in"),
                (errors.RepositoryNotFoundError, "no such model repository on the Hugging Face Hub (or it is "
                 "private: log in with `hf auth login`)"),
                (errors.RevisionNotFoundError, "the repository has no such revision"),
                (errors.EntryNotFoundError, "the repository has no config.json: not a model depthsmith can load")]
    for kind, text in answered:  # GatedRepoError is a RepositoryNotFoundError: the subclass first
        if isinstance(err, kind):
            return MissingInputError(f"--model {repo_id}: {text}.")
    return InputError(f"--model {repo_id}: the Hugging Face Hub could not be reached ({type(err).__name__}: "
                      f"{str(err).splitlines()[0][:200] if str(err) else 'no message'}); a network problem, "
                      "not a missing repository. Try again, or give a local folder.")
