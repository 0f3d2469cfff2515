"""Backbone loading: bundled ImageNet weights offline, hub errors, local weight files, transforms, cache keys."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from app.core.errors import BackboneError, ModelFileError
from lit_models.backbones import (
    BUNDLED_ARCH,
    BackboneSpec,
    eval_transform,
    load_backbone,
    load_bundled_classifier,
    train_transform,
)

TINY = "test_efficientnet"  # timm's tiny test model (256 features)
# ImageNet classes of buildings and waterside scenes: what a photo of a Chinese palace by a lake should look like.
BUILDING_CLASSES = {
    442: "bell cote",
    449: "boathouse",
    483: "castle",
    497: "church",
    538: "dome",
    663: "monastery",
    668: "mosque",
    698: "palace",
    832: "stupa",
    873: "triumphal arch",
}


class NotAWeight:
    """An arbitrary Python object: a weights-only load must refuse it."""


def _tiny_classifier(num_classes: int = 10) -> torch.nn.Module:
    torch.manual_seed(1)
    return timm.create_model(TINY, pretrained=False, num_classes=num_classes).eval()


def _pre_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.forward_head(model.forward_features(x), pre_logits=True)


@pytest.fixture(scope="module")
def bundled():
    return load_backbone(BackboneSpec())


def test_bundled_classifier_recognises_a_palace_offline(bundled) -> None:
    model = load_bundled_classifier()
    image = Image.fromarray(load_sample_image("china.jpg"))
    x = eval_transform(bundled.data_config)(image).unsqueeze(0)

    with torch.no_grad():
        probs = model(x).softmax(dim=1)[0]
    top5 = probs.topk(5).indices.tolist()

    assert top5[0] == 698  # palace
    assert len(set(top5) & BUILDING_CLASSES.keys()) >= 3, top5
    # the classifier-less backbone gives exactly the pre-logit features of the full model
    with torch.no_grad():
        assert torch.allclose(bundled.model(x), _pre_logits(model, x), atol=1e-5)


def test_bundled_backbone_uses_timm_preprocessing(bundled) -> None:
    assert bundled.arch == BUNDLED_ARCH
    assert bundled.num_features == 1280
    assert bundled.data_config["input_size"] == (3, 224, 224)
    assert bundled.data_config["mean"] == (0.5, 0.5, 0.5)
    assert bundled.data_config["std"] == (0.5, 0.5, 0.5)
    assert bundled.report["source"] == "bundled"
    assert not bundled.model.training
    with torch.no_grad():
        assert bundled.model(torch.zeros(2, 3, 64, 64)).shape == (2, 1280)


def test_image_size_overrides_input_size_without_crop() -> None:
    backbone = load_backbone(BackboneSpec(arch=TINY, source="random", image_size=48))

    assert backbone.data_config["input_size"] == (3, 48, 48)
    assert backbone.data_config["crop_pct"] == 1.0
    image = Image.new("RGB", (100, 60), "red")
    assert eval_transform(backbone.data_config)(image).shape == (3, 48, 48)
    assert train_transform(backbone.data_config)(image).shape == (3, 48, 48)


def test_image_size_is_refused_for_fixed_size_models() -> None:
    with pytest.raises(BackboneError, match=r"'test_vit' only accepts 160x160 pixel images"):
        load_backbone(BackboneSpec(arch="test_vit", source="random", image_size=64))
    assert load_backbone(BackboneSpec(arch="test_vit", source="random", image_size=160)).num_features > 0


def test_random_backbone_is_reproducible() -> None:
    a = load_backbone(BackboneSpec(arch=TINY, source="random"))
    b = load_backbone(BackboneSpec(arch=TINY, source="random"))
    x = torch.randn(2, 3, 32, 32)

    with torch.no_grad():
        assert torch.equal(a.model(x), b.model(x))
    assert a.num_features == 256


def test_cache_key_is_filesystem_safe_and_tracks_inputs(tmp_path: Path) -> None:
    weights = tmp_path / "my weights.pth"
    weights.write_bytes(b"x")
    base = BackboneSpec(arch="resnet18", source="file", weights=str(weights))

    keys = {
        base.key(),
        BackboneSpec(arch="resnet18", source="file", weights=str(weights), image_size=64).key(),
        BackboneSpec().key(),
        BackboneSpec(image_size=64).key(),
        BackboneSpec(arch="hf-hub:timm/resnet18.a1_in1k", source="hub").key(),
    }
    assert len(keys) == 5
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", k) for k in keys), keys
    assert "my_weights" in base.key()

    before = base.key()
    weights.write_bytes(b"xy")  # new size: other weights, other features
    os.utime(weights, ns=(1, 1))
    assert base.key() != before


def test_hub_model_offline_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # read at import time
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached

    with pytest.raises(BackboneError) as info:
        load_backbone(BackboneSpec(arch="resnet18.a1_in1k", source="hub"))

    message = str(info.value)
    assert "Could not download 'resnet18.a1_in1k' from the Hugging Face hub (offline?)" in message
    assert "bundled EfficientNet-Lite0" in message
    assert not isinstance(info.value, ModelFileError)


def test_unreachable_hub_uses_only_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants as hub_constants

    from lit_models import backbones

    seen = []

    def fake_create_model(name: str, **kwargs: object) -> torch.nn.Module:
        seen.append(hub_constants.HF_HUB_OFFLINE)  # what a download would see
        return timm.models.create_model(TINY, num_classes=0)

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setattr(backbones, "_reachable", lambda url: False)
    monkeypatch.setattr(timm, "create_model", fake_create_model)

    backbone = load_backbone(BackboneSpec(arch=f"{TINY}.r160_in1k", source="hub"))

    assert seen == [True]  # no retries against an unreachable server: straight to the cache
    assert hub_constants.HF_HUB_OFFLINE is False  # restored
    assert backbone.arch == TINY
    assert backbone.report == {"source": "hub", "weights": f"{TINY}.r160_in1k"}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionError("Name or service not known"), "Could not download 'resnet18' from the Hugging Face hub"),
        (TimeoutError("timed out"), "Could not download 'resnet18' from the Hugging Face hub"),
        (RuntimeError("Invalid pretrained tag (x) for resnet18."), "timm could not load 'resnet18': Invalid"),
    ],
)
def test_hub_failures_become_backbone_errors(monkeypatch: pytest.MonkeyPatch, error: Exception, expected: str) -> None:
    from lit_models import backbones

    def failing(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(backbones, "_reachable", lambda url: True)
    monkeypatch.setattr(timm, "create_model", failing)

    with pytest.raises(BackboneError, match=re.escape(expected)):
        load_backbone(BackboneSpec(arch="resnet18", source="hub"))


@pytest.mark.parametrize("source", ["hub", "random", "file"])
def test_unknown_architecture_is_named(source: str, tmp_path: Path) -> None:
    weights = tmp_path / "w.safetensors"
    safetensors.torch.save_file({"a": torch.zeros(1)}, str(weights))

    with pytest.raises(BackboneError, match=r"no (architecture|model) named 'resnet_does_not_exist'.*list_models"):
        load_backbone(BackboneSpec(arch="resnet_does_not_exist", source=source, weights=str(weights)))


def test_unknown_source_is_refused() -> None:
    with pytest.raises(BackboneError, match="Unknown backbone source 'ftp'"):
        load_backbone(BackboneSpec(source="ftp"))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_file_loads_and_drops_the_classifier(tmp_path: Path, suffix: str) -> None:
    source = _tiny_classifier(num_classes=7)
    path = tmp_path / f"trained{suffix}"
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if suffix == ".safetensors":
        safetensors.torch.save_file(state, str(path))
    else:  # a training checkpoint: nested and prefixed, with non-tensor extras
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)

    backbone = load_backbone(BackboneSpec(arch=TINY, source="file", weights=str(path)))

    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(backbone.model(x), _pre_logits(source, x), atol=1e-6)
    assert backbone.report["dropped_classifier"] == ["classifier.bias", "classifier.weight"]
    assert backbone.report["missing"] == []
    assert backbone.report["unexpected"] == []


def test_local_weights_report_extra_keys(tmp_path: Path) -> None:
    state = dict(_tiny_classifier().state_dict())
    state["extra.scale"] = torch.ones(3)
    path = tmp_path / "extra.safetensors"
    safetensors.torch.save_file(state, str(path))

    backbone = load_backbone(BackboneSpec(arch=TINY, source="file", weights=str(path)))

    assert backbone.report["unexpected"] == ["extra.scale"]


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".bin"])
def test_garbage_weights_file_is_a_model_file_error(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(os.urandom(2048))

    with pytest.raises(ModelFileError, match="broken"):
        load_backbone(BackboneSpec(arch=TINY, source="file", weights=str(path)))


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": _tiny_classifier().state_dict(), "extra": NotAWeight()}, path)

    with pytest.raises(ModelFileError, match="Python objects besides weights"):
        load_backbone(BackboneSpec(arch=TINY, source="file", weights=str(path)))


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet.safetensors"
    safetensors.torch.save_file(timm.create_model("test_resnet", num_classes=10).state_dict(), str(path))

    with pytest.raises(ModelFileError, match="does not fit the 'test_efficientnet' architecture"):
        load_backbone(BackboneSpec(arch=TINY, source="file", weights=str(path)))


def test_shape_mismatch_names_the_tensors(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    safetensors.torch.save_file(_tiny_classifier().state_dict(), str(path))

    with pytest.raises(ModelFileError, match=r"conv_stem\.weight \(\d+, 3, 3, 3\) != \(\d+, 3, 3, 3\)"):
        load_backbone(BackboneSpec(arch="efficientnet_b0", source="file", weights=str(path)))


def test_missing_or_unsupported_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="Choose a weights file"):
        load_backbone(BackboneSpec(arch=TINY, source="file"))
    with pytest.raises(ModelFileError, match="does not exist"):
        load_backbone(BackboneSpec(arch=TINY, source="file", weights=str(tmp_path / "nope.pth")))
    other = tmp_path / "weights.txt"
    other.write_text("hello")
    with pytest.raises(ModelFileError, match="not a weights file"):
        load_backbone(BackboneSpec(arch=TINY, source="file", weights=str(other)))
