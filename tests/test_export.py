"""Exports: plain timm (safetensors + config.json), ONNX Runtime, head and classifier checkpoints."""

from __future__ import annotations

import json
import re
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import safetensors.torch
import timm
import torch
from PIL import Image

from app.core.errors import ModelFileError
from app.engine.demo import write_digits
from app.engine.exports import MODEL_INFO
from app.engine.session import ActiveLearningSession
from lit_models.backbones import BackboneSpec, LoadedBackbone, load_backbone
from lit_models.data import EmbeddingDataModule
from lit_models.export import (
    build_classifier,
    export_onnx,
    load_classifier_checkpoint,
    load_head_checkpoint,
    onnx_metadata,
    save_classifier_checkpoint,
    save_head_checkpoint,
    save_safetensors,
    to_timm_model,
)
from lit_models.modules import BackboneWithHead, HeadClassifier
from lit_models.train import predict_proba, train_head
from lit_models.trainer import quiet_trainer
from tests.ui_support import DIGITS, true_label, wait_round
from tests.ui_support import TINY as TINY_SETTINGS

TINY = "test_efficientnet"
LABELS = ["cat", "dog", "bird"]


@pytest.fixture(scope="module")
def backbone() -> LoadedBackbone:
    return load_backbone(BackboneSpec(arch=TINY, source="random", image_size=32))


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _head(backbone: LoadedBackbone, hidden: int = 0) -> HeadClassifier:
    """A head trained on the backbone's features of random images (3 classes)."""
    with torch.no_grad():
        x = backbone.model(_images(30, seed=1)).numpy()
    return train_head(x, np.arange(30) % 3, 3, hidden=hidden)


def _logits(backbone: LoadedBackbone, head: HeadClassifier, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return head(backbone.model(images))


@pytest.mark.parametrize("hidden", [0, 8])
def test_build_classifier_equals_backbone_then_head(backbone: LoadedBackbone, hidden: int) -> None:
    head = _head(backbone, hidden)
    images = _images()

    model = build_classifier(backbone, head, LABELS)

    with torch.no_grad():
        torch.testing.assert_close(model(images), _logits(backbone, head, images), atol=1e-5, rtol=1e-5)
    assert isinstance(model, BackboneWithHead) == (hidden > 0)
    assert not model.training
    assert model is not backbone.model
    with pytest.raises(ValueError, match="2 label names for a head with 3 outputs"):
        build_classifier(backbone, head, LABELS[:2])


def test_linear_head_becomes_the_timm_classifier(backbone: LoadedBackbone) -> None:
    head = _head(backbone)

    model = to_timm_model(backbone, head)

    assert model.num_classes == 3
    torch.testing.assert_close(model.get_classifier().weight, head.net.weight)
    assert model.pretrained_cfg["label_names"] == ["class_0", "class_1", "class_2"]


def test_safetensors_export_loads_into_plain_timm(backbone: LoadedBackbone, tmp_path: Path) -> None:
    model = build_classifier(backbone, _head(backbone), LABELS)

    folder = save_safetensors(model, tmp_path / "export", backbone.arch, LABELS, backbone.data_config)

    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == TINY
    assert config["num_classes"] == 3
    assert config["label_names"] == LABELS
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    assert config["pretrained_cfg"]["crop_pct"] == 1.0
    plain = timm.create_model(config["architecture"], num_classes=config["num_classes"])
    plain.load_state_dict(safetensors.torch.load_file(str(folder / "model.safetensors")))
    plain.eval()
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(plain(images), model(images), atol=1e-5, rtol=1e-5)
        # timm's own offline loader reads the folder too, preprocessing included
        local = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        torch.testing.assert_close(local(images), model(images), atol=1e-5, rtol=1e-5)
    assert timm.data.resolve_model_data_config(local)["input_size"] == (3, 32, 32)


def test_hidden_heads_do_not_export_to_plain_timm(backbone: LoadedBackbone, tmp_path: Path) -> None:
    model = build_classifier(backbone, _head(backbone, hidden=8), LABELS)

    with pytest.raises(ModelFileError, match="Only linear heads export to plain timm"):
        save_safetensors(model, tmp_path, backbone.arch, LABELS, backbone.data_config)


@pytest.mark.slow  # the dynamo exporter takes a few seconds per model
@pytest.mark.parametrize("hidden", [0, 8])
def test_onnx_export_matches_torch(backbone: LoadedBackbone, tmp_path: Path, hidden: int) -> None:
    model = build_classifier(backbone, _head(backbone, hidden), LABELS)

    path = export_onnx(model, tmp_path / "model.onnx", backbone.data_config["input_size"])

    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # weights inside, one file
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for batch in (1, 5):  # the batch axis is dynamic
        images = _images(batch, seed=batch)
        (onnx_logits,) = session.run(None, {"input": images.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(onnx_logits, model(images).numpy(), atol=1e-4)


@pytest.mark.parametrize("hidden", [0, 8])
def test_head_checkpoint_round_trip(tmp_path: Path, hidden: int) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 16)).astype(np.float32), np.arange(40) % 4
    head = train_head(x, y, 4, hidden=hidden)

    loaded = load_head_checkpoint(save_head_checkpoint(head, tmp_path / "head.ckpt"))

    assert dict(loaded.hparams) == dict(head.hparams)
    np.testing.assert_array_equal(predict_proba(loaded, x), predict_proba(head, x))
    assert not loaded.training


def test_trainer_checkpoints_load_as_heads(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 16)).astype(np.float32), np.arange(40) % 4
    head = HeadClassifier(16, 4, class_weights=[1.0, 2.0, 1.0, 1.0])
    trainer = quiet_trainer(accelerator="cpu", max_epochs=2)
    trainer.fit(head, datamodule=EmbeddingDataModule(x, y))
    trainer.save_checkpoint(tmp_path / "trainer.ckpt")

    loaded = load_head_checkpoint(tmp_path / "trainer.ckpt")

    assert loaded.hparams.class_weights == [1.0, 2.0, 1.0, 1.0]
    np.testing.assert_array_equal(predict_proba(loaded, x), predict_proba(head, x))


def test_bad_checkpoints_are_model_file_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")

    with pytest.raises(ModelFileError, match="garbage.ckpt"):
        load_head_checkpoint(garbage)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_head_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(ModelFileError, match="garbage.ckpt"):
        load_classifier_checkpoint(garbage)


@pytest.mark.parametrize("hidden", [0, 8])
def test_classifier_checkpoint_round_trip(backbone: LoadedBackbone, tmp_path: Path, hidden: int) -> None:
    model = build_classifier(backbone, _head(backbone, hidden), LABELS)

    path = save_classifier_checkpoint(model, tmp_path / "model.ckpt", backbone, LABELS)
    loaded = load_classifier_checkpoint(path)

    assert loaded.hparams.arch == TINY
    assert loaded.hparams.label_names == LABELS
    assert tuple(loaded.hparams.data_config["input_size"]) == (3, 32, 32)
    images = _images()
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_bundled_backbone_exports_to_plain_timm(tmp_path: Path) -> None:
    bundled = load_backbone(BackboneSpec(image_size=64))
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = bundled.model(torch.randn(12, 3, 64, 64, generator=torch.Generator().manual_seed(1))).numpy()
    head = train_head(x, np.arange(12) % 3, 3)
    model = build_classifier(bundled, head, LABELS)

    folder = save_safetensors(model, tmp_path, bundled.arch, LABELS, bundled.data_config)

    plain = timm.create_model("tf_efficientnet_lite0", num_classes=3).eval()
    plain.load_state_dict(safetensors.torch.load_file(str(folder / "model.safetensors")))
    with torch.no_grad():
        torch.testing.assert_close(plain(images), model(images), atol=1e-5, rtol=1e-5)
        # and the export computes what the app computed (its backbone runs channels-last: tiny rounding noise)
        torch.testing.assert_close(plain(images), _logits(bundled, head, images), atol=1e-4, rtol=1e-4)


def test_onnx_metadata_holds_the_labels_and_the_preprocessing(backbone: LoadedBackbone) -> None:
    metadata = {key: json.loads(value) for key, value in onnx_metadata(LABELS, backbone.data_config).items()}

    assert metadata["label_names"] == LABELS and metadata["input_size"] == [3, 32, 32]
    assert metadata["mean"] == list(backbone.data_config["mean"]) and len(metadata["std"]) == 3
    assert metadata["crop_pct"] == 1.0


def _trained_session(tmp_path: Path, *, train: bool = True) -> ActiveLearningSession:
    """A tiny digits project; with `train`, one round trained on its first batch."""
    session = ActiveLearningSession.create(tmp_path / "projects", "digits", DIGITS, TINY_SETTINGS)
    session.add_data(write_digits(tmp_path / "images", size=32, limit=20))
    session.ensure_batch()
    if train:
        while (item := session.store.claim_next("tester")) is not None:
            session.label(item.image_id, true_label(session, item.image_id), annotator="tester")
        wait_round(session)
    return session


def _readme_blocks(readme: str) -> list[str]:
    """The README's indented code blocks, dedented."""
    blocks = re.findall(r"(?:^    .*\S.*\n)+", readme, flags=re.MULTILINE)
    return [textwrap.dedent(block) for block in blocks]


@pytest.mark.slow  # one ONNX export
def test_export_all_holds_every_file_and_a_readme_whose_code_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    session = _trained_session(tmp_path)
    image = session.image_path(session.store.image_ids()[0])

    with zipfile.ZipFile(session.export("all_zip")) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "all")
    session.close()

    assert names == {
        "README.txt", "labels.csv", "provenance.json", "timm_model/model.safetensors", "timm_model/config.json",
        "model.onnx",
    }  # fmt: skip
    proto = onnx.load(str(tmp_path / "all" / "model.onnx"))
    meta = {entry.key: json.loads(entry.value) for entry in proto.metadata_props}
    assert meta["label_names"] == DIGITS and meta["input_size"] == [3, 32, 32]
    assert meta["mean"] == [0.485, 0.456, 0.406] and meta["std"] == [0.229, 0.224, 0.225]
    assert meta[MODEL_INFO]["round"] == 1
    readme = (tmp_path / "all" / "README.txt").read_text(encoding="utf-8")
    assert all(word in readme for word in ("pandas", "timm.create_model", "onnxruntime"))
    Image.open(image).convert("RGB").save(tmp_path / "all" / "photo.jpg")
    monkeypatch.chdir(tmp_path / "all")
    blocks = _readme_blocks(readme)
    assert len(blocks) == 4
    for block in blocks:  # pandas, json, plain timm, onnxruntime: each runs as written
        exec(compile(block, "README.txt", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1] in DIGITS and printed[-2].split()[0] in DIGITS  # the ONNX and the timm model's guesses


def test_export_all_before_any_model_holds_the_labels_and_says_so(tmp_path: Path) -> None:
    session = _trained_session(tmp_path, train=False)

    with zipfile.ZipFile(session.export("all_zip")) as zf:
        assert set(zf.namelist()) == {"README.txt", "labels.csv", "provenance.json"}
        assert "no model yet" in zf.read("README.txt").decode()
    session.close()
