"""One registry helper for every "name -> entry" table of the package.

Decoders, output kinds, presets, protocols, dataset types and backends are each looked up by a
name the user types. One class gives all of them the same behaviour: a duplicate name is refused
(a silent overwrite would change what an existing name means), an unknown name is an
``UnknownNameError`` that lists the valid ones, and entries are listed in registration order.
Nothing outside the module that owns a registry touches its storage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import InputError

__all__ = ["Registry", "UnknownNameError", "DuplicateNameError"]

T = TypeVar("T")


class UnknownNameError(InputError, KeyError):
    """A name that no entry of a registry has (an InputError: the user typed it)."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(ValueError):
    """Internal: code registered a name twice (a programming error, not bad user input)."""


class Registry(Generic[T]):
    """Named entries of one kind (``what`` is the word used in messages, e.g. "decoder")."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def add(self, name: str, entry: T, aliases: tuple[str, ...] = ()) -> T:
        for key in (name, *aliases):
            if key in self._entries or key in self._aliases:
                raise DuplicateNameError(f"{self.what} {key!r} is already registered")
        self._entries[name] = entry
        self._aliases.update({a: name for a in aliases})
        return entry

    def register(self, name: str, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Decorator form of ``add``: ``@REGISTRY.register("name")``."""
        def wrap(entry: T) -> T:
            return self.add(name, entry, aliases)

        return wrap

    def remove(self, name: str) -> T:
        """Take an entry (and its aliases) out again: for a test's or a plugin's temporary entry."""
        key = self.canonical(name)
        self._aliases = {a: n for a, n in self._aliases.items() if n != key}
        return self._entries.pop(key)

    def canonical(self, name: str) -> str:
        """The registered name for ``name`` or one of its aliases."""
        key = self._aliases.get(name, name)
        if key not in self._entries:
            raise UnknownNameError(f"unknown {self.what} {name!r}; valid: {', '.join(self._entries)}")
        return key

    def get(self, name: str) -> T:
        return self._entries[self.canonical(name)]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def aliases(self) -> dict[str, str]:
        """alias -> registered name."""
        return dict(self._aliases)

    def names(self) -> list[str]:
        return list(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
