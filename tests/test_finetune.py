"""Fine-tune mode: the whole backbone trains with timm's augmentation, the pool is re-embedded by it, and the tuned
model survives a restart. Tiny random backbone on real digit images."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from app.core.images import load_rgb
from app.core.settings import FINETUNE_EPOCHS, ProjectSettings
from app.engine.demo import write_digits
from app.engine.session import ActiveLearningSession
from lit_models.backbones import BackboneSpec, eval_transform, load_backbone
from lit_models.embed import embed_paths
from lit_models.export import build_classifier, load_classifier_checkpoint
from lit_models.finetune import finetune, load_backbone_weights, save_backbone_weights, split_classifier
from lit_models.train import predict_proba, train_head
from lit_models.trainer import CPU

FINETUNE = ProjectSettings(
    backbone="test_efficientnet",
    backbone_source="random",
    image_size=32,
    mode="finetune",
    max_epochs=1,
    batch_size=8,
)
NAMES = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from sklearn.datasets import load_digits

    paths = write_digits(tmp_path_factory.mktemp("digits"), size=32, limit=80)
    return paths, load_digits().target[:80]


@pytest.fixture(scope="module")
def tiny_backbone():
    return load_backbone(BackboneSpec(arch="test_efficientnet", source="random", image_size=32))


def _label_batch(session: ActiveLearningSession, truth: dict[str, str]) -> None:
    """Label the pending batch straight in the store (no background round starts)."""
    for item in session.batch():
        if item.status == "pending":
            session.store.add_annotation(item.image_id, truth[session.store.get_image(item.image_id).original_name])


def _labeled_project(tmp_path, name: str, digits) -> tuple[ActiveLearningSession, dict[str, str]]:
    """A fine-tune project on the digits with its first batch labeled by the truth (no round run yet), and the
    truth by file name."""
    paths, y = digits
    truth = {p.name: str(t) for p, t in zip(paths, y, strict=True)}
    session = ActiveLearningSession.create(tmp_path, name, NAMES, FINETUNE)
    session.add_data(paths)
    session.ensure_batch()
    _label_batch(session, truth)
    return session, truth


def _all_probs(session: ActiveLearningSession) -> np.ndarray:
    ids = session.store.image_ids()
    probs = [session.predictions(i) for i in ids]
    assert all(p is not None for p in probs)
    return np.array([[p[n] for n in NAMES] for p in probs])


def test_settings_default_to_a_few_fine_tune_epochs() -> None:
    assert ProjectSettings(mode="finetune").finetune_epochs == FINETUNE_EPOCHS
    assert FINETUNE.finetune_epochs == 1
    with pytest.raises(ValueError, match="epochs"):
        ProjectSettings(max_epochs=0)


def test_split_classifier_gives_back_backbone_and_head(digits, tiny_backbone, tmp_path) -> None:
    paths, y = digits
    x = embed_paths(tiny_backbone, paths[:20])
    head = train_head(x, y[:20], 10)
    tuned, tuned_head = split_classifier(build_classifier(tiny_backbone, head, NAMES), tiny_backbone, head)
    assert tuned.model is not tiny_backbone.model and tuned.arch == tiny_backbone.arch
    np.testing.assert_allclose(embed_paths(tuned, paths[:20]), x, atol=1e-6)
    np.testing.assert_allclose(predict_proba(tuned_head, x), predict_proba(head, x), atol=1e-6)

    save_backbone_weights(tuned, tmp_path / "b.safetensors")
    loaded = load_backbone_weights(tiny_backbone, tmp_path / "b.safetensors")
    for a, b in zip(tuned.model.state_dict().values(), loaded.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.slow
def test_finetune_trains_the_backbone_and_leaves_the_inputs_alone(digits, tiny_backbone) -> None:
    paths, y = digits
    x = embed_paths(tiny_backbone, paths)
    head = train_head(x[:24], y[:24], 10)
    before = [p.detach().clone() for p in tiny_backbone.model.parameters()]
    messages: list[str] = []

    tuned, tuned_head = finetune(
        tiny_backbone, head, NAMES, paths[:24], y[:24].tolist(), max_epochs=1, batch_size=8, lr=1e-3,
        progress=lambda f, m: messages.append(m), compute=CPU,
    )  # fmt: skip

    assert all(torch.equal(a, b) for a, b in zip(before, tiny_backbone.model.parameters(), strict=True))
    assert not np.allclose(embed_paths(tuned, paths), x, atol=1e-4)
    assert not torch.equal(tuned_head.net.weight, head.net.weight)
    assert tuned_head.hparams.num_classes == 10 and not tuned.model.training
    assert any("epoch 1/1" in m for m in messages)
    probs = predict_proba(tuned_head, embed_paths(tuned, paths))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_fine_tune_round_re_embeds_selects_and_survives_a_restart(digits, tmp_path) -> None:
    session, truth = _labeled_project(tmp_path, "ft", digits)
    messages: list[str] = []

    metrics = session.run_round(progress=lambda f, m: messages.append(m))

    ids = session.store.image_ids()
    model = session.model
    assert model.is_finetuned() and metrics["labeled"] == 8
    assert model.current_cache().directory.name == f"{model.spec.key()}-ft-round0001"
    frozen, tuned = model.cache.get(ids), model.current_cache().get(ids)
    assert frozen.shape == tuned.shape and not np.allclose(frozen, tuned, atol=1e-3)
    assert any(m.startswith("Fine-tuning the whole model") for m in messages)
    assert any(m.startswith("Re-embedding every image") for m in messages)
    probs = _all_probs(session)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    batch = session.batch()
    assert len(batch) == 8 and all(b.status == "pending" for b in batch)
    assert not {b.image_id for b in batch} & set(session.store.current_labels())
    assert {b.strategy for b in batch} != {"cold_start"}
    ckpt_dir = session.store.root / "checkpoints"
    assert (ckpt_dir / "round_0001_backbone.safetensors").is_file()
    # the current backbone is the tuned one: it reproduces the tuned cache (stored as float16)
    some = ids[:5]
    again = embed_paths(model.current_backbone(), [session.store.image_path(i) for i in some])
    np.testing.assert_allclose(again, model.current_cache().get(some), atol=2e-2, rtol=1e-2)
    # exports hold the tuned model: the exported checkpoint predicts what the app shows
    classifier = load_classifier_checkpoint(session.export("ckpt"))
    transform = eval_transform(classifier.hparams.data_config)
    images = torch.stack([transform(load_rgb(session.store.image_path(i))) for i in some])
    with torch.no_grad():
        exported = classifier(images).softmax(dim=1).numpy()
    np.testing.assert_allclose(exported, probs[: len(some)], atol=2e-2)

    session.close()
    reopened = ActiveLearningSession.open(tmp_path, "ft")
    assert reopened.model.is_finetuned()
    np.testing.assert_allclose(_all_probs(reopened), probs, atol=1e-5)
    restored = embed_paths(reopened.model.current_backbone(), [reopened.store.image_path(i) for i in some])
    np.testing.assert_allclose(restored, again, atol=1e-5)

    # labeling the batch (as the UI does) starts the next round in the background: it replaces the tuned backbone
    # and its embeddings; a stopped round leaves nothing behind
    for item in reopened.batch():
        reopened.label(item.image_id, truth[reopened.store.get_image(item.image_id).original_name])
    status = reopened.jobs.wait("round", 120)
    assert status.state == "done", status.error
    assert reopened.model.current_cache().directory.name.endswith("-ft-round0002")
    assert sorted(p.name for p in ckpt_dir.glob("*.safetensors")) == ["round_0002_backbone.safetensors"]
    tuned_dirs = sorted(p.name for p in (reopened.store.root / "embeddings").glob("*-ft-*"))
    assert tuned_dirs == [f"{model.spec.key()}-ft-round0002"]
    before = _all_probs(reopened)

    _label_batch(reopened, truth)
    for stage in ("Fine-tuning", "Re-embedding"):
        stop = threading.Event()

        def stop_at(_fraction: float, message: str, stage: str = stage, stop: threading.Event = stop) -> None:
            if message.startswith(stage):
                stop.set()

        assert reopened.run_round(progress=stop_at, stop_event=stop) == {"cancelled": True}, stage
        assert reopened.store.current_round() == 2
        assert sorted(p.name for p in (reopened.store.root / "embeddings").glob("*-ft-*")) == tuned_dirs
        np.testing.assert_allclose(_all_probs(reopened), before, atol=0)
    reopened.close()


@pytest.mark.slow
def test_on_zero_gpu_a_fine_tune_round_trains_and_embeds_inside_gpu_calls(digits, tmp_path, monkeypatch) -> None:
    from app.engine import gpu
    from tests.test_space import StandInSpaces

    stand_in = StandInSpaces()
    monkeypatch.setattr(gpu, "run_on_gpu", gpu.make_runner({"SPACES_ZERO_GPU": "1"}, load=lambda _name: stand_in))
    session, _ = _labeled_project(tmp_path, "ft-gpu", digits)
    session.run_round()
    session.close()
    assert "finetune" in stand_in.calls
    assert stand_in.calls.count("embed_paths") >= 2  # the pool once frozen, then again by the tuned backbone
