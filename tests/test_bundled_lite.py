"""The bundled EfficientNet-Lite1 and Lite2: offline ImageNet weights that load into timm by position."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from sklearn.datasets import load_sample_image

from lit_models.backbones import BUNDLED_WEIGHTS, BackboneSpec, eval_transform, load_backbone, load_bundled_classifier

PALACE = 698


@pytest.mark.parametrize(("arch", "size"), [("tf_efficientnet_lite1", 240), ("tf_efficientnet_lite2", 260)])
def test_bundled_lite_recognises_a_palace_offline(arch: str, size: int) -> None:
    backbone = load_backbone(BackboneSpec(arch=arch, source="bundled"))
    assert backbone.arch == arch
    assert backbone.num_features == 1280
    assert backbone.data_config["input_size"] == (3, size, size)
    assert backbone.report["weights"].endswith(".pth")
    model = load_bundled_classifier(arch)
    x = eval_transform(backbone.data_config)(Image.fromarray(load_sample_image("china.jpg"))).unsqueeze(0)
    with torch.no_grad():
        probs = model(x).softmax(dim=1)[0]
        assert int(probs.argmax()) == PALACE  # trained weights, not a random init
        assert torch.allclose(
            backbone.model(x), model.forward_head(model.forward_features(x), pre_logits=True), atol=1e-5
        )


def test_an_unknown_bundled_arch_still_means_lite0() -> None:
    assert set(BUNDLED_WEIGHTS) == {"tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"}
    backbone = load_backbone(BackboneSpec(arch="resnet18", source="bundled"))
    assert backbone.arch == "tf_efficientnet_lite0"
    assert backbone.data_config["input_size"] == (3, 224, 224)
