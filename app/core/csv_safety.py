"""CSV cells a spreadsheet would run as a formula are written as text (the OWASP CSV-injection rule)."""

from __future__ import annotations

import csv
import unicodedata

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Spreadsheets also read the fullwidth forms (as typed with an East Asian input method) as formula starts.
FULLWIDTH_STARTS = ("\uff1d", "\uff0b", "\uff0d", "\uff20")
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Cf"})  # spaces (also NBSP, ideographic) and format characters (ZWSP, BOM)


def _first_visible(text: str) -> str:
    """The first character of `text` that is not a space, a tab, a line break or an invisible format character."""
    for char in text:
        if char not in "\t\r\n" and unicodedata.category(char) not in _INVISIBLE_CATEGORIES:
            return char
    return ""


def neutralize_cell(value: object) -> object:
    """`value` with a leading ``'`` when it is text a spreadsheet could run as a formula; anything else as is.

    That is text starting with a tab or a carriage return, or whose first visible character (after spaces and
    invisible characters such as NBSP, zero-width space or a byte-order mark) is ``= + - @`` or a fullwidth form.
    """
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_STARTS) or _first_visible(value) in FORMULA_STARTS + FULLWIDTH_STARTS:
        return "'" + value
    return value


def neutralize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` whose text cells and column names are neutralized; numeric columns stay numbers."""
    safe = frame.copy()
    for column in safe.columns:
        values = safe[column]
        if pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values):
            safe[column] = values.map(neutralize_cell)
    safe.columns = [neutralize_cell(name) for name in safe.columns]
    return safe


def safe_csv_text(frame: pd.DataFrame) -> str:
    """`frame` as CSV text for people and spreadsheets: neutralized cells, every cell quoted, no index, CRLF row ends.

    Quoting every cell keeps a ``,`` or ``;`` inside a cell from splitting it, whichever separator the spreadsheet
    assumes (Excel in many European locales splits on ``;``), so no part of a cell can start a cell of its own.
    CRLF (RFC 4180) row ends; a carriage return inside a cell stays inside its quotes. Write the text without
    newline translation (``newline=""``).
    """
    return neutralize_frame(frame).to_csv(index=False, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
