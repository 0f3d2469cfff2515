"""Putting text the person or a file supplied (labels, file names, tensor keys) into Markdown as plain text."""

from __future__ import annotations

import html
import re

_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")
_EVERYWHERE = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:])")  # Markdown syntax at any place in a line
_MID_LINE = re.compile(r"([\\`*_\[\]|~])")  # syntax that acts in the middle of a line too
_PLAIN_CODE = re.compile(r"[\w .,/@+=%:-]+")


def _text(value: object, special: re.Pattern[str]) -> str:
    one_line = _LINE_BREAKS.sub(" ", str(value))
    return special.sub(r"\\\1", html.escape(one_line, quote=False))


def escape_markdown(value: object) -> str:
    """`value` as one line of Markdown that shows exactly its text: HTML and every Markdown sign escaped."""
    return _text(value, _EVERYWHERE)


def escape_inline(value: object) -> str:
    """A sentence that embeds names, for the middle of a line (after a list marker or a label).

    Escapes HTML and the signs that act mid-line (emphasis, link brackets, code, tables); leaves ``. - # + ! ( )``
    readable, as they act only at the start of a line or right after a link's ``]``, and line breaks become spaces.
    """
    return _text(value, _MID_LINE)


def code(value: object) -> str:
    """`value` shown as code: a Markdown code span for plain names, else an HTML ``<code>`` with escaped text."""
    text = str(value)
    if _PLAIN_CODE.fullmatch(text):
        return f"`{text}`"
    return f"<code>{escape_markdown(text)}</code>"
