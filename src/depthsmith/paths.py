"""Glob patterns that survive symlink loops; output files that are whole or absent.

``glob.glob("root/**/*.png", recursive=True)`` follows symlinked folders; a link back to a
parent folder makes it recurse until the path is too long, and two such links make the search
exponential (it never returns). ``glob_files`` matches the same patterns but walks each folder
once per path from the root, skipping any folder that is already one of its own ancestors.

``atomic_write`` is the one writer of every output file (predict's images and arrays, eval's
metrics, reports, exports, run files): the bytes go to a temporary file beside the target,
which is renamed over it (``os.replace``, atomic on POSIX and Windows) only once complete.
Ctrl-C, a kill or a full disk leave the old file or none, never a truncated one.
``check_output_dir`` refuses an output folder that cannot be used before any work starts.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import InputError

__all__ = ["glob_files", "unique_names", "atomic_write", "atomic_write_text", "temp_beside", "fsync_dir",
           "check_output_dir", "check_output_file", "remove_own_temp_files", "MIN_FREE_BYTES", "cache_dir"]

# An output folder with less free space than this is refused before work starts: a model's
# outputs for a folder of photos, an ONNX file or a checkpoint are tens to hundreds of MB.
MIN_FREE_BYTES = 100 * 2**20


def _part_regex(part: str) -> str:
    """One path component of a glob as a regex that never crosses '/'."""
    out, i = [], 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in part[i + 2:]:  # a character class; "[]...]" keeps ']' as a member
            end = part.index("]", i + 2)
            body = part[i + 1:end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    regex = "".join(out)
    return regex if part.startswith(".") else f"(?!\\.){regex}"  # like glob: no hidden names unless asked


def _pattern_regex(parts: list[str]) -> re.Pattern:
    pieces = []
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        if part == "**":
            pieces.append("(?:(?!\\.)[^/]*(?:/(?!\\.)[^/]*)*)?" if last else "(?:(?!\\.)[^/]*/)*")
        else:
            pieces.append(_part_regex(part) + ("" if last else "/"))
    return re.compile("".join(pieces))


def _parents(folder: str) -> frozenset:
    """(device, inode) of every folder above ``folder``: a link back up to one of them is a loop too."""
    ids, path = set(), os.path.realpath(folder)
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return frozenset(ids)
        path = parent
        try:
            st = os.stat(path)
        except OSError:
            return frozenset(ids)
        ids.add((st.st_dev, st.st_ino))


def glob_files(pattern: str) -> list[str]:
    """Sorted paths matching ``pattern`` (``**`` = any number of folders), loops skipped."""
    if "**" not in pattern:
        return sorted(glob.glob(pattern))
    parts = pattern.replace(os.sep, "/").split("/")
    first = next(i for i, p in enumerate(parts) if glob.has_magic(p))
    base = "/".join(parts[:first]) or "."
    if pattern.startswith("/") and first == 1:
        base = "/"
    regex = _pattern_regex(parts[first:])
    found: list[str] = []
    ancestors: dict[str, frozenset] = {base: _parents(base)}
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        chain = ancestors.pop(dirpath, frozenset()) | {(st.st_dev, st.st_ino)}
        keep = []
        for d in dirnames:
            try:
                sub = os.stat(os.path.join(dirpath, d))
            except OSError:  # dangling link
                continue
            if (sub.st_dev, sub.st_ino) not in chain:  # a folder inside itself: a loop
                keep.append(d)
                ancestors[os.path.join(dirpath, d)] = chain
        dirnames[:] = keep
        rel_dir = os.path.relpath(dirpath, base).replace(os.sep, "/")
        for name in filenames + dirnames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if regex.fullmatch(rel):
                found.append(rel if base == "." else os.path.join(base, rel))
    return sorted(found)


def unique_names(names: list[str], sep: str = "-") -> list[str]:
    """The names in order, a repeat suffixed ``<sep>2``, ``<sep>3``, ... and never equal to another
    name of the list (["a", "a", "a-2"] -> ["a", "a-3", "a-2"]): report columns, figure legends and
    output files of one run are told apart by it."""
    taken = set(names)
    out: list[str] = []
    for name in names:
        label, n = name, 2
        while label in out or (label != name and label in taken):
            label, n = f"{name}{sep}{n}", n + 1
        out.append(label)
    return out


def temp_beside(path: Path) -> tuple[int, str]:
    """A temp file next to ``path`` (``.<name>.<pid>.<random>.tmp``, the pattern ``train.callbacks.
    clean_orphans`` removes), with the permissions a normal open() would give: created with mode
    0666, which the kernel reduces by the process umask (open(2)), so the umask is never read or
    changed (mkstemp would create it 0600)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), str(tmp)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")  # 100 random 32-bit names taken


def remove_own_temp_files(folder: Path) -> int:
    """Delete the temp files of :func:`temp_beside` that this process left in ``folder``: an
    interrupt can land between creating one and the ``try`` that would remove it. Returns the count."""
    count = 0
    for tmp in Path(folder).glob(f".*.{os.getpid()}.*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            count += 1
    return count


def fsync_dir(folder: Path) -> None:
    # Make the rename itself durable (POSIX); not possible on Windows, harmless to skip there.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", durable: bool = False, **open_args) -> Iterator[IO]:
    """``with atomic_write(p) as f: ...``: ``f`` is a temp file beside ``p``, renamed to ``p`` when
    the block ends without an exception (Ctrl-C included), deleted otherwise. ``durable``: fsync
    the file and the folder too (checkpoints), not needed for files a rerun can redo."""
    path = Path(path)
    fd, tmp = temp_beside(path)
    try:
        with os.fdopen(fd, mode, **open_args) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """A text file (JSON, CSV, Markdown, YAML) written through :func:`atomic_write`; its folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return path


def check_output_dir(folder: str | Path, option: str = "--out", create: bool = True) -> Path:
    """``folder`` ready for outputs, or an InputError naming ``option`` and the problem, before any
    work: an existing file, a folder that cannot be created or written (tried with a real file:
    permission bits do not tell for root or read-only mounts), or under MIN_FREE_BYTES free."""
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise InputError(f"{option} {out} is an existing file; give a folder (it is created if missing).")
    probe_dir = out
    try:
        if create:
            out.mkdir(parents=True, exist_ok=True)
        else:  # the nearest folder that exists is where it will be created
            while not probe_dir.exists():
                probe_dir = probe_dir.parent
            if not probe_dir.is_dir():
                raise InputError(f"{option} {out}: {probe_dir} is a file, so the folder cannot be created.")
        fd, tmp = temp_beside(probe_dir / "write-test")
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:  # a file further up the path, no permission, a read-only file system
        raise InputError(f"{option} {out}: cannot write there ({err.strerror or err}).") from err
    free = shutil.disk_usage(probe_dir).free
    if free < MIN_FREE_BYTES:
        raise InputError(f"{option} {out}: only {free / 2**20:.0f} MB free on its disk (need at least "
                         f"{MIN_FREE_BYTES / 2**20:.0f} MB); free some space or choose another folder.")
    return out


def check_output_file(path: str | Path, option: str = "--out") -> Path:
    """An output file's path, checked like :func:`check_output_dir` (its folder is created): an
    existing folder under that name, an unwritable folder or a nearly full disk fail before any work."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; give a file name, e.g. {path / 'model.onnx'}.")
    check_output_dir(path.parent, option)
    return path


def cache_dir() -> Path:
    """depthsmith's cache (exports, measured backend choices, compiled OpenVINO blobs):
    ``$DEPTHSMITH_CACHE``, else ``~/.cache/depthsmith``; created on first use."""
    path = Path(os.environ.get("DEPTHSMITH_CACHE") or Path.home() / ".cache" / "depthsmith")
    path.mkdir(parents=True, exist_ok=True)
    return path
