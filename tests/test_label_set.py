"""Editing an open project's labels (engine and the page's handlers), and accepting the model's guess with one key."""

from __future__ import annotations

import warnings
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from app.core.errors import LabelInUseError, StoreError
from app.engine.demo import write_digits
from app.engine.session import ActiveLearningSession
from app.ui import registry
from app.ui.handlers import Handlers
from app.ui.hosting import Hosting
from app.ui.label_actions import ACCEPTED, NO_GUESS, NO_PROJECT, LabelActions, top_guess
from app.ui.visitors import HOST_ONLY
from tests.test_store import add_images
from tests.ui_support import DIGITS, MODELS, TINY


@pytest.fixture
def session(tmp_path: Path):
    s = ActiveLearningSession.create(tmp_path / "projects", "pets", ["cat", "dog", "bird"], TINY)
    yield s
    s.close()


@pytest.fixture
def ui(tmp_path: Path):
    handlers = Handlers(tmp_path / "projects", model_choices=MODELS, base_settings=TINY)
    yield handlers
    registry.close_all(handlers.projects_dir)


def error_of(call, *args) -> str:
    with pytest.raises(gr.Error) as err:
        call(*args)
    return err.value.message


# ------------------------------------------------------------------------------------------------------ engine
def test_rename_and_merge_carry_the_images_and_the_models_guesses(session: ActiveLearningSession) -> None:
    a, b, c = add_images(session.store, 3)
    session.label(a, "cat")
    session.label(b, "dog")
    session.model.label_names = ["cat", "dog", "bird"]  # a model trained on the old label set
    session.label_set.rename("cat", " kitten ")
    assert session.labels == ["kitten", "dog", "bird"]
    assert session.label_of(a) == "kitten"
    assert session.model.label_names == ["kitten", "dog", "bird"]
    session.label_set.merge("dog", "kitten")
    assert session.labels == ["kitten", "bird"]
    assert session.label_of(b) == "kitten" and session.label_counts() == {"kitten": 2, "bird": 0}
    # the model's guesses for the merged label count for the label it went into
    assert session.label_set.named(session.model.label_names, np.array([0.5, 0.3, 0.2])) == pytest.approx(
        {"kitten": 0.8, "bird": 0.2}
    )
    assert session.label_of(c) is None


def test_bad_label_changes_are_refused_with_what_to_do(session: ActiveLearningSession) -> None:
    (a,) = add_images(session.store, 1)
    session.label(a, "cat")
    with pytest.raises(StoreError, match="'dog' already exists. Merge 'cat' into 'dog'"):
        session.label_set.rename("cat", "dog")
    with pytest.raises(LabelInUseError, match="merge it into another label instead"):
        session.label_set.delete("cat")
    with pytest.raises(StoreError, match="into itself"):
        session.label_set.merge("cat", "cat")
    session.label_set.delete("bird")  # never used
    assert session.labels == ["cat", "dog"]
    with pytest.raises(StoreError, match="at least two labels"):
        session.label_set.delete("dog")
    with pytest.raises(StoreError, match="at least two labels"):
        session.label_set.merge("dog", "cat")
    assert session.labels == ["cat", "dog"]
    # a deleted label's output is left out of the guesses
    assert session.label_set.named(["cat", "bird", "dog"], np.array([0.6, 0.3, 0.1])) == pytest.approx(
        {"cat": 0.6, "dog": 0.1}
    )


# ------------------------------------------------------------------------------------------------------ handlers
def test_the_labels_section_says_what_went_wrong(ui: Handlers, session: ActiveLearningSession) -> None:
    actions = LabelActions(ui)
    registry.register(ui.projects_dir, session)
    (a,) = add_images(session.store, 1)
    session.label(a, "cat")
    assert error_of(actions.rename, None, "me", "cat", "x") == NO_PROJECT
    assert error_of(actions.rename, "pets", "me", None, "x") == "Choose the label to rename first."
    assert error_of(actions.rename, "pets", "me", "cat", " ") == "Type the new name for 'cat' first."
    assert "called 'cat' already" in error_of(actions.rename, "pets", "me", "cat", "cat")
    assert "Merge 'cat' into 'dog' instead" in error_of(actions.rename, "pets", "me", "cat", "dog")
    assert "used by 1 annotation; merge it" in error_of(actions.delete, "pets", "me", "cat")
    assert "into itself" in error_of(actions.merge, "pets", "me", "cat", "cat")
    assert error_of(actions.merge, "pets", "me", "cat", None) == "Choose the label to merge 'cat' into."
    assert error_of(actions.add, "pets", "me", " ") == "Type the name of the new label first."
    assert "'dog' already exists" in error_of(actions.add, "pets", "me", "dog")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the gr.Info of each change (no page to show it)
        assert actions.rename("pets", "me", "cat", "kitten") == "kitten"
        assert actions.add("pets", "me", "fish, owl") == ["kitten", "dog", "bird", "fish", "owl"]
        assert actions.delete("pets", "me", "owl") == ["kitten", "dog", "bird", "fish"]
        assert actions.merge("pets", "me", "kitten", "dog") == ["dog", "bird", "fish"]
    assert session.label_of(a) == "dog"
    summary = actions.summary("pets")
    assert "dog: **1**" in summary and "Never used (can be deleted): bird, fish" in summary


def test_only_the_host_edits_the_labels_of_a_shared_project(tmp_path: Path) -> None:
    projects = tmp_path / "projects"
    ActiveLearningSession.create(projects, "crowd", ["red", "blue", "green"], TINY).close()
    hosting = Hosting(shared_project="crowd", host_password="pw")
    h = Handlers(projects, model_choices=MODELS, base_settings=TINY, hosting=hosting)
    try:
        actions = LabelActions(h)
        _, visitor = h.visitors.arrive(None, None)
        _, host = h.visitors.arrive(None, None)
        assert h.visitors.sign_in_host(host, "pw")
        ref = h.sessions.ref(visitor, "crowd")
        for call, args in [
            (actions.rename, ("red", "crimson")),
            (actions.merge, ("red", "blue")),
            (actions.delete, ("green",)),
            (actions.add, ("pink",)),
        ]:
            assert error_of(call, ref, visitor, *args) == HOST_ONLY
        assert h.sessions.get(ref).labels == ["red", "blue", "green"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert actions.rename(h.sessions.ref(host, "crowd"), host, "red", "crimson") == "crimson"
        assert h.sessions.get(ref).labels == ["crimson", "blue", "green"]
    finally:
        registry.close_all(h.projects_dir)


def test_accept_labels_the_image_with_the_guess_and_undo_takes_it_back(ui: Handlers, tmp_path: Path) -> None:
    files = write_digits(tmp_path / "digits", size=32, limit=20)
    session = ActiveLearningSession.create(ui.projects_dir, "digits", DIGITS, TINY)
    session.add_data([str(f) for f in files])
    registry.register(ui.projects_dir, session)
    session.ensure_batch()
    actions = LabelActions(ui)
    first = ui.current("digits", "me")
    with pytest.warns(UserWarning, match=NO_GUESS[:30]):
        assert actions.accept("digits", "me", first.cursor, None) is None
    assert session.store.history() == []
    assert top_guess({"3": 0.2, "7": 0.7, "1": 0.1}) == "7"
    after = actions.accept("digits", "me", first.cursor, {"3": 0.2, "7": 0.7, "1": 0.1})
    assert after is not None and after.image_id != first.image_id
    (made,) = session.store.history()
    assert (made.image_id, made.label, made.method) == (first.image_id, "7", ACCEPTED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = ui.undo("digits", "me", after.cursor)
    assert back.image_id == first.image_id and session.label_of(first.image_id) is None
