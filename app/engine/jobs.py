"""Background jobs (embedding, training) with progress, cancel and kept errors."""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from app.core.errors import AppError
from app.core.progress import ProgressFn

log = logging.getLogger(__name__)

JobFn = Callable[[ProgressFn, threading.Event], Any]

RUNNING = "running"
DONE = "done"
FAILED = "failed"
CANCELLED = "cancelled"


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job, safe to hand to any thread.

    Attributes:
        progress: fraction done, 0 to 1.
        message: what the job is doing now, or why it failed.
        error: the user-facing error message when the job failed.
    """

    id: int
    kind: str
    state: str = RUNNING
    progress: float = 0.0
    message: str = "Starting"
    error: str | None = None
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: Any = None

    @property
    def active(self) -> bool:
        return self.state == RUNNING


class JobRunner:
    """Runs one job at a time per kind on a daemon thread; the caller polls `status`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._status: dict[str, JobStatus] = {}
        self._stops: dict[str, threading.Event] = {}
        self._threads: dict[str, threading.Thread] = {}

    def start(self, kind: str, fn: JobFn) -> JobStatus:
        """Start `fn(progress, stop_event)` unless a job of this kind is already running (then return that one)."""
        with self._lock:
            current = self._status.get(kind)
            if current is not None and current.active:
                return current
            status = JobStatus(id=next(self._ids), kind=kind)
            stop = threading.Event()
            self._status[kind] = status
            self._stops[kind] = stop
            thread = threading.Thread(target=self._run, args=(kind, status.id, fn, stop), daemon=True)
            self._threads[kind] = thread
        thread.start()
        return status

    def status(self, kind: str) -> JobStatus | None:
        """The latest job of this kind, running or finished."""
        with self._lock:
            return self._status.get(kind)

    def cancel(self, kind: str) -> None:
        """Ask the running job of this kind to stop at its next checkpoint."""
        with self._lock:
            stop = self._stops.get(kind)
        if stop is not None:
            stop.set()

    def wait(self, kind: str, timeout: float | None = None) -> JobStatus | None:
        """Block until the job of this kind ends (for scripts and tests)."""
        with self._lock:
            thread = self._threads.get(kind)
        if thread is not None:
            thread.join(timeout)
        return self.status(kind)

    def _update(self, kind: str, job_id: int, **changes: Any) -> None:
        with self._lock:
            current = self._status.get(kind)
            if current is not None and current.id == job_id:
                self._status[kind] = replace(current, **changes)

    def _run(self, kind: str, job_id: int, fn: JobFn, stop: threading.Event) -> None:
        def progress(fraction: float, message: str) -> None:
            self._update(kind, job_id, progress=max(0.0, min(1.0, float(fraction))), message=message)

        try:
            result = fn(progress, stop)
        except AppError as exc:
            self._update(kind, job_id, state=FAILED, error=str(exc), message=str(exc), finished=time.time())
        except Exception as exc:  # a bug or an unexpected library error: keep it, never crash the server
            log.error("Job %s failed:\n%s", kind, traceback.format_exc())
            message = f"The {kind} job failed unexpectedly ({type(exc).__name__}: {exc})."
            self._update(kind, job_id, state=FAILED, error=message, message=message, finished=time.time())
        else:
            state = CANCELLED if stop.is_set() else DONE
            message = "Cancelled" if stop.is_set() else "Done"
            self._update(kind, job_id, state=state, progress=1.0, message=message, result=result, finished=time.time())
