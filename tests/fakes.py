"""Stand-ins for the engine's objects in tests of what the page shows."""

from __future__ import annotations

from types import SimpleNamespace


class FakeSession(SimpleNamespace):
    """A session stand-in that can be weakly referenced and hashed by identity (as the dashboard's caches do)."""

    __hash__ = object.__hash__
