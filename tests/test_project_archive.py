"""A whole project as one zip: export-project then import-project gives the same labels, history and predictions,
under a free name; crafted zips are refused with a clear message and leave nothing behind; the commands' bad input
ends in one line and exit code 2."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from app.cli import main
from app.core.archives import IngestLimits
from app.core.store import SCHEMA_VERSION
from app.engine.demo import write_digits
from app.engine.project_archive import APP_VERSION, MANIFEST
from app.engine.project_import import ProjectArchiveError, import_project
from app.engine.session import ActiveLearningSession
from tests.ui_support import DIGITS, TINY, true_label, wait_round

Entries = dict[str, bytes]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A trained project 'digits' (one round, one undone label), exported while its store is open; the zip and
    what the project held."""
    root = tmp_path_factory.mktemp("archive")
    session = ActiveLearningSession.create(root / "projects", "digits", DIGITS, TINY)
    session.add_data(write_digits(root / "images", size=32, limit=30))
    session.ensure_batch()
    while (item := session.store.claim_next("tester")) is not None:
        session.label(item.image_id, true_label(session, item.image_id), annotator="tester", seconds=1.5)
    wait_round(session)
    item = session.next_item("tester")
    session.label(item.image_id, DIGITS[0], annotator="tester")
    session.undo("tester")  # the history holds an undone label
    assert (session.store.root / "project.db-wal").stat().st_size > 0  # committed rows still in the WAL
    ids = session.store.image_ids()
    before = {
        "labels": session.store.current_labels(),
        "history": session.store.history(),
        "predictions": {i: session.predictions(i) for i in ids},
        "rounds": session.store.rounds(),
        "images": session.store.images(),
    }
    archive = shutil.copy(session.export("project_zip"), root / "digits.zip")
    session.close()
    return Path(archive), before


def _entries(archive: Path) -> Entries:
    with zipfile.ZipFile(archive) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _write(entries: Entries, path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_import_gives_the_same_labels_history_and_predictions(exported: tuple[Path, dict], tmp_path: Path) -> None:
    archive, before = exported

    found = import_project(archive, tmp_path / "elsewhere")

    assert (found.name, found.original_name, found.images, found.labeled) == ("digits", "digits", 30, 5)
    session = ActiveLearningSession.open(tmp_path / "elsewhere", "digits")
    assert session.store.current_labels() == before["labels"]
    assert session.store.history() == before["history"]
    assert any(a.undone for a in session.store.history())
    assert session.store.rounds() == before["rounds"] and session.store.images() == before["images"]
    predictions = {i: session.predictions(i) for i in session.store.image_ids()}
    assert predictions == before["predictions"] and all(p is not None for p in predictions.values())
    session.close()


def test_the_manifest_lists_versions_every_image_hash_and_every_file(exported: tuple[Path, dict]) -> None:
    archive, before = exported
    entries = _entries(archive)
    manifest = json.loads(entries[MANIFEST])

    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["app_version"] == APP_VERSION
    assert {i["sha256"] for i in manifest["images"]} == {img.sha256 for img in before["images"]}
    assert set(manifest["files"]) == set(entries) - {MANIFEST}
    assert any(name.startswith("checkpoints/") for name in entries)
    assert any(name.startswith("embeddings/") for name in entries)


def test_a_taken_name_gets_a_free_one(exported: tuple[Path, dict], tmp_path: Path) -> None:
    archive, before = exported
    projects = tmp_path / "projects"
    ActiveLearningSession.create(projects, "digits", ["a", "b"]).close()

    assert import_project(archive, projects).name == "digits 2"
    assert import_project(archive, projects).name == "digits 3"
    assert ActiveLearningSession.list_projects(projects) == ["digits", "digits 2", "digits 3"]
    session = ActiveLearningSession.open(projects, "digits 3")
    assert session.name == "digits 3" and session.store.current_labels() == before["labels"]
    session.close()


def _slip(entries: Entries) -> None:
    entries["images/../../evil.png"] = b"x"


def _changed_image(entries: Entries) -> None:
    """Other bytes for an image, with a manifest that agrees: only the database's sha256 can tell."""
    name = next(n for n in entries if n.startswith("images/"))
    entries[name] = next(data for n, data in entries.items() if n.startswith("images/") and n != name)
    manifest = json.loads(entries[MANIFEST])
    manifest["files"][name] = hashlib.sha256(entries[name]).hexdigest()
    entries[MANIFEST] = json.dumps(manifest).encode()


def _newer_manifest(entries: Entries) -> None:
    manifest = json.loads(entries[MANIFEST])
    manifest["schema_version"] = SCHEMA_VERSION + 1
    entries[MANIFEST] = json.dumps(manifest).encode()


def _no_database(entries: Entries) -> None:
    del entries["project.db"]


def _damaged_checkpoint(entries: Entries) -> None:
    name = next(n for n in entries if n.startswith("checkpoints/") and n.endswith(".json"))
    entries[name] = entries[name].replace(b"label_names", b"label_nameZ")


def _stranger(entries: Entries) -> None:
    entries["run_me.sh"] = b"echo hi"


@pytest.mark.parametrize(
    ("craft", "message"),
    [
        (_slip, "goes up with '..'"),
        (_changed_image, "does not match the sha256 in the project's database"),
        (_newer_manifest, f"newer version of the app (schema {SCHEMA_VERSION + 1}; this app knows"),
        (_no_database, "no project database (project.db)"),
        (_damaged_checkpoint, "is damaged or was changed after the export"),
        (_stranger, "'run_me.sh', which is not a file of a project"),
    ],
)
def test_crafted_zips_are_refused_and_leave_nothing_behind(
    exported: tuple[Path, dict], tmp_path: Path, craft: Callable[[Entries], None], message: str
) -> None:
    entries = _entries(exported[0])
    craft(entries)
    projects = tmp_path / "projects"
    projects.mkdir()

    with pytest.raises(ProjectArchiveError, match="The project zip was not imported") as refused:
        import_project(_write(entries, tmp_path / "crafted.zip"), projects)

    assert message in str(refused.value)
    assert list(projects.iterdir()) == [] and not (tmp_path / "evil.png").exists()


def test_a_database_of_a_newer_schema_is_refused(exported: tuple[Path, dict], tmp_path: Path) -> None:
    entries = _entries(exported[0])
    database = tmp_path / "project.db"
    database.write_bytes(entries["project.db"])
    with sqlite3.connect(database) as connection:
        connection.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    connection.close()
    entries["project.db"] = database.read_bytes()
    manifest = json.loads(entries[MANIFEST])
    manifest["files"]["project.db"] = hashlib.sha256(entries["project.db"]).hexdigest()
    entries[MANIFEST] = json.dumps(manifest).encode()

    with pytest.raises(ProjectArchiveError, match=f"schema {SCHEMA_VERSION + 5}; this app knows"):
        import_project(_write(entries, tmp_path / "newer.zip"), tmp_path / "projects")
    assert list((tmp_path / "projects").iterdir()) == []


def test_the_zip_limits_apply(exported: tuple[Path, dict], tmp_path: Path) -> None:
    with pytest.raises(ProjectArchiveError, match="holds more than 5 files"):
        import_project(exported[0], tmp_path / "projects", limits=IngestLimits(max_zip_entries=5))
    with pytest.raises(ProjectArchiveError, match="it holds 30 images and this app takes at most 10"):
        import_project(exported[0], tmp_path / "projects", limits=IngestLimits(max_pool=10))
    (tmp_path / "not.zip").write_text("hello")
    with pytest.raises(ProjectArchiveError, match="not a zip archive"):
        import_project(tmp_path / "not.zip", tmp_path / "projects")
    assert list((tmp_path / "projects").iterdir()) == []


def test_the_commands_export_and_import(
    exported: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive, before = exported
    assert main(["import-project", str(archive), "--projects-dir", str(tmp_path / "a")]) == 0
    assert "Imported project 'digits'" in capsys.readouterr().out
    out = tmp_path / "small.zip"

    assert main(["export-project", "digits", str(out), "--projects-dir", str(tmp_path / "a"), "--no-embeddings"]) == 0

    assert f"Wrote {out}" in capsys.readouterr().out
    assert not [name for name in _entries(out) if name.startswith("embeddings/")]
    assert main(["import-project", str(out), "--projects-dir", str(tmp_path / "a")]) == 0
    assert "Imported project 'digits 2'" in capsys.readouterr().out
    session = ActiveLearningSession.open(tmp_path / "a", "digits 2")
    assert session.store.current_labels() == before["labels"] and session.store.history() == before["history"]
    session.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["export-project", "nope", "out.zip"], "There is no project named 'nope'"),
        (["export-project", "digits", "out.txt"], "must be a file name ending in .zip"),
        (["export-project", "digits"], "the following arguments are required: OUT.zip"),
        (["import-project", "missing.zip"], "there is no file 'missing.zip'"),
        (["import-project", "crafted.zip"], "no project database (project.db)"),
        (["import-project"], "the following arguments are required: ZIP"),
    ],
)
def test_bad_input_ends_in_one_line_and_exit_code_2(
    exported: tuple[Path, dict],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    entries = _entries(exported[0])
    _no_database(entries)
    _write(entries, tmp_path / "crafted.zip")
    import_project(exported[0], tmp_path / "projects")

    assert main([*argv, "--projects-dir", str(tmp_path / "projects")]) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert ActiveLearningSession.list_projects(tmp_path / "projects") == ["digits"]


def test_an_imported_models_weights_move_with_the_project(tmp_path: Path) -> None:
    session = ActiveLearningSession.create(tmp_path / "laptop", "mine", ["a", "b"], TINY)
    weights = session.store.root / "model_files" / "mine.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    session.store.update_settings(settings={**TINY.to_dict(), "backbone_source": "file", "weights": str(weights)})
    archive = session.export_project(tmp_path / "mine.zip", embeddings=False)
    session.close()

    found = import_project(archive, tmp_path / "space")

    session = ActiveLearningSession.open(tmp_path / "space", found.name)
    moved = Path(session.settings.weights)
    assert moved == session.store.root / "model_files" / "mine.safetensors" and moved.read_bytes() == b"weights"
    session.close()


def test_the_page_exports_the_whole_project(exported: tuple[Path, dict], tmp_path: Path) -> None:
    from app.ui import registry
    from app.ui.handlers import Handlers
    from app.ui.panels.models import EXPORTS
    from tests.ui_support import MODELS

    assert {"all_zip", "project_zip"} <= {kind for _, kind in EXPORTS}
    import_project(exported[0], tmp_path / "projects")
    ui = Handlers(tmp_path / "projects", model_choices=MODELS, base_settings=TINY)
    try:
        download = Path(ui.models.export("digits", "project_zip"))
    finally:
        registry.close_all(ui.projects_dir)

    assert download.name == "project.zip"  # the panel hands out a private copy of it (app.ui.downloads)
    assert import_project(download, tmp_path / "projects").name == "digits 2"
