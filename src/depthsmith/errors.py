"""The one error type for bad input, whatever the entry point.

Every reader, loader and argument check raises a subclass of :class:`InputError` whose
message names the file (or argument), says what is wrong with it and what would be valid.
It is a ``ValueError`` so code that caught ``ValueError`` before keeps working; the CLI
catches it and prints ``error: <message>`` instead of a traceback.

Below it: :class:`DataError`, a sample or dataset that cannot be used, and :class:`ReadError`,
a DataError for a file that cannot be read at all (raised by ``decode`` for every entry point).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["InputError", "MissingInputError", "DataError", "ReadError", "check_positive_int", "check_intrinsics"]


class InputError(ValueError):
    """Bad input (a file, a config, an argument); the message says which, what is wrong and what is valid."""


class MissingInputError(InputError, FileNotFoundError):
    """A named file or folder that does not exist (also a FileNotFoundError, for older callers)."""


class DataError(InputError):
    """A sample or dataset cannot be used; the message names the file(s) and the problem."""


class ReadError(DataError):
    """A file (image, depth map, array, video) that cannot be read or decoded; the message names
    it and says why. A DataError too, so a dataset skips or reports an unreadable sample like
    any other unusable one."""


def check_positive_int(value: object, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, or an InputError naming the argument and the valid range."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name}={value!r} is not valid: give an integer >= {minimum}.")
    return value


def check_intrinsics(intrinsics: Sequence[float] | None) -> tuple[float, float, float, float] | None:
    """(fx, fy, cx, cy) in pixels: four finite numbers, focal lengths > 0 and a principal point >= 0."""
    if intrinsics is None:
        return None
    values = tuple(float(v) for v in intrinsics)
    if (len(values) != 4 or not all(math.isfinite(v) for v in values)
            or values[0] <= 0 or values[1] <= 0 or values[2] < 0 or values[3] < 0):
        raise InputError(
            f"intrinsics {list(intrinsics)} are not valid: give FX FY CX CY in pixels, "
            "focal lengths FX, FY > 0 and principal point CX, CY >= 0 (finite numbers)."
        )
    return values  # type: ignore[return-value]
