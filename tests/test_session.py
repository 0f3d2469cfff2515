"""The engine end to end on real digit images with a tiny random backbone."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.errors import StoreError
from app.core.settings import ProjectSettings
from app.engine.demo import write_digits
from app.engine.session import ActiveLearningSession

TINY = ProjectSettings(
    backbone="test_efficientnet", backbone_source="random", image_size=32, batch_size=8, val_fraction=0.25, min_val=4
)


@pytest.fixture
def digits_project(tmp_path):
    from sklearn.datasets import load_digits

    paths = write_digits(tmp_path / "imgs", size=32, limit=120)
    truth = {p.name: str(load_digits().target[i]) for i, p in enumerate(paths)}
    session = ActiveLearningSession.create(tmp_path / "projects", "digits", [str(d) for d in range(10)], TINY)
    report = session.add_data(paths)
    assert len(report.imported) == 120
    yield session, truth
    session.close()


def _oracle_label_batch(session, truth, client="c1"):
    n = 0
    while (item := session.store.claim_next(client)) is not None:
        name = session.store.get_image(item.image_id).original_name
        session.label(item.image_id, truth[name], annotator=client, seconds=0.5)
        n += 1
    return n


def test_create_refuses_bad_names_and_labels(tmp_path):
    with pytest.raises(StoreError, match="name"):
        ActiveLearningSession.create(tmp_path, "../escape", ["a", "b"])
    with pytest.raises(StoreError, match="two labels"):
        ActiveLearningSession.create(tmp_path, "p", ["only"])
    ActiveLearningSession.create(tmp_path, "p", ["a", "b"]).close()
    with pytest.raises(StoreError, match="already exists"):
        ActiveLearningSession.create(tmp_path, "p", ["a", "b"])


@pytest.mark.slow
def test_rounds_train_predict_and_resume(digits_project, tmp_path):
    session, truth = digits_project
    first = session.ensure_batch()
    assert len(first) == 8 and sorted(b.strategy for b in first) == ["audit"] + ["cold_start"] * 7
    assert session.predictions(first[0].image_id) is None

    assert _oracle_label_batch(session, truth) == 8
    status = session.jobs.wait("round", 120)
    assert status.state == "done", status.error
    rounds = session.store.rounds()
    assert len(rounds) == 1 and rounds[0].labeled == 8
    assert rounds[0].metrics["audit_n"] == 1 and rounds[0].metrics["accuracy"] is None
    assert "Not enough random checks" in rounds[0].metrics["note"]

    batch = session.batch()
    assert len(batch) == 8 and all(b.status == "pending" for b in batch)
    assert [b.strategy for b in batch].count("audit") == 1  # one random check per batch once a model exists
    assert not {b.image_id for b in batch} & set(session.store.current_labels())
    probs = session.predictions(batch[0].image_id)
    assert set(probs) == {str(d) for d in range(10)} and abs(sum(probs.values()) - 1) < 1e-4

    for _ in range(3):
        _oracle_label_batch(session, truth)
        assert session.jobs.wait("round", 120).state == "done"
    last = session.store.rounds()[-1]
    assert last.labeled == 32 and last.metrics["audit_n"] == 4 and last.metrics["val"] == 0  # every label trains
    assert last.checkpoint and (session.store.root / last.checkpoint).exists()

    # a restart resumes the same batch and the same model
    pending = [b.image_id for b in session.batch()]
    before = session.predictions(pending[0])
    session.close()
    reopened = ActiveLearningSession.open(tmp_path / "projects", "digits")
    assert [b.image_id for b in reopened.batch()] == pending
    after = reopened.predictions(pending[0])
    assert after is not None and np.allclose(list(before.values()), list(after.values()), atol=1e-5)
    reopened.close()


@pytest.mark.slow
def test_labeling_continues_while_the_batch_is_used_up(digits_project):
    session, truth = digits_project
    session.ensure_batch()
    _oracle_label_batch(session, truth)
    session.jobs.wait("round", 120)
    # use up the batch without a round finishing: the batch grows with images picked by the current model
    for b in session.batch():
        session.store.add_annotation(b.image_id, truth[session.store.get_image(b.image_id).original_name])
    item = session.next_item("c2")
    assert item is not None and item.image_id not in session.store.current_labels()


@pytest.mark.slow
def test_undo_skip_and_two_clients(digits_project):
    session, truth = digits_project
    session.ensure_batch()
    a, b = session.next_item("tab-a"), session.next_item("tab-b")
    assert a.image_id != b.image_id
    session.label(a.image_id, "3", annotator="tab-a")
    session.skip(b.image_id)
    undone = session.undo("tab-a")
    assert undone.image_id == a.image_id and session.store.label_of(a.image_id) is None
    assert session.next_item("tab-a").image_id == a.image_id


@pytest.mark.slow
def test_checkpoint_save_list_load(digits_project):
    session, truth = digits_project
    session.ensure_batch()
    _oracle_label_batch(session, truth)
    session.jobs.wait("round", 120)
    some = session.batch()[0].image_id
    before = session.predictions(some)
    name = session.save_checkpoint("after-round-1")
    assert [c["name"] for c in session.list_checkpoints()] == [name]
    _oracle_label_batch(session, truth)
    session.jobs.wait("round", 120)
    session.load_checkpoint(name)
    assert np.allclose(list(session.predictions(some).values()), list(before.values()), atol=1e-6)


@pytest.mark.slow
def test_exports_hold_what_the_user_labeled(digits_project):
    import json
    import zipfile

    import onnxruntime as ort
    import pandas as pd

    session, truth = digits_project
    session.ensure_batch()
    _oracle_label_batch(session, truth)
    session.jobs.wait("round", 120)
    labels = session.store.current_labels()

    frame = pd.read_csv(session.export("labels_csv"), dtype=str)
    assert len(frame) == 8 and dict(zip(frame.original_name, frame.label, strict=True)) == {
        session.store.get_image(i).original_name: lab for i, lab in labels.items()
    }
    with zipfile.ZipFile(session.export("class_zip")) as zf:
        names = zf.namelist()
    assert len(names) == 8 and all(n.split("/")[0] == truth[n.split("/")[1]] for n in names)
    prov = json.loads(session.export("provenance_json").read_text())
    item = prov["images"][0]
    assert {"label", "annotator", "time", "seconds", "round", "strategy", "score"} <= set(item)
    assert item["strategy"] == "cold_start" and item["seconds"] == 0.5

    onnx_path = session.export("onnx")
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    runtime = ort.InferenceSession(str(onnx_path))
    out = runtime.run(None, {runtime.get_inputs()[0].name: x})
    assert out[0].shape == (2, 10)
    assert session.export("ckpt").exists()
    with zipfile.ZipFile(session.export("safetensors")) as zf:
        assert {"model.safetensors", "config.json"} <= set(zf.namelist())
