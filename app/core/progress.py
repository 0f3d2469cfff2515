"""The progress callbacks every layer passes down (pure Python: the engine, ``lit_models`` and the UI import them).

A job's work reports a fraction; an import reports counts, because it does not know its total before it has
walked every folder and zip.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[float, str], None]
"""Called with (fraction done in [0, 1], short message); must be quick and thread-safe."""

CountProgressFn = Callable[[int, int | None, str], None]
"""Called with (items done, total or None while still unknown, the item being read)."""


def no_progress(_fraction: float, _message: str) -> None:
    """A `ProgressFn` that reports nowhere (the default where nobody watches)."""
