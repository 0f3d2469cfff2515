"""The open projects of the process: a project folder copied by hand is its own project, opened once."""

from __future__ import annotations

import shutil
from pathlib import Path

from app.engine.session import ActiveLearningSession
from app.ui import registry
from tests.ui_support import TINY


def test_a_copied_project_folder_is_its_own_project_and_opens_once(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    ActiveLearningSession.create(projects, "birds", ["a", "b"], TINY).close()
    shutil.copytree(projects / "birds", projects / "birds-backup")  # keeps the name it was made with inside
    try:
        original = registry.get(projects, "birds")
        copy = registry.get(projects, "birds-backup")
        assert copy is not original and copy.folder_name == "birds-backup"
        assert registry.get(projects, "birds-backup") is copy  # not opened again on every request
        assert registry.get(projects, "birds") is original
    finally:
        registry.close_all(projects)
