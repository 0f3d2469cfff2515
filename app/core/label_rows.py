"""The label set inside a store transaction: look up, add, rename, merge, delete.

Annotations reference labels by id, so a rename or merge carries every annotation with it.
"""

from __future__ import annotations

import sqlite3

from app.core.errors import LabelInUseError, StoreError


def clean(name: str) -> str:
    """A label name without surrounding spaces; an empty one is refused."""
    cleaned = str(name).strip()
    if not cleaned:
        raise StoreError("A label name cannot be empty. Type a name for the label.")
    return cleaned


def label_id(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT id FROM labels WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise StoreError(f"The label '{name}' does not exist. Add it to the project first.")
    return row["id"]


def insert(conn: sqlite3.Connection, name: str) -> None:
    """Append a label at the end of the list."""
    if conn.execute("SELECT 1 FROM labels WHERE name = ?", (name,)).fetchone():
        raise StoreError(f"The label '{name}' already exists.")
    conn.execute(
        "INSERT INTO labels (name, position) VALUES (?, (SELECT COALESCE(MAX(position), -1) + 1 FROM labels))",
        (name,),
    )


def rename(conn: sqlite3.Connection, old: str, new: str) -> None:
    """Rename `old` to the (cleaned) name `new`; a name already taken asks for a merge instead."""
    found = label_id(conn, old)
    if new == old:
        return
    if conn.execute("SELECT 1 FROM labels WHERE name = ?", (new,)).fetchone():
        raise StoreError(f"The label '{new}' already exists. Merge '{old}' into '{new}' instead of renaming it.")
    conn.execute("UPDATE labels SET name = ? WHERE id = ?", (new, found))


def merge(conn: sqlite3.Connection, source: str, target: str) -> None:
    """Move every annotation of `source` to `target` and remove `source`."""
    source_id, target_id = label_id(conn, source), label_id(conn, target)
    if source_id == target_id:
        raise StoreError(f"Cannot merge the label '{source}' into itself. Pick a different target label.")
    conn.execute("UPDATE annotations SET label_id = ? WHERE label_id = ?", (target_id, source_id))
    conn.execute("DELETE FROM labels WHERE id = ?", (source_id,))


def delete(conn: sqlite3.Connection, name: str) -> None:
    """Delete an unused label; one used by any annotation (even an undone one) is refused."""
    found = label_id(conn, name)
    used = conn.execute("SELECT COUNT(*) FROM annotations WHERE label_id = ?", (found,)).fetchone()[0]
    if used:
        raise LabelInUseError(
            f"The label '{name}' is used by {used} annotation{'' if used == 1 else 's'}; "
            "merge it into another label instead of deleting it."
        )
    conn.execute("DELETE FROM labels WHERE id = ?", (found,))
