"""Embedding extraction spread over two CPU processes by Lightning's DDP gives the one-process result, in order."""

from __future__ import annotations

import numpy as np
import pytest

from lit_models.backbones import BackboneSpec, load_backbone
from lit_models.embed import embed_paths, gather_parts
from lit_models.trainer import CPU, Compute

TINY = BackboneSpec(arch="test_efficientnet", source="random", image_size=32)


@pytest.mark.slow
def test_two_cpu_processes_embed_like_one(digit_pngs, tmp_path):
    backbone = load_backbone(TINY)
    paths = digit_pngs[::9]  # 12 images of every digit: uneven over 2 processes x batches of 5
    single = embed_paths(backbone, paths, batch_size=5, compute=CPU)
    calls = []
    spread = embed_paths(
        backbone,
        paths,
        batch_size=5,
        compute=Compute(accelerator="cpu", devices=2, strategy="ddp_spawn"),
        shared_dir=tmp_path / "shared",
        progress=lambda f, m: calls.append(f),
    )
    assert spread.shape == single.shape == (len(paths), backbone.num_features)
    np.testing.assert_allclose(spread, single, atol=1e-5)
    assert not np.allclose(spread[0], spread[1])  # distinct images, distinct rows: the order is the paths' order
    assert calls[0] == 0.0 and calls[-1] == 1.0
    assert not any((tmp_path / "shared").iterdir())  # the per-process files are cleaned up


def test_gather_parts_orders_by_index_and_reports_missing_rows(tmp_path):
    np.savez(tmp_path / "part-00001-0-0000000.npz", index=np.array([2, 0]), vectors=np.array([[2.0], [0.0]]))
    np.savez(tmp_path / "part-00000-0-0000000.npz", index=np.array([1, 2]), vectors=np.array([[1.0], [2.0]]))
    np.testing.assert_array_equal(gather_parts(tmp_path, 3, 1), [[0.0], [1.0], [2.0]])
    with pytest.raises(RuntimeError, match="1 of 4 images got no embedding"):
        gather_parts(tmp_path, 4, 1)


@pytest.mark.slow
def test_a_project_set_to_two_processes_embeds_like_one(digit_pngs, tmp_path):
    from app.core.settings import ProjectSettings
    from app.engine.session import ActiveLearningSession

    base = ProjectSettings(backbone="test_efficientnet", backbone_source="random", image_size=32)
    vectors = {}
    for devices in (1, 2):
        session = ActiveLearningSession.create(
            tmp_path / "projects", f"p{devices}", ["a", "b"], base.replace(devices=devices, dist_strategy="ddp_spawn")
        )
        session.add_data([str(p) for p in digit_pngs[::20]])
        vectors[devices] = session.ensure_embeddings()
        assert session.model.cache.missing(session.store.image_ids()) == []  # cached for every later round
        session.close()
    assert vectors[2].shape == vectors[1].shape and len(vectors[1]) == len(digit_pngs[::20])
    np.testing.assert_allclose(vectors[2], vectors[1], atol=1e-5)
