"""Model files: every common format loads into a backbone, and unsafe or foreign files are refused with a reason."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import lightning.pytorch as pl
import pytest
import safetensors.torch
import timm
import torch
from torch.utils.data import DataLoader, TensorDataset

from app.core.errors import ModelFileError
from lit_models.backbones import BackboneSpec, load_backbone
from lit_models.export import build_classifier, save_classifier_checkpoint, save_head_checkpoint, save_safetensors
from lit_models.model_files import read_weights, save_weights
from lit_models.modules import HeadClassifier

TINY = "test_efficientnet"  # 256 features, 32 px images work


def tiny(num_classes: int = 3, arch: str = TINY) -> torch.nn.Module:
    torch.manual_seed(1)
    return timm.create_model(arch, num_classes=num_classes).eval()


def features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.forward_head(model.forward_features(x), pre_logits=True)


def load(path: Path, arch: str = TINY, **kwargs: object):
    return load_backbone(BackboneSpec(arch=arch, source="file", weights=str(path)), **kwargs)


X = torch.randn(2, 3, 32, 32)


class RunsCode:
    """A pickle payload that would create a marker file when unpickled."""

    def __init__(self, marker: Path, how: str = "system") -> None:
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "system":
            return (os.system, (f"touch {self.marker}",))
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


class NotAWeight:
    """An ordinary Python object."""


# ------------------------------------------------------------------------------------------------ formats that load
def _save(kind: str, model: torch.nn.Module, path: Path) -> None:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if kind == "plain":
        torch.save(state, path)
    elif kind == "legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    elif kind == "nested_state_dict":
        torch.save({"epoch": 7, "state_dict": state, "best_acc": 0.91}, path)
    elif kind == "nested_model":
        torch.save({"model": state, "optimizer": {"lr": 0.1}}, path)
    elif kind == "ddp":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif kind == "lightning_prefix":
        torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}}, path)
    elif kind == "compiled":
        torch.save({f"_orig_mod.{k}": v for k, v in state.items()}, path)


@pytest.mark.parametrize(
    ("kind", "suffix", "unwrapped"),
    [
        ("plain", ".pth", []),
        ("legacy", ".pt", []),
        ("plain", ".bin", []),
        ("nested_state_dict", ".pth", ["nested under 'state_dict'"]),
        ("nested_model", ".pt", ["nested under 'model'"]),
        ("ddp", ".pth", ["prefix 'module.' removed"]),
        ("lightning_prefix", ".pth", ["nested under 'state_dict'", "prefix 'model.' removed"]),
        ("compiled", ".pth", ["prefix '_orig_mod.' removed"]),
    ],
)
def test_torch_state_dicts_load_in_every_layout(tmp_path: Path, kind: str, suffix: str, unwrapped: list[str]) -> None:
    source = tiny()
    path = tmp_path / f"weights{suffix}"
    _save(kind, source, path)

    weights = read_weights(path)
    backbone = load(path, keep_classifier=True)

    assert weights.format == "pytorch" and weights.unwrapped == unwrapped
    assert set(weights.tensors) == set(source.state_dict())
    with torch.no_grad():
        assert torch.allclose(backbone.model(X), features(source, X), atol=1e-6)
    assert backbone.report["missing"] == [] and backbone.report["unexpected"] == []
    assert backbone.report["dropped_classifier"] == ["classifier.bias", "classifier.weight"]
    assert backbone.report["loaded"] == backbone.report["expected"] == len(backbone.model.state_dict())


def test_safetensors_and_its_classifier_give_the_models_own_logits(tmp_path: Path) -> None:
    source = tiny(num_classes=5)
    path = tmp_path / "tiny.safetensors"
    safetensors.torch.save_file(source.state_dict(), str(path))

    backbone = load(path, keep_classifier=True)

    head = backbone.source_head
    assert head is not None and head.num_classes == 5 and head.in_features == backbone.num_features == 256
    assert backbone.report["classes"] == 5 and backbone.report["format"] == "safetensors state dict"
    module = HeadClassifier(head.in_features, head.num_classes)
    module.load_state_dict(head.state)
    with torch.no_grad():  # Linear(pooled features) == forward_head(features, pre_logits=False)
        assert torch.allclose(module(backbone.model(X)), source(X), atol=1e-5)


def test_a_real_lightning_training_checkpoint_loads(tmp_path: Path) -> None:
    class Lit(pl.LightningModule):
        def __init__(self, lr: float = 0.01) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.model = tiny().train()

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.model(x), y)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)

    data = DataLoader(TensorDataset(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])), batch_size=2)
    module = Lit()
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, data)
    path = tmp_path / "epoch=0.ckpt"
    trainer.save_checkpoint(path)

    weights = read_weights(path)
    backbone = load(path)

    assert weights.format == "lightning"
    assert weights.description == "Lightning checkpoint (nested under 'state_dict'; prefix 'model.' removed)"
    with torch.no_grad():
        assert torch.allclose(backbone.model(X), features(module.model.eval(), X), atol=1e-5)


def test_this_apps_head_checkpoint_carries_its_labels(tmp_path: Path) -> None:
    head = HeadClassifier(256, 3)
    path = save_head_checkpoint(head, tmp_path / "round_0001.ckpt")
    path.with_suffix(".json").write_text(
        json.dumps({"label_names": ["cat", "dog", "bird"], "backbone": f"{TINY}-random-32"}), encoding="utf-8"
    )

    weights = read_weights(path)

    assert weights.format == "head_checkpoint" and weights.tensors == {}
    assert weights.head is not None and set(weights.head) == {"net.weight", "net.bias"}
    assert weights.num_classes == 3 and weights.label_names == ["cat", "dog", "bird"]
    assert weights.backbone_key == f"{TINY}-random-32"
    with pytest.raises(ModelFileError, match="holds only a classifier head, not a backbone"):
        load(path)


@pytest.mark.parametrize("hidden", [0, 16])
def test_this_apps_classifier_checkpoint_names_its_architecture_and_labels(tmp_path: Path, hidden: int) -> None:
    backbone = load_backbone(BackboneSpec(arch=TINY, source="random"))
    torch.manual_seed(2)
    head = HeadClassifier(256, 2, hidden=hidden)
    classifier = build_classifier(backbone, head, ["cat", "dog"])
    path = save_classifier_checkpoint(classifier, tmp_path / "model.ckpt", backbone, ["cat", "dog"])

    weights = read_weights(path)
    loaded = load(path, arch="", keep_classifier=True)

    assert weights.format == "classifier_checkpoint" and weights.arch == TINY
    assert weights.label_names == ["cat", "dog"] and weights.num_classes == 2
    assert (weights.head is not None) == (hidden > 0) and weights.head_hidden == hidden
    assert loaded.arch == TINY and loaded.source_head is not None and loaded.source_head.hidden == hidden
    module = HeadClassifier(256, 2, hidden=hidden)
    module.load_state_dict(loaded.source_head.state)
    with torch.no_grad():
        assert torch.allclose(module(loaded.model(X)), classifier(X), atol=1e-5)


@pytest.mark.parametrize("zipped", [False, True])
def test_timm_export_folder_or_zip_names_architecture_labels_and_preprocessing(tmp_path: Path, zipped: bool) -> None:
    source = tiny(num_classes=3)
    folder = save_safetensors(source, tmp_path / "export", TINY, ["a", "b", "c"], {"input_size": (3, 48, 48)})
    path = Path(shutil.make_archive(str(tmp_path / "export"), "zip", folder)) if zipped else folder

    weights = read_weights(path)
    backbone = load(path, arch="", keep_classifier=True)

    assert weights.format == "timm_folder" and weights.arch == TINY and weights.label_names == ["a", "b", "c"]
    assert weights.data_config is not None and weights.data_config["input_size"] == (3, 48, 48)
    assert backbone.arch == TINY and backbone.source_head is not None
    assert backbone.source_head.label_names == ["a", "b", "c"]
    with pytest.raises(ModelFileError, match=rf"holds a '{TINY}' model, not 'resnet18'. Choose '{TINY}'"):
        load(path, arch="resnet18")


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_torchscript_needs_an_explicit_opt_in(tmp_path: Path) -> None:
    source = tiny()
    path = tmp_path / "scripted.pt"
    torch.jit.trace(source, torch.randn(1, 3, 32, 32)).save(str(path))

    with pytest.raises(ModelFileError, match="TorchScript program, not a plain weights file: opening it runs code"):
        read_weights(path)
    with pytest.raises(ModelFileError, match="TorchScript"):
        load(path)  # the backbone loader never opens programs

    weights = read_weights(path, allow_torchscript=True)
    kept = save_weights(weights, tmp_path / "kept.safetensors", TINY)
    backbone = load(kept, arch="")
    assert weights.format == "torchscript"
    with torch.no_grad():
        assert torch.allclose(backbone.model(X), features(source, X), atol=1e-5)


# ------------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("how", "writer"),
    [
        ("system", "torch"),
        ("system", "torch_legacy"),
        ("exec", "pickle"),
        ("system", "nested"),
    ],
)
def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path: Path, how: str, writer: str) -> None:
    marker = tmp_path / "pwned"
    payload = RunsCode(marker, how)
    path = tmp_path / "model.pth"
    if writer == "torch":
        torch.save(payload, path)
    elif writer == "torch_legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    elif writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:  # hidden next to real weights in a training checkpoint
        torch.save({"state_dict": tiny().state_dict(), "callback": payload}, path)

    with pytest.raises(ModelFileError) as info:
        load(path)

    message = str(info.value)
    assert "'model.pth' is not a plain weights file: it tries to run code when opened" in message
    assert ("posix.system" if how == "system" else "builtins.exec") in message
    assert "nothing in it ran" in message and "\n" not in message
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [4, 5])
def test_code_in_a_checkpoint_torchs_own_scan_cannot_read_is_named(tmp_path: Path, protocol: int) -> None:
    """torch's static scan reads only the protocol-2 opcodes torch.save writes by default; the app's scan reads on."""
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pth"
    torch.save({"state_dict": tiny().state_dict(), "callback": RunsCode(marker)}, path, pickle_protocol=protocol)

    with pytest.raises(ModelFileError, match=r"it tries to run code when opened \(it calls posix\.system\)"):
        read_weights(path)
    assert not marker.exists()


def test_python_objects_besides_weights_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "objects.pth"
    torch.save({"state_dict": tiny().state_dict(), "config": NotAWeight()}, path)

    with pytest.raises(ModelFileError, match=r"contains Python objects besides weights \(.*NotAWeight\)"):
        read_weights(path)


def _onnx_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.randn(1, 4),), str(path), dynamo=False)
    return path.read_bytes()


@pytest.mark.parametrize("name", ["model.onnx", "model_renamed.pth"])
def test_onnx_is_named_as_unsupported(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(_onnx_bytes(tmp_path))

    with pytest.raises(ModelFileError, match=rf"'{name}' is an ONNX model, which cannot be loaded back into PyTorch"):
        load(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "Keras/HDF5 file"),
        (b"", "is empty"),
        (b"hello, I am text", "is not a weights file this app can read"),
    ],
)
def test_other_files_are_refused_with_what_they_are(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(content)

    with pytest.raises(ModelFileError, match=expected):
        read_weights(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_truncated_file_is_called_damaged(tmp_path: Path, suffix: str) -> None:
    whole = tmp_path / f"whole{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(tiny().state_dict(), str(whole))
    else:
        torch.save(tiny().state_dict(), whole)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    with pytest.raises(ModelFileError, match=r"'cut\.\w+' is not a readable \w+ file: it is damaged or incomplete"):
        load(cut)


def test_a_zip_without_weights_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photos.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("cat.txt", "meow")

    with pytest.raises(ModelFileError, match="zip archive without model weights"):
        read_weights(path)


def test_weights_of_another_architecture_name_the_mismatched_tensors(tmp_path: Path) -> None:
    path = tmp_path / "resnet.safetensors"
    safetensors.torch.save_file(tiny(arch="test_resnet").state_dict(), str(path))

    with pytest.raises(ModelFileError, match=f"does not fit the '{TINY}' architecture"):
        load(path)


def test_backbone_width_is_what_the_model_returns() -> None:
    # MobileNetV3's head widens the pooled features (num_features 288 -> head_hidden_size 1024)
    backbone = load_backbone(BackboneSpec(arch="mobilenetv3_small_050", source="random", image_size=32))
    with torch.no_grad():
        assert backbone.model(X).shape == (2, backbone.num_features)
