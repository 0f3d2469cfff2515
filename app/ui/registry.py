"""The open projects of this process, by name.

An `ActiveLearningSession` holds a database connection, a model and background threads, so it cannot live in
`gr.State` (which deep-copies its value). The page keeps only a reference to the project and a client id; every
handler looks the session up here (through `app.ui.sessions`). All browser tabs on one project share one session
(and so one training job).
"""

from __future__ import annotations

import threading
from pathlib import Path

from app.engine.session import ActiveLearningSession

_lock = threading.Lock()
_sessions: dict[tuple[str, str], ActiveLearningSession] = {}
_unvisited: set[tuple[str, str]] = set()  # opened in this process, no tab has asked for an image yet


def _key(projects_dir: str | Path, name: str) -> tuple[str, str]:
    return str(Path(projects_dir).resolve()), name


def register(projects_dir: str | Path, session: ActiveLearningSession) -> ActiveLearningSession:
    """Keep a freshly created or opened session; returns the one kept (an earlier one wins).

    Kept by its folder's name, the name `get` is asked for: the name stored inside a project can differ (a project
    folder copied or renamed by hand keeps the name it was made with)."""
    key = _key(projects_dir, session.folder_name)
    with _lock:
        kept = _sessions.setdefault(key, session)
        if kept is session:
            _unvisited.add(key)
    if kept is not session:
        session.close()
    return kept


def get(projects_dir: str | Path, name: str) -> ActiveLearningSession:
    """The session of project `name`, opening it on first use (raises the engine's error if it cannot)."""
    key = _key(projects_dir, name)
    with _lock:
        session = _sessions.get(key)
    if session is not None:
        return session
    return register(projects_dir, ActiveLearningSession.open(projects_dir, name))


def first_visit(projects_dir: str | Path, name: str) -> bool:
    """True once per opening of a project: the images its batch holds were claimed by tabs of an earlier run."""
    key = _key(projects_dir, name)
    with _lock:
        if key in _unvisited:
            _unvisited.discard(key)
            return True
    return False


def close_all(projects_dir: str | Path | None = None) -> None:
    """Close the sessions (of one projects folder, or all): stops their jobs and releases their databases."""
    root = None if projects_dir is None else str(Path(projects_dir).resolve())
    with _lock:
        keys = [k for k in _sessions if root is None or k[0] == root]
        closing = [_sessions.pop(k) for k in keys]
        _unvisited.difference_update(keys)
    for session in closing:
        session.close()
