"""Start from your own model on the OPEN project: the same report and head rules, the labels and history stay, and
the imported model predicts from the first image shown afterwards (in the engine, after a restart, and over HTTP)."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch

from app.core.errors import ModelFileError
from app.core.images import load_rgb
from app.engine.demo import write_digits
from app.engine.model_import import ModelSource
from app.engine.model_into_project import import_into_project
from app.engine.session import ActiveLearningSession
from app.ui import registry
from app.ui.handlers import Handlers
from lit_models.backbones import eval_transform
from tests.ui_support import MODELS, TINY, TINY_MODEL, wait_round

LABELS = ["cat", "dog", "bird"]
ARCH = "test_efficientnet"


class RunsCode:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _model(classes: int, seed: int = 7) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(ARCH, num_classes=classes).eval()


def _weights(folder: Path, classes: int) -> Path:
    path = folder / f"tiny{classes}.safetensors"
    safetensors.torch.save_file(_model(classes).state_dict(), str(path))
    return path


@pytest.fixture
def project(tmp_path: Path) -> Iterator[ActiveLearningSession]:
    """An open project with 16 images, one trained round and 5 labels (the tiny random backbone of the tests)."""
    session = ActiveLearningSession.create(tmp_path / "projects", "pets", LABELS, TINY)
    session.add_data(write_digits(tmp_path / "images", size=32, limit=16))
    session.ensure_batch()
    for n, item in enumerate(session.store.batch()):
        session.label(item.image_id, LABELS[n % 3], annotator="tester", seconds=1.0)
    wait_round(session)
    yield session
    session.close()


def _own_guess(model: torch.nn.Module, session: ActiveLearningSession, image_id: int) -> dict[str, float]:
    """What the model file itself says about an image (plain timm, the project's preprocessing)."""
    config = session.model.backbone().data_config
    x = eval_transform(config)(load_rgb(session.image_path(image_id))).unsqueeze(0)
    with torch.no_grad():
        probs = model(x).softmax(dim=1)[0]
    return {label: float(p) for label, p in zip(LABELS, probs, strict=True)}


def test_a_model_imported_into_an_open_project_predicts_from_the_first_image(
    project: ActiveLearningSession, tmp_path: Path
) -> None:
    labels, history, rounds = project.store.current_labels(), project.store.history(), project.current_round()
    shown = project.next_item("tab-1")
    assert shown is not None
    before = project.predictions(shown.image_id)

    check = import_into_project(project, ModelSource(ARCH, str(_weights(tmp_path, 3)), image_size=32))

    assert check.head == "kept" and check.labels == LABELS and "5 labels stay" in check.markdown()
    assert project.store.current_labels() == labels and project.store.history() == history
    assert project.current_round() == rounds and project.labels == LABELS
    item = project.next_item("tab-1")  # the first image shown afterwards
    guess = project.predictions(item.image_id)
    expected = _own_guess(_model(3), project, item.image_id)
    assert guess is not None and guess.keys() == expected.keys()
    assert all(abs(guess[k] - expected[k]) < 2e-3 for k in LABELS), (guess, expected)
    assert guess != before or item.image_id != shown.image_id
    assert project.model.active().describe() == "the imported model"
    assert project.settings.backbone_source == "file"
    assert Path(project.settings.weights).parent == project.store.root / "model_files"

    root, image_id = project.store.root, item.image_id
    project.close()
    again = ActiveLearningSession.open(root.parent, "pets")  # a restart keeps the imported model active
    try:
        assert again.model.active().describe() == "the imported model"
        restored = again.predictions(image_id)
        assert restored is not None and all(abs(restored[k] - guess[k]) < 1e-5 for k in LABELS)
    finally:
        again.close()


def test_other_classes_get_a_new_head_trained_on_the_projects_labels_at_once(
    project: ActiveLearningSession, tmp_path: Path
) -> None:
    labels, rounds = project.store.current_labels(), project.current_round()

    check = import_into_project(project, ModelSource(ARCH, str(_weights(tmp_path, 5)), image_size=32))

    report = check.markdown()
    assert check.head == "replaced" and "5 classes but the project has 3 labels" in report
    assert "a new head was trained on them with this model at once" in report
    assert project.store.current_labels() == labels and project.current_round() == rounds + 1
    item = project.next_item("tab-1")
    guess = project.predictions(item.image_id)
    assert guess is not None and set(guess) == set(LABELS)
    assert project.model.active().describe() == f"the model of round {rounds + 1} (5 labels)"


def test_a_refused_model_changes_nothing(project: ActiveLearningSession, tmp_path: Path) -> None:
    marker, evil = tmp_path / "it-ran", tmp_path / "finetuned.pth"
    torch.save({"state_dict": _model(3).state_dict(), "trainer": RunsCode(marker)}, evil)
    settings, item = project.settings, project.next_item("tab-1")
    before = project.predictions(item.image_id)

    with pytest.raises(ModelFileError, match="tries to run code"):
        import_into_project(project, ModelSource(ARCH, str(evil), image_size=32))

    assert not marker.exists() and project.settings == settings
    assert project.predictions(item.image_id) == before
    assert not (project.store.root / "model_files").exists()


def test_verify_for_the_open_project_checks_its_labels(tmp_path: Path) -> None:
    ui = Handlers(tmp_path / "projects", model_choices=MODELS, base_settings=TINY)
    try:
        ref, _ = ui.start_project("pets", "cat, dog, bird", TINY, "tab-1")
        path = str(_weights(tmp_path, 3))
        report = ui.models.verify_model(ref, ARCH, None, "", path, None, False, None, "open")
        assert "Model check passed" in report and "3: cat, dog, bird" in report and "**Classifier:** kept" in report
        refused = ui.models.verify_model(None, ARCH, None, "", path, None, False, None, "open")
        assert "Model check failed" in refused and "Open the project to put the model into first" in refused
    finally:
        registry.close_all(ui.projects_dir)


# ------------------------------------------------------------------------------------------------ over HTTP
def _shown_image(session: ActiveLearningSession, caption: str) -> int:
    """The image whose file name the caption starts with (in bold)."""
    match = re.match(r"\*\*(.+?)\*\*", caption)
    assert match, caption
    return next(i for i in session.store.image_ids() if session.store.get_image(i).original_name == match.group(1))


def _value(update):
    """The value inside a component update (gradio_client returns updates as dicts)."""
    return update.get("value") if isinstance(update, dict) and update.get("__type__") == "update" else update


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_into_the_open_project_over_http(tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    from app.ui.layout import build_demo
    from app.ui.server import launch_kwargs

    projects, weights = tmp_path / "projects", _weights(tmp_path, 3)
    images = write_digits(tmp_path / "images", size=32, limit=12)
    demo = build_demo(projects, model_choices=MODELS, base_settings=TINY)
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=_free_port(), prevent_thread_lock=True, quiet=True, **launch_kwargs()
    )
    client = Client(url, verbose=False)
    try:
        client.predict(api_name="/init")
        client.predict(
            "pets", TINY_MODEL, "", "cat\ndog\nbird", "margin", 5, 0.2, "fast", "Model default",
            api_name="/start_project",
        )  # fmt: skip
        client.predict([handle_file(str(p)) for p in images], None, "", False, api_name="/import_images")
        session = registry.get(projects, "pets")
        wait_round(session)
        assert all(session.predictions(i) is None for i in session.store.image_ids())  # no model before

        out = client.predict(
            ARCH, handle_file(str(weights)), "", "fast", False, None, api_name="/import_model_into_project"
        )
        box, _dropdown, image, caption, labels, predictions, _progress, _prefetch, report = out
        assert box == "pets" and "**Classifier:** kept" in report and "<img" in _value(image)
        assert [v for _, v in labels["choices"]] == LABELS
        shown = _value(predictions)  # the first image shown has the model's guess (a percentage once calibrated)
        assert shown is not None and shown["label"] in LABELS
        guess = session.predictions(_shown_image(session, _value(caption)))
        assert guess is not None and shown["label"] == max(guess, key=guess.__getitem__)
        assert session.settings.backbone_source == "file" and len(session.store.current_labels()) == 0
    finally:
        client.close()
        demo.close()
        registry.close_all(projects)
