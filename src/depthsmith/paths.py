"""Glob patterns that survive symlink loops.

``glob.glob("root/**/*.png", recursive=True)`` follows symlinked folders; a link back to a
parent folder makes it recurse until the path is too long, and two such links make the search
exponential (it never returns). ``glob_files`` matches the same patterns but walks each folder
once per path from the root, skipping any folder that is already one of its own ancestors.
"""

from __future__ import annotations

import glob
import os
import re

__all__ = ["glob_files", "unique_names"]


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
