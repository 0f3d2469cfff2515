"""The UI handlers called directly (no browser, no server) on a real small project of digit PNGs."""

from __future__ import annotations

import csv
import re
import warnings
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from app.engine.demo import write_digits
from app.ui import registry
from app.ui.errors import friendly
from app.ui.handlers import CUSTOM, Handlers
from app.ui.hotkeys import HOTKEYS_JS
from app.ui.layout import build_demo
from app.ui.uploads import collect_sources, report_markdown
from app.ui.views import display_path, parse_labels
from tests.ui_support import DIGITS, MODELS, TINY, TINY_MODEL, digit_of, true_label, wait_round


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_digits(tmp_path_factory.mktemp("digits"), size=32, limit=40)


@pytest.fixture
def ui(tmp_path: Path):
    handlers = Handlers(tmp_path / "projects", model_choices=MODELS, base_settings=TINY)
    yield handlers
    registry.close_all(handlers.projects_dir)


def tiny_settings(ui: Handlers, **form):
    values = {"model": TINY_MODEL, "custom_arch": "", "strategy": "margin", "batch_size": 5, "val_split": 0.2}
    values |= {"mode": "fast", "image_size": "Model default"} | form
    return ui.form_settings(**values)


def project_with_batch(ui: Handlers, files: list[Path], name: str = "digits"):
    """A project with the digits imported and its first batch ready; returns the session."""
    ui.start_project(name, ", ".join(DIGITS), tiny_settings(ui))
    ui.import_images(name, "client-a", [str(f) for f in files], [], False)
    session = registry.get(ui.projects_dir, name)
    wait_round(session)
    return session


def message_of(excinfo: pytest.ExceptionInfo) -> str:
    return excinfo.value.message


# ------------------------------------------------------------------------------------------ forms and projects
def test_form_settings_follow_the_form(ui: Handlers) -> None:
    s = tiny_settings(ui, strategy="entropy", batch_size=7, val_split=0.3, mode="finetune", image_size="64")
    assert (s.backbone, s.backbone_source) == ("test_efficientnet", "random")
    assert (s.strategy, s.batch_size, s.audit_share, s.mode, s.image_size) == ("entropy", 7, 0.3, "finetune", 64)
    assert s.max_epochs == TINY.max_epochs  # fields the form does not show come from the base settings
    assert tiny_settings(ui).image_size is None
    custom = tiny_settings(ui, model=CUSTOM, custom_arch=" test_resnet ")
    assert custom.backbone == "test_resnet"
    with pytest.raises(gr.Error) as err:
        tiny_settings(ui, model=CUSTOM, custom_arch="")
    assert "timm model name" in message_of(err)
    with pytest.raises(gr.Error) as err:
        tiny_settings(ui, image_size="big")
    assert "number of pixels" in message_of(err)
    with pytest.raises(gr.Error) as err:
        tiny_settings(ui, val_split=0.95)
    assert "random checks must be between 0 and 0.5" in message_of(err)


def test_parse_labels_accepts_lines_and_commas() -> None:
    assert parse_labels("cat, dog\nbird\r\n\n, fish ") == ["cat", "dog", "bird", "fish"]
    assert parse_labels(None) == []


def test_start_project_reports_engine_errors_as_messages(ui: Handlers) -> None:
    name, view = ui.start_project("birds", "robin\nwren", tiny_settings(ui))
    assert name == "birds"
    assert view.image_id is None and "Add images" in view.caption
    assert view.labels == ["robin", "wren"]
    assert "birds" in ui.list_projects()
    with pytest.raises(gr.Error) as err:
        ui.start_project("birds", "a, b", tiny_settings(ui))
    assert "already exists" in message_of(err)
    with pytest.raises(gr.Error) as err:
        ui.start_project("solo", "only-one", tiny_settings(ui))
    assert "at least two labels" in message_of(err)
    with pytest.raises(gr.Error) as err:
        ui.start_project("../escape", "a, b", tiny_settings(ui))
    assert "name" in message_of(err)


def test_add_label_fills_the_box_or_the_open_project(ui: Handlers) -> None:
    text, labels = ui.add_labels(None, "", "cat\ndog", "bird, dog")
    assert parse_labels(text) == ["cat", "dog", "bird"] and labels is None
    ui.start_project("pets", text, tiny_settings(ui))
    _, labels = ui.add_labels("pets", "", text, "fish")
    assert labels == ["cat", "dog", "bird", "fish"]
    text, labels = ui.add_labels("pets", "next project", "ant", "bee")  # filling in a new project
    assert parse_labels(text) == ["ant", "bee"] and labels is None
    assert registry.get(ui.projects_dir, "pets").labels == ["cat", "dog", "bird", "fish"]
    with pytest.raises(gr.Error) as err:
        ui.add_labels("pets", "", text, "fish")
    assert "fish" in message_of(err)


def test_friendly_never_shows_a_stack_trace() -> None:
    @friendly
    def broken() -> None:
        raise KeyError("internal detail")

    with pytest.raises(gr.Error) as err:
        broken()
    assert "Something went wrong" in message_of(err)
    assert "Traceback" not in message_of(err) and "internal detail" not in message_of(err)


# ------------------------------------------------------------------------------------------ uploads
def test_import_reports_counts_and_reasons(ui: Handlers, digit_files: list[Path], tmp_path: Path) -> None:
    ui.start_project("imp", ", ".join(DIGITS), tiny_settings(ui))
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    sources = collect_sources(folder_files=[str(f) for f in digit_files[:10]], files=[str(digit_files[0])])
    report, view = ui.import_images("imp", "c1", [*sources.paths, str(notes), str(broken)], [], False)
    assert (len(report.imported), len(report.duplicates), len(report.rejected)) == (10, 1, 2)
    text = report_markdown(report)
    assert "**Imported 10**" in text and "duplicates 1" in text and "rejected 2" in text
    assert "notes.txt" in text and "broken.png" in text
    assert all(r.reason in text for r in report.rejected)
    assert view.image_id is None or view.image_path  # preparing, or already an image
    wait_round(registry.get(ui.projects_dir, "imp"))
    ready = ui.current("imp", "c1")
    assert ready.image_id is not None and Path(ready.image_path).exists()
    assert "Cold start" in ready.caption and ready.predictions is None


def test_csv_rows_find_images_uploaded_beside_it(ui: Handlers, digit_files: list[Path], tmp_path: Path) -> None:
    uploaded = []
    for i, f in enumerate(digit_files[:6]):  # the browser upload layout: <upload dir>/<hash>/<name>
        target = tmp_path / "upload" / f"h{i}" / f.name
        target.parent.mkdir(parents=True)
        target.write_bytes(f.read_bytes())
        uploaded.append(str(target))
    table = tmp_path / "upload" / "c" / "labels.csv"
    table.parent.mkdir()
    with table.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["filename", "label"])
        writer.writerows([[Path(p).name, "odd" if i % 2 else "even"] for i, p in enumerate(uploaded)])
    sources = collect_sources(files=[*uploaded, str(table)])
    assert sources.paths[-1].endswith(".matched.csv") and sources.notes
    ui.start_project("csv", "even, odd", tiny_settings(ui))
    report, _ = ui.import_images("csv", "c1", sources.paths, sources.allowed_roots, False)
    assert len(report.imported) == 6 and report.labeled == 6 and not report.rejected
    assert registry.get(ui.projects_dir, "csv").store.label_counts() == {"even": 3, "odd": 3}


def test_zip_of_class_folders_brings_its_labels(ui: Handlers, tmp_path: Path) -> None:
    import shutil

    write_digits(tmp_path / "classes", size=16, class_folders=True, limit=12)
    archive = shutil.make_archive(str(tmp_path / "digits"), "zip", tmp_path / "classes")
    ui.start_project("zip", "0, 1", tiny_settings(ui))
    sources = collect_sources(files=[archive])
    report, _ = ui.import_images("zip", "c1", sources.paths, sources.allowed_roots, True)
    assert len(report.imported) == 12 and report.labeled == 12
    assert set(report.new_labels) == {str(d) for d in range(2, 10)} & {digit_of(f"digit_{i:04d}") for i in range(12)}


def test_collect_sources_refuses_nothing_and_typed_paths_when_not_local(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="Choose a folder"):
        collect_sources()
    with pytest.raises(Exception, match="your own computer"):
        collect_sources(local_folder=str(tmp_path))
    with pytest.raises(Exception, match="does not exist"):
        collect_sources(local_folder=str(tmp_path / "missing"), allow_local_paths=True)
    assert collect_sources(local_folder=str(tmp_path), allow_local_paths=True).paths == [str(tmp_path)]


def test_tiff_images_get_a_browser_preview(ui: Handlers, tmp_path: Path) -> None:
    tiff = tmp_path / "scan.tif"
    Image.fromarray(np.arange(48 * 32, dtype=np.uint8).reshape(32, 48) % 255).save(tiff)
    ui.start_project("tif", "a, b", tiny_settings(ui))
    report, _ = ui.import_images("tif", "c1", [str(tiff)], [], False)
    shown = Path(display_path(registry.get(ui.projects_dir, "tif"), report.imported[0]))
    assert shown.suffix == ".png" and Image.open(shown).size == (48, 32)


# ------------------------------------------------------------------------------------------ labeling
def test_labeling_a_batch_trains_and_shows_predictions(ui: Handlers, digit_files: list[Path]) -> None:
    session = project_with_batch(ui, digit_files)
    view = ui.current("digits", "client-a")
    seen = []
    for _ in range(TINY.batch_size):
        assert view.image_id is not None and view.image_id not in seen
        seen.append(view.image_id)
        assert view.progress.startswith(f"Image **{len(seen)}** of")
        view = ui.submit("digits", "client-a", view.cursor, true_label(session, view.image_id))
    wait_round(session)
    assert session.store.current_round() == 1
    assert {session.store.label_of(i) for i in seen} == {true_label(session, i) for i in seen}
    assert all(a.annotator == "user#client-a" and a.seconds is not None for a in session.store.history())
    poll = ui.poll("digits", "client-a", view.cursor, "an older key")
    assert poll.refresh and poll.round == 1 and "round 1" in poll.status
    # Before random checks calibrate it, the guess panel shows the model's top label without a percentage.
    assert poll.predictions in DIGITS
    # the line under the image says so too, without waiting for the next image (it said nothing of a guess before)
    assert "Model's guess" not in view.caption and "Model's guess" in poll.caption and poll.predictions in poll.caption
    fresh = ui.current("digits", "client-a")
    assert fresh.predictions is not None and set(fresh.predictions) == set(DIGITS)
    assert abs(sum(fresh.predictions.values()) - 1.0) < 1e-4 and "Round **1**" in fresh.progress
    assert fresh.guess == max(fresh.predictions, key=fresh.predictions.get)
    assert "without a percentage" in fresh.caption or "not sure yet" in fresh.caption
    from app.ui.dashboard import build

    board = build(session)
    assert list(board.history["round"]) == [1] and board.counts["count"].sum() == TINY.batch_size
    assert "5** of 40" in board.summary


def test_submit_skip_undo_and_moving_in_the_batch(ui: Handlers, digit_files: list[Path]) -> None:
    session = project_with_batch(ui, digit_files)
    first = ui.current("digits", "me")
    with pytest.warns(UserWarning, match="Pick a label"):
        assert ui.submit("digits", "me", first.cursor, None) is None
    second = ui.submit("digits", "me", first.cursor, "3")
    assert second.image_id != first.image_id
    back = ui.move("digits", "me", second.cursor, -1)
    assert back.image_id == first.image_id and back.selected == "3"
    relabeled = ui.submit("digits", "me", back.cursor, "4")
    assert session.store.label_of(first.image_id) == "4"
    assert relabeled.image_id == second.image_id  # back to the image this tab holds
    third = ui.skip("digits", "me", relabeled.cursor)
    assert third.image_id not in (first.image_id, second.image_id)
    assert next(b for b in session.batch() if b.image_id == second.image_id).status == "skipped"
    undone = ui.undo("digits", "me", third.cursor)
    assert undone.image_id == first.image_id and undone.selected is None
    assert session.store.label_of(first.image_id) == "3"  # the relabel was taken back, the first label stays
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ui.undo("digits", "someone-else", third.cursor) is None  # nothing of theirs to undo


def test_the_image_shown_ahead_is_the_one_the_server_then_shows(ui: Handlers, digit_files: list[Path]) -> None:
    """The page shows `upcoming[0]` the moment a label is given; the server's answer must agree, within a batch,
    across its end (the batch grows while the round trains) and after a round replaces it."""
    session = project_with_batch(ui, digit_files)
    view = ui.current("digits", "tab")
    agreed = 0
    for _ in range(3 * TINY.batch_size):
        ahead = [u.image_id for u in view.upcoming]
        assert view.image_id not in ahead and len(set(ahead)) == len(ahead)
        assert all(Path(u.path).is_file() and u.name.endswith(".png") and u.small for u in view.upcoming)
        before = session.store.current_round()
        view = ui.submit("digits", "tab", view.cursor, true_label(session, view.image_id))
        assert view.image_id is not None
        if session.store.current_round() == before:  # a round ending in between may change the next pick
            assert ahead and ahead[0] == view.image_id
            agreed += 1
    assert agreed >= 2 * TINY.batch_size
    wait_round(session)
    assert session.store.current_round() >= 1
    poll = ui.poll("digits", "tab", view.cursor, "an older key")  # the round ended: the page gets the new order
    assert poll.refresh and poll.upcoming
    following = ui.submit("digits", "tab", view.cursor, true_label(session, view.image_id))
    assert following.image_id == poll.upcoming[0].image_id
    other = ui.current("digits", "other-tab")  # another tab holds an image: it is never shown ahead to this one
    mine = ui.current("digits", "tab")
    assert other.image_id not in [u.image_id for u in mine.upcoming]


def test_two_tabs_labeling_at_once_are_never_shown_the_same_next_image(ui: Handlers, digit_files: list[Path]) -> None:
    """Each tab's next image is reserved for it, so what one tab shows ahead is never handed to the other."""
    ui.start_project("two", ", ".join(DIGITS), tiny_settings(ui, batch_size=12))
    ui.import_images("two", "tab-a", [str(f) for f in digit_files], [], False)
    session = registry.get(ui.projects_dir, "two")
    wait_round(session)
    a, b = ui.current("two", "tab-a"), ui.current("two", "tab-b")
    for _ in range(4):  # 4 x 2 labels, each tab with its current and its next image: within the batch of 12
        a_next, b_next = a.upcoming[0].image_id, b.upcoming[0].image_id
        assert len({a.image_id, b.image_id, a_next, b_next}) == 4
        a = ui.submit("two", "tab-a", a.cursor, true_label(session, a.image_id))
        b = ui.submit("two", "tab-b", b.cursor, true_label(session, b.image_id))
        assert (a.image_id, b.image_id) == (a_next, b_next)


def test_a_refresh_overtaken_by_a_labeling_answer_is_left_out(
    ui: Handlers, digit_files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timer tick computed while a labeling answer was made would redraw the old image's guess and progress."""
    project_with_batch(ui, digit_files)
    view = ui.current("digits", "tab")
    assert ui.poll("digits", "tab", view.cursor, "an older key").refresh
    computed = Handlers._poll

    def overtaken(self: Handlers, *args):
        result = computed(self, *args)
        self.note_answer("tab")  # the tab's label answer is made while this tick computes
        return result

    monkeypatch.setattr(Handlers, "_poll", overtaken)
    stale = ui.poll("digits", "tab", view.cursor, "an older key")
    assert not stale.refresh and stale.view is None and "al-status" in stale.status
    assert ui.poll("digits", "other-tab", view.cursor, "an older key").refresh  # other tabs' ticks are kept


def test_two_tabs_get_different_images_and_a_tab_resumes(ui: Handlers, digit_files: list[Path]) -> None:
    session = project_with_batch(ui, digit_files)
    a = ui.current("digits", "tab-a")
    b = ui.current("digits", "tab-b")
    assert a.image_id is not None and b.image_id is not None and a.image_id != b.image_id
    assert ui.move("digits", "tab-a", a.cursor, +1).image_id != b.image_id  # tab-b's image is passed over
    ui.submit("digits", "tab-b", b.cursor, "1")
    assert session.store.label_of(b.image_id) == "1"
    registry.close_all(ui.projects_dir)  # as if the app restarted: the same tab comes back
    name, resumed = ui.open_project("digits", "tab-a")
    assert name == "digits" and resumed.image_id == a.image_id
    assert registry.get(ui.projects_dir, "digits").store.label_of(b.image_id) == "1"
    registry.close_all(ui.projects_dir)  # restarted again, and opened from another browser
    _, resumed = ui.open_project("digits", "new-browser")
    assert resumed.image_id == a.image_id


def test_checkpoints_and_exports(ui: Handlers, digit_files: list[Path]) -> None:
    session = project_with_batch(ui, digit_files)
    with pytest.raises(gr.Error) as err:
        ui.models.save_checkpoint("digits", "too-early")
    assert "no model" in message_of(err).lower()
    view = ui.current("digits", "c")
    for _ in range(TINY.batch_size):
        view = ui.submit("digits", "c", view.cursor, true_label(session, view.image_id))
    wait_round(session)
    choices, saved = ui.models.save_checkpoint("digits", "first")
    assert saved == "first" and [value for _, value in choices] == ["first"]
    predictions = ui.models.load_checkpoint("digits", "first", view.cursor)
    assert predictions is not None and set(predictions) == set(DIGITS)
    labels_csv = Path(ui.models.export("digits", "labels_csv"))
    assert labels_csv.is_file() and labels_csv.is_relative_to(ui.projects_dir / "digits")
    assert len(labels_csv.read_text().strip().splitlines()) >= TINY.batch_size + 1
    assert Path(ui.models.export("digits", "provenance_json")).is_file()
    with pytest.raises(gr.Error) as err:
        ui.models.export("digits", "nonsense")
    assert "nonsense" in message_of(err)


def test_import_model_makes_a_project_on_the_file(ui: Handlers, tmp_path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    weights = tmp_path / "my_model.safetensors"
    save_file(timm.create_model("test_efficientnet", num_classes=0).state_dict(), str(weights))
    with pytest.raises(gr.Error) as err:
        ui.models.import_model("mine", "", 3, "", None)
    assert "Choose a model" in message_of(err)
    name, view, report = ui.models.import_model("mine", "test_efficientnet", 3, "", str(weights))
    session = registry.get(ui.projects_dir, name)
    assert view.labels == ["class 1", "class 2", "class 3"]
    assert session.settings.backbone_source == "file" and session.settings.backbone == "test_efficientnet"
    copied = Path(session.settings.weights)
    assert copied.is_file() and copied.is_relative_to(ui.projects_dir / "mine")
    assert "Model check passed" in report and "new head" in report  # the file has no classifier


def test_poll_without_a_project_only_updates_the_status(ui: Handlers) -> None:
    result = ui.poll(None, "c", None, None)
    assert "Open a project" in result.status and result.view is None and not result.refresh


def test_page_has_the_named_buttons_and_hotkey_targets(tmp_path: Path) -> None:
    demo = build_demo(tmp_path / "projects", model_choices=MODELS, base_settings=TINY)
    blocks = demo.blocks.values()
    buttons = {b.value for b in blocks if isinstance(b, gr.Button)}
    assert {"Start Project", "Submit Label", "Save Checkpoint", "Import Model", "Verify Model", "Add Label"} <= buttons
    assert {"Skip", "Undo", "Load Checkpoint"} <= buttons
    ids = {b.elem_id for b in blocks if getattr(b, "elem_id", None)}
    for target in ("al-submit", "al-skip", "al-undo", "al-prev", "al-next", "al-labels", "al-panel"):
        assert target in ids and target in HOTKEYS_JS


def test_a_failing_round_reaches_the_page(ui: Handlers, digit_files: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"this is not a model file")
    settings = TINY.replace(backbone_source="file", weights=str(bad))  # Import Model would refuse it at once
    name, _ = ui.start_project("broken", "a, b", settings)
    ui.import_images(name, "c1", [str(f) for f in digit_files[:6]], [], False)
    session = registry.get(ui.projects_dir, name)
    status = session.jobs.wait("round", timeout=60)
    assert status is not None and status.state == "failed" and status.error
    with pytest.warns(UserWarning, match=re.escape(status.error[:40])):
        poll = ui.poll(name, "c1", {"image_id": None}, "an older key")
    assert "al-failed" in poll.status and "Traceback" not in poll.status
    assert poll.view is not None  # labeling goes on (images picked at random) while the status shows the failure


def test_everything_downloads_every_project_with_its_labels_history_and_model(
    ui: Handlers, digit_files: list[Path]
) -> None:
    import io
    import zipfile

    import pandas as pd

    session = project_with_batch(ui, digit_files[:12], name="first")
    for item in session.batch():
        session.label(item.image_id, DIGITS[0], annotator="ann")
    wait_round(session)
    ui.start_project("second", "a, b", tiny_settings(ui))
    with zipfile.ZipFile(ui.models.export("first", "everything")) as zf:
        names = set(zf.namelist())
        labels = zf.read("first/labels.csv").decode("utf-8")
    assert {"first/labels.csv", "first/provenance.json", "first/timm_model.zip"} <= names
    assert {"second/labels.csv", "second/provenance.json"} <= names and "second/timm_model.zip" not in names
    rows = pd.read_csv(io.StringIO(labels), dtype=str)
    labeled = session.progress()["labeled"]
    assert labeled > 0 and len(rows) == labeled and (rows["label"] == DIGITS[0]).all()
