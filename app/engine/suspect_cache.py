"""A project's likely-wrong labels, computed in the background once per round and kept until the next round.

`refresh(session)` starts the computation (a background job of the session, kind "suspects") when what is kept
belongs to an earlier round and no round is running; `open_suspects(session)` is the kept list without the images
that a person has checked since (their current label came from a "Check labels" page: kept, or changed to the
suggestion or another label) or whose label changed otherwise. Nothing here runs on a request's thread for longer
than a store read.

Checked images are recorded in the label history itself: a "Check labels" page's annotations carry a page id that
starts with `CHECK_PAGE` (keeping a label appends the same label again), so a check survives restarts, Undo takes
it back, and the exports show it.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.engine.label_check import Suspect, cached_suspects

if TYPE_CHECKING:
    from app.engine.session import ActiveLearningSession

KIND = "suspects"
CHECK_PAGE = "check-"  # the page id prefix of a "Check labels" page's annotations


@dataclass(frozen=True)
class Kept:
    """The suspects computed for one round (`failed`: the computation failed; it is not retried in that round)."""

    round: int
    suspects: tuple[Suspect, ...]
    failed: bool = False


_kept: weakref.WeakKeyDictionary[ActiveLearningSession, Kept] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def kept(session: ActiveLearningSession) -> Kept | None:
    """What was last computed for `session` (of any round), or None."""
    with _lock:
        return _kept.get(session)


def refresh(session: ActiveLearningSession) -> bool:
    """Start computing the suspects in the background unless they are kept for the current round, a round is
    running, or they are being computed; True when a computation was started."""
    round_ = session.current_round()
    done = kept(session)
    if done is not None and done.round == round_:
        return False
    status = session.round_status()
    job = session.jobs.status(KIND)
    if (status is not None and status.active) or (job is not None and job.active):
        return False
    session.jobs.start(KIND, lambda progress, stop: _compute(session, round_))
    return True


def wait(session: ActiveLearningSession, timeout: float | None = None) -> Kept | None:
    """Block until a computation under way ends (for scripts and tests); what is kept then."""
    session.jobs.wait(KIND, timeout)
    return kept(session)


def _compute(session: ActiveLearningSession, round_: int) -> int:
    """The suspects of the images already embedded (a round embeds every image; this embeds none), from the
    labeled images' vectors alone."""
    try:
        found = cached_suspects(session.store, session.settings, session.model.cache)
    except Exception:
        with _lock:
            _kept[session] = Kept(round_, (), failed=True)
        raise
    with _lock:
        _kept[session] = Kept(round_, tuple(found))
    return len(found)


def checked(session: ActiveLearningSession) -> set[int]:
    """Images whose current label was given (or kept) on a "Check labels" page."""
    newest: dict[int, str | None] = {}
    for a in session.store.history():
        if not a.undone:
            newest[a.image_id] = a.page
    return {i for i, page in newest.items() if page and page.startswith(CHECK_PAGE)}


def open_suspects(session: ActiveLearningSession) -> list[Suspect]:
    """The kept suspects still to check, most suspicious first: not checked, and still labeled as when computed."""
    done = kept(session)
    if done is None or not done.suspects:
        return []
    current = session.store.current_labels()
    seen = checked(session)
    return [s for s in done.suspects if current.get(s.image_id) == s.label and s.image_id not in seen]
