"""CSV cells a spreadsheet would run as a formula are written as text (the OWASP CSV-injection rule)."""

from __future__ import annotations

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize_cell(value: object) -> object:
    """`value` with a leading ``'`` when it is text starting with a formula character; anything else as is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
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
    """`frame` as CSV text for people and spreadsheets: neutralized cells, no index, CRLF row ends.

    CRLF (RFC 4180) also makes the writer quote any cell holding a carriage return, so a name with one cannot
    split its row. Write the text without newline translation (``newline=""``).
    """
    return neutralize_frame(frame).to_csv(index=False, lineterminator="\r\n")
