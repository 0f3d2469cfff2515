"""How errors reach the person: `gr.Error` with the engine's message, never a stack trace."""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from app.core.errors import AppError

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def plain(value: object) -> str:
    """Text for a pop-up message: Gradio shows those as HTML, so names in them (labels, files) are escaped."""
    return html.escape(str(value), quote=False)


def friendly(fn: F) -> F:
    """Turn engine errors into `gr.Error` with their message; never show a stack trace on the page."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (AppError, ValueError) as exc:
            raise gr.Error(plain(exc)) from None
        except Exception as exc:
            log.exception("Unexpected error in %s", fn.__name__)
            raise gr.Error(f"Something went wrong ({type(exc).__name__}). Please try again.") from None

    return wrapper  # type: ignore[return-value]
