"""A whole project as one zip through the page: Export project then Import project gives the same labels, history
and predictions under a free name; crafted zips are refused with a message that says what to do and nothing is
created; the project lands in the visitor's own workspace (within the server's limits), and on a shared project
only the host imports or exports."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import sqlite3
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from app.core.store import SCHEMA_VERSION
from app.engine.demo import write_digits
from app.engine.project_archive import MANIFEST
from app.engine.session import ActiveLearningSession
from app.engine.workspaces import WorkspaceLimits
from app.ui import registry
from app.ui.handlers import Handlers
from app.ui.hosting import Hosting
from app.ui.project_zips import export_zip, import_zip
from app.ui.visitors import HOST_ONLY
from tests.ui_support import DIGITS, MODELS, TINY, true_label, wait_round

Entries = dict[str, bytes]


def make_trained_project(projects: Path, images: Path, name: str = "digits") -> dict[str, Any]:
    """A project with one trained round and an undone label; returns what it holds (labels, history, predictions)."""
    session = ActiveLearningSession.create(projects, name, DIGITS, TINY)
    session.add_data(write_digits(images, size=32, limit=30))
    session.ensure_batch()
    while (item := session.store.claim_next("tester")) is not None:
        session.label(item.image_id, true_label(session, item.image_id), annotator="tester", seconds=1.5)
    wait_round(session)
    item = session.next_item("tester")
    session.label(item.image_id, DIGITS[0], annotator="tester")
    session.undo("tester")
    held = _contents(session)
    session.close()
    return held


def _contents(session: ActiveLearningSession) -> dict[str, Any]:
    ids = session.store.image_ids()
    return {
        "labels": session.store.current_labels(),
        "history": session.store.history(),
        "predictions": {i: session.predictions(i) for i in ids},
        "rounds": [(r.number, r.labeled, r.strategy) for r in session.store.rounds()],
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    """(projects folder holding 'digits', what it holds, its exported zip)."""
    root = tmp_path_factory.mktemp("page")
    held = make_trained_project(root / "projects", root / "images")
    session = ActiveLearningSession.open(root / "projects", "digits")
    archive = Path(shutil.copy(session.export("project_zip"), root / "digits.zip"))
    session.close()
    return root / "projects", held, archive


def _entries(archive: Path) -> Entries:
    with zipfile.ZipFile(archive) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _write(entries: Entries, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _slip(entries: Entries, _tmp: Path) -> None:
    entries["images/../../evil.png"] = b"x"


def _wrong_hash(entries: Entries, _tmp: Path) -> None:
    """Other bytes for an image, with a manifest that agrees: only the database's sha256 can tell."""
    name = next(n for n in entries if n.startswith("images/"))
    entries[name] = next(data for n, data in entries.items() if n.startswith("images/") and n != name)
    manifest = json.loads(entries[MANIFEST])
    manifest["files"][name] = hashlib.sha256(entries[name]).hexdigest()
    entries[MANIFEST] = json.dumps(manifest).encode()


def _newer_schema(entries: Entries, tmp: Path) -> None:
    """A database of a newer schema, with a manifest that says so."""
    database = tmp / "newer.db"
    database.write_bytes(entries["project.db"])
    with sqlite3.connect(database) as connection:
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    connection.close()
    entries["project.db"] = database.read_bytes()
    manifest = json.loads(entries[MANIFEST])
    manifest["schema_version"] = SCHEMA_VERSION + 1
    manifest["files"]["project.db"] = hashlib.sha256(entries["project.db"]).hexdigest()
    entries[MANIFEST] = json.dumps(manifest).encode()


def _settings_edit(change: Callable[[dict], None]) -> Callable[[Entries, Path], None]:
    """A database whose model settings were changed (the manifest's hash made to agree)."""

    def craft(entries: Entries, tmp: Path) -> None:
        database = tmp / "edited.db"
        database.write_bytes(entries["project.db"])
        with sqlite3.connect(database) as connection:
            settings = json.loads(connection.execute("SELECT value FROM settings WHERE key='settings'").fetchone()[0])
            change(settings)
            connection.execute("UPDATE settings SET value=? WHERE key='settings'", (json.dumps(settings),))
        connection.close()
        entries["project.db"] = database.read_bytes()
        manifest = json.loads(entries[MANIFEST])
        manifest["files"]["project.db"] = hashlib.sha256(entries["project.db"]).hexdigest()
        entries[MANIFEST] = json.dumps(manifest).encode()

    return craft


_WEIGHTS_ELSEWHERE = _settings_edit(lambda s: s.update(backbone_source="file", weights="/etc/passwd"))
_SERVER_FOLDER = _settings_edit(lambda s: s.update(backbone_source="hub", backbone="local-dir:/srv/models"))

CRAFTED = [
    (_slip, "goes up with '..'", "Export the project again with this app"),
    (_wrong_hash, "does not match the sha256 in the project's database", "Export the project again"),
    (_newer_schema, f"newer version of the app (schema {SCHEMA_VERSION + 1}", "Update the app"),
    (_WEIGHTS_ELSEWHERE, "its model file points outside the project ('/etc/passwd')", "Export the project again"),
    (_SERVER_FOLDER, "its model is a folder of the computer it was made on", "Start from your own model"),
]


# ------------------------------------------------------------------------------------------------ over HTTP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained: tuple[Path, dict[str, Any], Path]) -> Iterator[str]:
    from app.ui.layout import build_demo
    from app.ui.server import launch_kwargs

    demo = build_demo(trained[0], model_choices=MODELS, base_settings=TINY)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True, **launch_kwargs()
    )
    try:
        yield url
    finally:
        demo.close()
        registry.close_all(trained[0])


def _value(update: Any) -> Any:
    return update.get("value") if isinstance(update, dict) and update.get("__type__") == "update" else update


def test_export_then_import_through_the_page_gives_the_same_project(
    server: str, trained: tuple[Path, dict[str, Any], Path]
) -> None:
    from gradio_client import Client, handle_file

    projects, held, _ = trained
    client = Client(server, verbose=False)
    try:
        client.predict(api_name="/init")
        client.predict("digits", api_name="/open_project")
        download = Path(_value(client.predict(api_name="/export_project")))
        assert download.name == "digits.zip" and zipfile.is_zipfile(download)

        out = client.predict(handle_file(str(download)), api_name="/import_project")
        box, dropdown, image, *_, report, cleared = out
        assert box == "digits 2" and _value(dropdown) == "digits 2" and "digits 2" in dropdown["choices"][-1]
        assert "Imported 'digits 2' (the name 'digits' was taken" in report and "30 images, 5 labeled" in report
        assert "<img" in _value(image) and _value(cleared) is None
    finally:
        client.close()
    imported = registry.get(projects, "digits 2")
    assert _contents(imported) == held  # identical labels, history, rounds and predictions
    assert all(p is not None for p in held["predictions"].values())


@pytest.mark.parametrize(("craft", "reason", "what_to_do"), CRAFTED)
def test_a_crafted_zip_uploaded_in_the_page_is_refused_and_nothing_is_created(
    server: str,
    trained: tuple[Path, dict[str, Any], Path],
    tmp_path: Path,
    craft: Callable[[Entries, Path], None],
    reason: str,
    what_to_do: str,
) -> None:
    from gradio_client import Client, handle_file

    projects, _, archive = trained
    entries = _entries(archive)
    craft(entries, tmp_path)
    before = sorted(p.name for p in projects.iterdir())
    client = Client(server, verbose=False)
    try:
        client.predict(api_name="/init")
        out = client.predict(handle_file(str(_write(entries, tmp_path / "digits.zip"))), api_name="/import_project")
    finally:
        client.close()
    report = out[-2]
    assert report.startswith("**The project zip was not imported:** ")
    assert reason in report and what_to_do in report
    assert sorted(p.name for p in projects.iterdir()) == before  # no project, no staging folder left
    assert not (tmp_path / "evil.png").exists() and not (projects.parent / "evil.png").exists()


# ------------------------------------------------------------------------------------------------ hosting
@pytest.fixture
def hosted(tmp_path: Path) -> Iterator[Callable[[Hosting], Handlers]]:
    made: list[Handlers] = []

    def make(hosting: Hosting) -> Handlers:
        made.append(Handlers(tmp_path / "server", model_choices=MODELS, base_settings=TINY, hosting=hosting))
        return made[-1]

    yield make
    for h in made:
        registry.close_all(h.projects_dir)


def test_in_private_workspaces_the_project_lands_in_the_visitors_own_workspace(
    hosted: Callable[[Hosting], Handlers], trained: tuple[Path, dict[str, Any], Path]
) -> None:
    h = hosted(Hosting(private=True))
    _, alice = h.visitors.arrive(None, None)
    _, bob = h.visitors.arrive(None, None)

    ref, view, report = import_zip(h, str(trained[2]), alice)

    assert ref is not None and ref.endswith("/digits") and view is not None and "Imported 'digits'" in report
    assert h.list_projects(alice) == ["digits"] and h.list_projects(bob) == []
    assert (h.sessions.folder(alice) / "digits" / "project.db").is_file()
    with pytest.raises(gr.Error, match="Open the project to export first"):
        export_zip(h, None, bob)  # nothing of Alice's is Bob's to export
    assert Path(export_zip(h, ref, alice)).name == "digits.zip"


def test_a_full_server_refuses_the_import_of_a_visitor_whose_workspace_is_gone(
    hosted: Callable[[Hosting], Handlers], trained: tuple[Path, dict[str, Any], Path]
) -> None:
    h = hosted(Hosting(private=True, limits=WorkspaceLimits(max_workspaces=1)))
    _, alice = h.visitors.arrive(None, None)
    shutil.rmtree(h.sessions.folder(alice))  # removed while idle, and someone else took the only place
    _, bob = h.visitors.arrive(None, None)

    with pytest.raises(gr.Error, match="already keeps 1 visitors' workspaces, its limit. Come back later"):
        import_zip(h, str(trained[2]), alice)
    assert not h.sessions.folder(alice).exists() and h.list_projects(bob) == []


def test_the_image_limit_of_a_project_applies(
    hosted: Callable[[Hosting], Handlers], trained: tuple[Path, dict[str, Any], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALABEL_MAX_POOL", "10")
    h = hosted(Hosting(private=True))
    _, alice = h.visitors.arrive(None, None)

    with pytest.raises(gr.Error, match="it holds 30 images and this app takes at most 10") as refused:
        import_zip(h, str(trained[2]), alice)
    assert "ALABEL_MAX_POOL" in str(refused.value.message) and h.list_projects(alice) == []


def test_on_a_shared_project_only_the_host_imports_and_exports(
    hosted: Callable[[Hosting], Handlers], trained: tuple[Path, dict[str, Any], Path]
) -> None:
    h = hosted(Hosting(shared_project="crowd", host_password="pw"))
    ActiveLearningSession.create(h.projects_dir, "crowd", DIGITS, TINY).close()
    _, visitor = h.visitors.arrive(None, None)
    _, host = h.visitors.arrive(None, None)
    assert h.visitors.sign_in_host(host, "pw")

    for refused in (lambda: import_zip(h, str(trained[2]), visitor), lambda: export_zip(h, "crowd", visitor)):
        with pytest.raises(gr.Error, match=HOST_ONLY):
            refused()
    assert ActiveLearningSession.list_projects(h.projects_dir) == ["crowd"]

    ref, view, report = import_zip(h, str(trained[2]), host)
    assert ref is None and view is None  # kept for the host, not opened: everyone labels the shared project
    assert "Imported 'digits'" in report and "make it the shared project" in report
    assert ActiveLearningSession.list_projects(h.projects_dir) == ["crowd", "digits"]
    assert Path(export_zip(h, "crowd", host)).name == "crowd.zip"


def test_no_file_or_another_file_type_says_what_to_choose(
    hosted: Callable[[Hosting], Handlers], tmp_path: Path
) -> None:
    h = hosted(Hosting())
    with pytest.raises(gr.Error, match="Choose a project zip first"):
        import_zip(h, None, "tab")
    other = tmp_path / "labels.csv"
    other.write_text("path,label\n")
    with pytest.raises(gr.Error, match="'labels.csv' is not a .zip file"):
        import_zip(h, str(other), "tab")
    fake = tmp_path / "photos.zip"
    fake.write_bytes(b"not a zip")
    with pytest.raises(gr.Error, match="not a zip archive"):
        import_zip(h, str(fake), "tab")
    assert h.list_projects() == []
