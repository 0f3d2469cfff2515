"""Embedding image files, training heads on embeddings, progress/cancel callbacks, fine-tuning smoke test."""

from __future__ import annotations

import threading
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from app.core.errors import BadImageError
from app.core.images import load_rgb
from lit_models import decode as decode_module
from lit_models.backbones import BackboneSpec, eval_transform, load_backbone, train_transform
from lit_models.callbacks import Cancelled, ProgressCallback
from lit_models.data import EmbeddingDataModule, ImageDataModule, ImagePathDataset
from lit_models.decode import decode_uint8
from lit_models.embed import embed_paths, uint8_transform
from lit_models.export import build_classifier
from lit_models.modules import FineTuneClassifier, HeadClassifier
from lit_models.train import balanced_class_weights, predict_proba, train_head
from lit_models.trainer import CPU, Compute, quiet_trainer
from tests.image_files import noise, palette_png, rgba_png, save, truncated


@pytest.fixture(scope="module")
def tiny_backbone():
    return load_backbone(BackboneSpec(arch="test_efficientnet", source="random", image_size=32))


def _blobs(n: int, num_classes: int = 4, dim: int = 64, seed: int = 0, spread: float = 1.0):
    """Gaussian clusters around fixed random centers (the same for every seed): separable for small `spread`."""
    centers = np.random.default_rng(1234).normal(scale=3.0, size=(num_classes, dim))
    y = np.arange(n) % num_classes
    x = centers[y] + np.random.default_rng(seed).normal(scale=spread, size=(n, dim))
    return x.astype(np.float32), y


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def __call__(self, fraction: float, message: str) -> None:
        self.calls.append((fraction, message))

    @property
    def fractions(self) -> list[float]:
        return [f for f, _ in self.calls]


def test_dataset_decodes_files_to_tensors(digit_pngs: list[Path], tiny_backbone) -> None:
    transform = eval_transform(tiny_backbone.data_config)
    unlabeled = ImagePathDataset(digit_pngs[:3], transform)
    labeled = ImagePathDataset(digit_pngs[:3], transform, labels=[0, 1, 2])

    assert len(unlabeled) == 3
    assert unlabeled[0].shape == (3, 32, 32)  # grayscale PNGs come out as RGB
    image, label = labeled[2]
    assert torch.equal(image, unlabeled[2])
    assert label == 2
    with pytest.raises(ValueError, match="3 paths but 2 labels"):
        ImagePathDataset(digit_pngs[:3], transform, labels=[0, 1])


def test_embed_paths_gives_finite_features_in_order(digit_pngs: list[Path], tiny_backbone) -> None:
    paths = digit_pngs[::10]  # one image per digit
    progress = Recorder()

    features = embed_paths(tiny_backbone, paths, batch_size=4, progress=progress)

    assert features.shape == (10, tiny_backbone.num_features)
    assert features.dtype == np.float32
    assert np.isfinite(features).all()
    assert len(np.unique(features.round(5), axis=0)) == 10  # different digits, different features
    reversed_features = embed_paths(tiny_backbone, paths[::-1], batch_size=3)
    np.testing.assert_allclose(reversed_features[::-1], features, atol=1e-5)
    # the same result as calling the model directly
    batch = torch.stack([eval_transform(tiny_backbone.data_config)(ImagePathDataset(paths, lambda im: im)[0])])
    with torch.no_grad():
        np.testing.assert_allclose(tiny_backbone.model(batch).numpy()[0], features[0], atol=1e-5)
    assert progress.fractions == sorted(progress.fractions)
    assert progress.calls[-1][0] == 1.0
    assert "batch 3/3" in " ".join(m for _, m in progress.calls)


def _image_files(folder: Path) -> list[Path]:
    """Files on the fast decoding path (plain PNGs, JPEGs in every EXIF orientation) and beside it."""
    files = []
    for mode in ("L", "RGB"):
        for size in ((48, 48), (40, 70), (90, 60)):
            image = noise(size, seed=len(files), mode=mode)
            files.append(save(image, folder / f"{mode}-{size[0]}x{size[1]}.png"))
            for orientation in range(1, 9):
                exif = Image.Exif()
                exif[0x0112] = orientation
                path = folder / f"{mode}-{size[0]}x{size[1]}-{orientation}.jpg"
                files.append(save(image, path, quality=90, exif=exif.tobytes()))
    exif = Image.Exif()
    exif[0x0112] = 6
    files.append(save(noise((40, 20)), folder / "exif.png", exif=exif.tobytes()))  # PIL turns it: so must we
    files.append(save(noise((30, 20), mode="L"), folder / "gray.jpg", xmp=b"<x:xmpmeta/>"))
    files.append(save(noise((40, 20)).convert("CMYK"), folder / "cmyk.jpg"))
    files.append(save(noise((40, 20), mode="RGBA"), folder / "alpha.png"))
    files.append(rgba_png(folder / "transparent.png"))
    files.append(palette_png(folder / "palette.png"))
    files.append(save(noise((20, 30)), folder / "picture.webp"))
    return files


@pytest.mark.parametrize(("image_size", "crop_pct"), [(48, 1.0), (64, 0.875), (224, 1.0)])
def test_fast_decoding_gives_the_pixels_of_timms_transform(tmp_path: Path, image_size: int, crop_pct: float) -> None:
    config = {
        "input_size": (3, image_size, image_size), "interpolation": "bicubic", "crop_pct": crop_pct,
        "crop_mode": "center", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225),
    }  # fmt: skip
    transform, mean, std = uint8_transform(config)
    reference = eval_transform(config)
    files = _image_files(tmp_path)

    fast = [decode_uint8(str(path)) for path in files]

    assert sum(isinstance(image, torch.Tensor) for image in fast) == 2 * 3 * 9  # plain PNG + 8 JPEG orientations
    for path, image in zip(files, fast, strict=True):
        pixels = transform(image)
        assert pixels.dtype == torch.uint8
        assert torch.equal(pixels, transform(load_rgb(path))), path.name  # tensor and PIL input agree exactly
        scaled = (pixels.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
        torch.testing.assert_close(scaled, reference(load_rgb(path)), atol=1e-6, rtol=0, msg=path.name)


def test_fast_decoding_falls_back_to_pil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    png = save(noise((16, 16)), tmp_path / "plain.png")
    broken = truncated(save(noise((64, 64)), tmp_path / "photo.jpg", quality=95), tmp_path / "half.jpg")
    with pytest.raises(BadImageError):
        decode_uint8(str(broken))  # the user-facing error of load_rgb
    with pytest.raises(BadImageError):
        decode_uint8(str(truncated(png, tmp_path / "half.png")))
    monkeypatch.setattr(decode_module, "_image_ops", lambda: None)  # a torchvision without image decoders
    image = decode_uint8(str(png))
    assert not isinstance(image, torch.Tensor)
    assert np.array_equal(np.asarray(image), np.asarray(load_rgb(png)))


def test_embed_no_paths(tiny_backbone) -> None:
    assert embed_paths(tiny_backbone, []).shape == (0, tiny_backbone.num_features)


def test_embed_stops_when_asked(digit_pngs: list[Path], tiny_backbone) -> None:
    stop = threading.Event()
    seen = Recorder()

    def report(fraction: float, message: str) -> None:
        seen(fraction, message)
        if fraction >= 0.2:
            stop.set()

    with pytest.raises(Cancelled):
        embed_paths(tiny_backbone, digit_pngs[:20], batch_size=2, progress=report, stop_event=stop)
    assert max(seen.fractions) < 0.5


def test_train_head_separates_clusters_and_is_deterministic() -> None:
    x, y = _blobs(200)
    x_test, y_test = _blobs(400, seed=1)

    head = train_head(x, y, 4, seed=3)
    probs = predict_proba(head, x_test)

    assert probs.shape == (400, 4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs.argmax(axis=1) == y_test).mean() >= 0.95
    assert not head.training
    again = predict_proba(train_head(x, y, 4, seed=3), x_test)
    np.testing.assert_array_equal(again, probs)


@pytest.mark.parametrize(("optimizer", "hidden"), [("lbfgs", 32), ("adamw", 0), ("adamw", 32)])
def test_other_heads_learn_too(optimizer: str, hidden: int) -> None:
    x, y = _blobs(200, spread=0.5)

    head = train_head(x, y, 4, hidden=hidden, optimizer=optimizer, max_epochs=30, seed=0)

    assert head.hparams.hidden == hidden
    assert (predict_proba(head, x).argmax(axis=1) == y).mean() >= 0.95


def test_train_head_allows_classes_without_examples() -> None:
    x, y = _blobs(60, num_classes=3)

    head = train_head(x, y, 5)
    probs = predict_proba(head, x)

    assert probs.shape == (60, 5)
    assert (probs.argmax(axis=1) == y).mean() >= 0.95
    assert probs[:, 3:].max() < 0.05


def test_balanced_weights_help_a_rare_class() -> None:
    rng = np.random.default_rng(0)
    n_common, n_rare = 190, 10
    x = np.concatenate([rng.normal(0.0, 1.0, (n_common, 8)), rng.normal(0.8, 1.0, (n_rare, 8))]).astype(np.float32)
    y = np.array([0] * n_common + [1] * n_rare)
    x_test = np.concatenate([rng.normal(0.0, 1.0, (500, 8)), rng.normal(0.8, 1.0, (500, 8))]).astype(np.float32)
    y_test = np.array([0] * 500 + [1] * 500)

    recall = {}
    for balanced in (False, True):
        predicted = predict_proba(train_head(x, y, 2, balanced=balanced), x_test).argmax(axis=1)
        recall[balanced] = [(predicted[y_test == c] == c).mean() for c in (0, 1)]

    assert recall[True][1] > recall[False][1] + 0.15  # the rare class is found far more often
    assert np.mean(recall[True]) > np.mean(recall[False]) + 0.05  # and balanced accuracy improves
    assert balanced_class_weights(y, 3) == pytest.approx([200 / (2 * 190), 200 / (2 * 10), 1.0])


def test_train_head_reports_progress_and_stops_early_on_convergence() -> None:
    x, y = _blobs(100)
    progress = Recorder()

    train_head(x, y, 4, max_epochs=50, progress=progress)

    assert progress.fractions == sorted(progress.fractions)
    assert progress.calls[0] == (0.0, "Training started")
    assert progress.calls[-1] == (1.0, "Training finished")
    assert len(progress.calls) < 50  # L-BFGS converged long before 50 epochs


def test_train_head_stop_event_still_returns_a_head() -> None:
    x, y = _blobs(100)
    stop = threading.Event()
    stop.set()
    progress = Recorder()

    head = train_head(x, y, 4, optimizer="adamw", max_epochs=100, progress=progress, stop_event=stop)

    assert isinstance(head, HeadClassifier)
    assert progress.calls[-1] == (1.0, "Training stopped")
    assert len(progress.calls) <= 3


def test_train_head_rejects_bad_input() -> None:
    x, y = _blobs(10)
    with pytest.raises(ValueError, match=r"Labels must be in \[0, 3\)"):
        train_head(x, y, 3)
    with pytest.raises(ValueError, match="non-empty"):
        train_head(x[:0], y[:0], 4)
    with pytest.raises(ValueError, match="Unknown optimizer"):
        train_head(x, y, 4, optimizer="sgd")


def test_train_head_reports_validation_metrics() -> None:
    x, y = _blobs(100)
    x_val, y_val = _blobs(40, seed=2)

    head = train_head(x, y, 4, x_val=x_val, y_val=y_val)

    assert head.val_metrics["val_acc"] == pytest.approx(1.0)
    assert head.val_metrics["val_loss"] < 0.5


@pytest.mark.parametrize("hidden", [0, 16])
def test_predict_proba_in_chunks_matches_the_module(hidden: int) -> None:
    x, y = _blobs(50)
    head = train_head(x, y, 4, hidden=hidden)

    probs = predict_proba(head, x, batch_size=7)

    with torch.no_grad():
        expected = head(torch.from_numpy(x)).softmax(dim=1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-6)


def test_embedding_datamodule_batches() -> None:
    x, y = _blobs(10)
    full = EmbeddingDataModule(x, y)
    mini = EmbeddingDataModule(x, y, x[:4], y[:4], batch_size=4)

    assert len(full.train_dataloader()) == 1
    assert len(mini.train_dataloader()) == 3
    assert len(mini.val_dataloader()) == 1
    assert full.val_dataloader() == []


def test_progress_callback_stops_a_fit() -> None:
    x, y = _blobs(64)
    stop = threading.Event()
    progress = Recorder()

    def report(fraction: float, message: str) -> None:
        progress(fraction, message)
        if fraction >= 0.1:
            stop.set()

    head = HeadClassifier(64, 4, optimizer="adamw", lr=1e-2, max_epochs=20)
    trainer = quiet_trainer(accelerator="cpu", max_epochs=20, callbacks=[ProgressCallback(report, stop)])
    trainer.fit(head, datamodule=EmbeddingDataModule(x, y, batch_size=16))

    assert trainer.global_step == 8  # asked at 10 % (8 of 80 steps); stopped right after that step
    assert progress.calls[-1] == (1.0, "Training stopped")


def test_compute_options_become_trainer_arguments() -> None:
    assert Compute().trainer_options() == {"accelerator": "auto", "devices": 1, "num_nodes": 1}
    assert CPU.trainer_options() == {"accelerator": "cpu", "devices": 1, "num_nodes": 1}
    assert "strategy" not in Compute(strategy="ddp_spawn").trainer_options()  # one process runs in this one
    spread = Compute(accelerator="cpu", devices=2, strategy="ddp_spawn", precision="bf16-mixed")
    assert spread.processes == 2 and spread.distributed
    assert spread.trainer_options() == {
        "accelerator": "cpu", "devices": 2, "num_nodes": 1, "strategy": "ddp_spawn", "precision": "bf16-mixed"
    }  # fmt: skip
    trainer = quiet_trainer(compute=CPU, max_epochs=1)
    assert trainer.max_epochs == 1 and trainer.num_devices == 1
    with pytest.raises(ValueError, match="at least 1"):
        Compute(devices=0)


def test_fine_tune_smoke(digit_pngs: list[Path], tiny_backbone) -> None:
    labels = [i // 10 for i in range(len(digit_pngs))]
    x = embed_paths(tiny_backbone, digit_pngs)
    head = train_head(x, np.array(labels), 10)
    classifier = build_classifier(tiny_backbone, head, [str(d) for d in range(10)])
    module = FineTuneClassifier(classifier, lr=1e-3, max_epochs=1)
    data = ImageDataModule(
        train_transform=train_transform(tiny_backbone.data_config),
        eval_transform=eval_transform(tiny_backbone.data_config),
        train_paths=digit_pngs[::2],
        train_labels=labels[::2],
        val_paths=digit_pngs[1::2],
        val_labels=labels[1::2],
        predict_paths=digit_pngs[:5],
        batch_size=16,
    )
    before = [p.detach().clone() for p in module.parameters()]

    trainer = quiet_trainer(accelerator="cpu", max_epochs=1, limit_train_batches=2)
    trainer.fit(module, datamodule=data)
    probs = torch.cat(pl.Trainer(logger=False, enable_progress_bar=False).predict(module, datamodule=data))

    assert torch.isfinite(trainer.callback_metrics["train_loss"])
    assert 0.0 <= float(trainer.callback_metrics["val_acc"]) <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))
    assert probs.shape == (5, 10)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(5))
    assert module.features(torch.zeros(2, 3, 32, 32)).shape == (2, tiny_backbone.num_features)


@pytest.mark.parametrize("hidden", [0, 8])
def test_standardized_head_is_trained_on_z_scores_and_takes_raw_embeddings(hidden):
    from lit_models.train import _standardizer

    x, y = _blobs(40, spread=2.0)
    x = x * np.geomspace(1e-2, 1e2, x.shape[1]).astype(np.float32)  # features on wildly different scales
    x_test = x[::3] + 0.1
    shift, scale = _standardizer(x)
    head = train_head(x, y, 4, hidden=hidden, seed=3)
    on_z = train_head((x - shift) * scale, y, 4, hidden=hidden, seed=3, standardize=False)
    np.testing.assert_allclose(predict_proba(head, x_test), predict_proba(on_z, (x_test - shift) * scale), atol=1e-4)
    scaled = train_head(x * 100.0, y, 4, hidden=hidden, seed=3)  # one unit change of every feature: same model
    np.testing.assert_allclose(predict_proba(scaled, x_test * 100.0), predict_proba(head, x_test), atol=1e-4)
