"""Sign-in users from --auth-file: the file's text as people save it."""

from __future__ import annotations

from pathlib import Path

from app import cli


def test_auth_file_saved_with_a_byte_order_mark_keeps_the_first_user_name(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("ann:secret\r\nbob:pw\r\n", encoding="utf-8-sig")  # as Notepad saves "UTF-8 with BOM"
    assert users.read_bytes().startswith(b"\xef\xbb\xbfann:")

    assert cli._auth_pairs([], str(users)) == [("ann", "secret"), ("bob", "pw")]
