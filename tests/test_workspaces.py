"""Private workspaces: made on a first visit from the template, kept while used, removed when idle, capped."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app.core import tokens
from app.engine.workspaces import LAST_SEEN, WorkspaceError, WorkspaceLimits, Workspaces


def _template(root: Path) -> Path:
    project = root / "templates" / "demo"
    (project / "images" / "ab").mkdir(parents=True)
    (project / "images" / "ab" / "abcd.png").write_bytes(b"image bytes")
    (project / "project.db").write_bytes(b"database")
    return project


def _id() -> str:
    return tokens.token_id(tokens.new_token())


def test_a_new_visitor_gets_a_copy_of_the_template_and_changing_it_leaves_the_template(tmp_path: Path) -> None:
    template = _template(tmp_path)
    spaces = Workspaces(tmp_path, templates=[template])
    folder = spaces.open(_id())
    copy = folder / "demo"
    assert (copy / "images" / "ab" / "abcd.png").read_bytes() == b"image bytes"
    (copy / "project.db").write_bytes(b"the visitor's own labels")
    assert (template / "project.db").read_bytes() == b"database"
    assert (
        os.stat(copy / "images" / "ab" / "abcd.png").st_ino == os.stat(template / "images" / "ab" / "abcd.png").st_ino
    )


def test_only_ids_the_server_made_name_a_workspace(tmp_path: Path) -> None:
    spaces = Workspaces(tmp_path)
    for bad in ("../../etc", "", "ABCDEF0123456789abcdef01", "0" * 23, "0" * 24 + "/x"):
        with pytest.raises(WorkspaceError):
            spaces.folder(bad)


def test_an_idle_workspace_is_removed_after_its_time_and_a_used_one_is_kept(tmp_path: Path) -> None:
    closed: list[Path] = []
    spaces = Workspaces(tmp_path, WorkspaceLimits(idle_hours=1.0), on_remove=closed.append)
    idle, used = spaces.open(_id()), spaces.open(_id())
    two_hours_ago = time.time() - 7200
    os.utime(idle / LAST_SEEN, (two_hours_ago, two_hours_ago))
    assert spaces.sweep() == [idle.name]
    assert not idle.exists() and used.exists()
    assert closed == [idle]  # its open projects were closed first


def test_a_full_server_tells_a_new_visitor_to_come_back_and_keeps_everyone_elses(tmp_path: Path) -> None:
    spaces = Workspaces(tmp_path, WorkspaceLimits(max_workspaces=2, idle_hours=48))
    first, second = _id(), _id()
    spaces.open(first)
    spaces.open(second)
    with pytest.raises(WorkspaceError, match="already keeps 2 visitors' workspaces.*Come back later"):
        spaces.open(_id())
    assert spaces.open(first).is_dir()  # a known visitor still gets in
    assert sorted(spaces.ids()) == sorted([first, second])


def test_limits_come_from_the_environment_with_a_clear_message(tmp_path: Path) -> None:
    limits = WorkspaceLimits.from_env({"ALABEL_MAX_WORKSPACES": "5", "ALABEL_WORKSPACE_IDLE_HOURS": "12"})
    assert (limits.max_workspaces, limits.idle_hours) == (5, 12.0)
    assert WorkspaceLimits.from_env({}) == WorkspaceLimits()
    with pytest.raises(ValueError, match="ALABEL_MAX_WORKSPACES must be a positive number"):
        WorkspaceLimits.from_env({"ALABEL_MAX_WORKSPACES": "-1"})


def test_a_project_started_after_the_workspace_was_removed_counts_against_the_limit(tmp_path: Path) -> None:
    import gradio as gr

    from app.ui.sessions import Sessions

    spaces = Workspaces(tmp_path, WorkspaceLimits(max_workspaces=1, idle_hours=1.0))
    sessions = Sessions.at(tmp_path, spaces)
    mine, other = tokens.new_token(), tokens.new_token()
    client = tokens.join_client(mine, tokens.new_token())
    folder = spaces.open(tokens.token_id(mine))
    two_hours_ago = time.time() - 7200
    os.utime(folder / LAST_SEEN, (two_hours_ago, two_hours_ago))
    assert spaces.sweep() == [folder.name] and not folder.exists()

    assert sessions.writable(client) == folder and folder.is_dir()  # made again, within the limit
    os.utime(folder / LAST_SEEN, (two_hours_ago, two_hours_ago))
    spaces.sweep()
    spaces.open(tokens.token_id(other))  # someone else takes the only place
    with pytest.raises(gr.Error, match="already keeps 1 visitors' workspaces"):
        sessions.writable(client)
    assert not folder.exists() and spaces.ids() == [tokens.token_id(other)]
