"""Honest checkpoints: loading one says what becomes active, the status line and exports name the active model, a
restart keeps it, labels are never rolled back, and a round trained afterwards makes its new model active."""

from __future__ import annotations

import html
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.engine.demo import write_digits
from app.engine.exports import MODEL_INFO
from app.engine.model_state import ACTIVE_SETTING, ActiveModel
from app.engine.session import ActiveLearningSession
from app.ui.views import status_html
from tests.ui_support import DIGITS, TINY, true_label, wait_round

pytestmark = pytest.mark.slow
BATCH = TINY.batch_size  # labels per round: round 1 is trained on 5 labels, round 2 on 10


def _label_batch(session: ActiveLearningSession) -> None:
    """Label every image of the batch with its true digit, then wait for the round that this starts."""
    while (item := session.store.claim_next("tester")) is not None:
        session.label(item.image_id, true_label(session, item.image_id), annotator="tester")
    wait_round(session)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A projects folder with one project: round 1, its model saved as checkpoint 'first', then round 2."""
    root = tmp_path_factory.mktemp("active-model")
    session = ActiveLearningSession.create(root / "projects", "digits", DIGITS, TINY)
    session.add_data(write_digits(root / "images", size=32, limit=40))
    session.ensure_batch()
    _label_batch(session)
    assert session.save_checkpoint("first") == "first"
    _label_batch(session)
    assert session.current_round() == 2
    session.close()
    return root / "projects"


@pytest.fixture
def projects(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template's projects folder, for one test."""
    return Path(shutil.copytree(template, tmp_path / "projects"))


def _open(projects: Path) -> ActiveLearningSession:
    return ActiveLearningSession.open(projects, "digits")


def _status(session: ActiveLearningSession) -> str:
    return html.unescape(status_html(session))


def _probs(session: ActiveLearningSession, image_id: int) -> np.ndarray:
    predictions = session.predictions(image_id)
    assert predictions is not None
    return np.array(list(predictions.values()))


def test_loading_a_checkpoint_makes_it_the_active_model_in_the_status_line(projects: Path) -> None:
    session = _open(projects)
    labels = session.store.current_labels()
    assert session.model.active() == ActiveModel(2, 2 * BATCH)
    assert "loaded from checkpoint" not in _status(session)

    info = session.load_checkpoint("first")

    assert info["active"] == session.model.active() == ActiveModel(1, BATCH, "first")
    status = _status(session)
    assert "The model of round 1 (5 labels, loaded from checkpoint 'first') is active" in status
    assert "your 10 labels are kept" in status and "round 2" not in status
    assert session.store.current_labels() == labels  # a model checkpoint never rolls labels back
    session.close()


def _checkpoint_info(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)[MODEL_INFO]


def test_exports_say_which_model_they_hold(projects: Path) -> None:
    import onnxruntime as ort

    from lit_models.export import load_classifier_checkpoint

    session = _open(projects)
    newest = _checkpoint_info(session.export("ckpt"))
    assert (newest["round"], newest["labeled"], newest["checkpoint"]) == (2, 2 * BATCH, None)

    session.load_checkpoint("first")
    loaded = _checkpoint_info(session.export("ckpt"))
    assert (loaded["round"], loaded["labeled"], loaded["checkpoint"]) == (1, BATCH, "first")
    assert loaded["description"] == "The model of round 1 (5 labels, loaded from checkpoint 'first')"
    assert load_classifier_checkpoint(session.export("ckpt")).hparams.label_names == DIGITS  # still loads

    runtime = ort.InferenceSession(str(session.export("onnx")))
    assert json.loads(runtime.get_modelmeta().custom_metadata_map[MODEL_INFO])["checkpoint"] == "first"
    with zipfile.ZipFile(session.export("safetensors")) as zf:
        config = json.loads(zf.read("config.json"))
    assert config[MODEL_INFO]["checkpoint"] == "first" and config[MODEL_INFO]["round"] == 1
    assert config["label_names"] == DIGITS  # plain timm's config is unchanged
    session.close()


def test_a_restart_keeps_the_loaded_model_and_the_labels(projects: Path) -> None:
    session = _open(projects)
    image_id = session.store.image_ids()[-1]
    newest = _probs(session, image_id)
    session.load_checkpoint("first")
    loaded = _probs(session, image_id)
    assert not np.allclose(newest, loaded)  # the two models guess differently: the check below can tell them apart
    labels = session.store.current_labels()
    session.close()

    reopened = _open(projects)  # as after a restart: a new session on the same folder
    assert reopened.model.active() == ActiveModel(1, BATCH, "first")
    assert np.allclose(_probs(reopened, image_id), loaded, atol=1e-6)
    assert reopened.store.current_labels() == labels
    assert "loaded from checkpoint 'first'" in _status(reopened)
    reopened.close()


def test_a_round_after_a_load_trains_a_new_model_on_all_labels_and_makes_it_active(projects: Path) -> None:
    session = _open(projects)
    session.load_checkpoint("first")
    _label_batch(session)

    last = session.store.rounds()[-1]
    assert (last.number, last.labeled) == (3, 3 * BATCH)  # every label, not only the checkpoint's 5
    assert session.model.active() == ActiveModel(3, 3 * BATCH)
    assert "Model of round 3 ready (15 labels" in _status(session)
    assert session.store.get_setting(ACTIVE_SETTING) is None
    session.close()

    reopened = _open(projects)
    assert reopened.model.active() == ActiveModel(3, 3 * BATCH)
    reopened.close()


@pytest.mark.parametrize(
    ("checkpoint", "after_round"),
    [("first", 1), ("deleted-meanwhile", 2)],
    ids=["a-newer-round-finished-after-the-load", "the-checkpoint-is-gone"],
)
def test_a_remembered_checkpoint_that_cannot_be_active_gives_way_to_the_newest_round(
    projects: Path, checkpoint: str, after_round: int
) -> None:
    session = _open(projects)
    session.store.update_settings(**{ACTIVE_SETTING: {"checkpoint": checkpoint, "after_round": after_round}})
    session.close()

    reopened = _open(projects)
    assert reopened.model.active() == ActiveModel(2, 2 * BATCH)
    assert reopened.store.get_setting(ACTIVE_SETTING) is None
    reopened.close()


def test_the_page_says_what_loading_and_exporting_did(projects: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.ui import model_handlers, registry
    from app.ui.handlers import Handlers
    from tests.ui_support import MODELS

    shown: list[str] = []
    monkeypatch.setattr(model_handlers.gr, "Info", lambda message, *a, **k: shown.append(html.unescape(message)))
    ui = Handlers(projects, model_choices=MODELS, base_settings=TINY)
    try:
        assert ui.models.load_checkpoint("digits", "first", None) is None  # no image on screen: no guess to show
        assert shown[-1].startswith(
            "The model of round 1 (5 labels, loaded from checkpoint 'first') is now active; your 10 labels are kept."
        )
        assert "never rolls labels back" in shown[-1] and "new model on all your labels" in shown[-1]
        ui.models.export("digits", "onnx")
        assert shown[-1] == "This file holds the model of round 1 (5 labels, loaded from checkpoint 'first')."
        choices, _ = ui.models.save_checkpoint("digits", "again")
        assert ("again · round 1 · 5 labels", "again") in choices  # saved with the model's own round and labels
    finally:
        registry.close_all(projects)
