"""Bring your own model: verify it, start a project on it, see its predictions from the first image; refusals."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import safetensors.torch
import timm
import torch

from app.cli import main
from app.core.errors import AppError, BackboneError, ModelFileError
from app.core.images import load_rgb
from app.engine.demo import write_digits
from app.engine.model_import import ModelSource, create_project_from_model, verify_model
from app.engine.model_state import IMPORTED
from app.engine.session import ActiveLearningSession
from app.ui import registry
from app.ui.handlers import Handlers
from lit_models.backbones import eval_transform
from lit_models.export import save_head_checkpoint, save_safetensors
from lit_models.modules import HeadClassifier
from tests.ui_support import MODELS, TINY, TINY_MODEL, wait_round

LABELS = ["cat", "dog", "bird"]
ARCH = "test_efficientnet"


class RunsCode:
    """Unpickling this would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _model(arch: str, num_classes: int, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(arch, num_classes=num_classes).eval()


@pytest.fixture(scope="module")
def resnet_files(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """timm resnet18 state dicts (random init) saved as safetensors, with 3 and with 5 classes."""
    folder = tmp_path_factory.mktemp("resnet")
    files = {}
    for classes in (3, 5):
        files[classes] = folder / f"resnet18_{classes}cls.safetensors"
        safetensors.torch.save_file(_model("resnet18", classes).state_dict(), str(files[classes]))
    return files


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_digits(tmp_path_factory.mktemp("digits"), size=32, limit=12)


@pytest.fixture
def evil(tmp_path: Path) -> tuple[Path, Path]:
    """A .pth whose pickle would create a marker file when opened; returns (file, marker)."""
    marker = tmp_path / "it-ran"
    path = tmp_path / "finetuned.pth"
    torch.save({"state_dict": _model(ARCH, 3).state_dict(), "trainer": RunsCode(marker)}, path)
    return path, marker


def _logits(model: torch.nn.Module, data_config: dict, image: Path) -> torch.Tensor:
    x = eval_transform(data_config)(load_rgb(image)).unsqueeze(0)
    with torch.no_grad():
        return model(x)


# ------------------------------------------------------------------------------------------------ the acceptance flow
@pytest.mark.slow
def test_verify_reports_exactly_what_a_resnet18_file_holds(resnet_files: dict[int, Path], images: list[Path]) -> None:
    check = verify_model(ModelSource("resnet18", str(resnet_files[3])), LABELS, images=[images[0]])

    reference = timm.create_model("resnet18", num_classes=3)
    assert check.arch == "resnet18" and check.source == "file"
    assert check.parameters == sum(p.numel() for p in reference.parameters()) == 11_178_051
    assert check.backbone_parameters == 11_176_512
    assert check.input_size == (3, 224, 224) and check.num_features == 512
    assert check.file_classes == 3 and check.labels == LABELS and check.head == "kept"
    assert check.loaded == check.expected == len(timm.create_model("resnet18", num_classes=0).state_dict())
    assert check.missing == [] and check.unexpected == [] and check.dropped == ["fc.bias", "fc.weight"]
    assert check.image == images[0].name and check.output_shape == (1, 3)
    assert check.max_difference is not None and check.max_difference < 1e-4
    expected = _logits(_model("resnet18", 3), _data_config(), images[0])
    probs = expected.softmax(dim=1)[0]
    assert check.top[0] == (LABELS[int(probs.argmax())], pytest.approx(float(probs.max()), abs=1e-5))
    report = check.markdown()
    for text in (
        "Model check passed",
        "`resnet18` (local file)",
        "11,178,051 (backbone 11,176,512 + classifier 1,539)",
        "3 × 224 × 224",
        "**Classes in the model:** 3",
        "3: cat, dog, bird",
        "**Classifier:** kept",
        "120 of 120 tensors loaded; 0 missing; 0 unexpected; 0 shape mismatches",
        f"`{images[0].name}` → output (1, 3)",
    ):
        assert text in report, text


def _data_config() -> dict:
    return dict(timm.data.resolve_model_data_config(timm.create_model("resnet18")))


@pytest.mark.slow
def test_importing_resnet18_shows_its_predictions_from_the_first_image(
    tmp_path: Path, resnet_files: dict[int, Path], images: list[Path]
) -> None:
    projects = tmp_path / "projects"
    session, check = create_project_from_model(projects, "pets", LABELS, ModelSource("resnet18", str(resnet_files[3])))
    try:
        assert check.head == "kept" and session.model.has_model() and session.store.rounds() == []
        assert session.settings.backbone == "resnet18" and session.settings.backbone_source == "file"
        kept = Path(session.settings.weights)
        assert kept.parent == projects / "pets" / "model_files" and kept.suffix == ".safetensors"
        assert IMPORTED in [c["name"] for c in session.list_checkpoints()]

        session.add_data(images)
        batch = session.ensure_batch()

        assert batch and batch[0].strategy != "cold_start"  # picked by the imported model's uncertainty
        first = batch[0].image_id
        shown = session.predictions(first)
        assert shown is not None and list(shown) == LABELS
        full = _logits(_model("resnet18", 3), session.model.backbone().data_config, session.store.image_path(first))
        assert np.allclose([shown[n] for n in LABELS], full.softmax(dim=1)[0].numpy(), atol=1e-4)
    finally:
        session.close()

    reopened = ActiveLearningSession.open(projects, "pets")  # the imported model survives a restart
    try:
        again = reopened.predictions(first)
        assert again is not None and again == pytest.approx(shown, abs=1e-5)
    finally:
        reopened.close()


@pytest.mark.slow
def test_five_classes_for_three_labels_get_a_new_head_and_say_so(tmp_path: Path, resnet_files: dict[int, Path]) -> None:
    session, check = create_project_from_model(
        tmp_path / "projects", "pets", LABELS, ModelSource("resnet18", str(resnet_files[5]))
    )
    try:
        assert check.head == "replaced" and check.file_classes == 5
        assert "has 5 classes but the project has 3 labels" in check.message
        assert "replaced by a new head (reset_classifier)" in check.message
        assert not session.model.has_model()  # the first round trains a head on the labels
        assert "**Classifier:** replaced by a new head" in check.markdown()
    finally:
        session.close()


def test_a_malicious_pth_is_refused_and_nothing_runs_or_is_created(tmp_path: Path, evil: tuple[Path, Path]) -> None:
    path, marker = evil
    projects = tmp_path / "projects"

    with pytest.raises(ModelFileError, match="is not a plain weights file: it tries to run code") as info:
        create_project_from_model(projects, "evil", LABELS, ModelSource(ARCH, str(path)))
    with pytest.raises(ModelFileError, match="tries to run code"):
        verify_model(ModelSource(ARCH, str(path)), LABELS)

    assert "posix.system" in str(info.value)
    assert not marker.exists()
    assert not (projects / "evil").exists()


# ------------------------------------------------------------------------------------------------ classes and labels
def test_labels_come_from_the_file_and_are_matched_by_name(tmp_path: Path, images: list[Path]) -> None:
    source = _model(ARCH, 3)
    folder = save_safetensors(source, tmp_path / "export", ARCH, LABELS, {"input_size": (3, 32, 32)})

    named = verify_model(ModelSource("", str(folder)), [], images=[images[0]])
    shuffled = verify_model(ModelSource("", str(folder)), ["bird", "cat", "dog"], images=[images[0]])
    other = verify_model(ModelSource("", str(folder)), ["car", "bus", "tram"], images=[images[0]])

    assert named.labels == LABELS and named.head == "kept" and named.arch == ARCH
    assert shuffled.head == "kept" and "matched to your labels by name" in shuffled.message
    assert dict(shuffled.top) == pytest.approx(dict(named.top), abs=1e-6)  # the same guesses under the same names
    assert other.head == "replaced" and "are not your labels" in other.message


def test_a_number_of_classes_that_disagrees_with_the_labels_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    safetensors.torch.save_file(_model(ARCH, 3).state_dict(), str(path))

    with pytest.raises(AppError, match="You typed 3 labels but 5 classes"):
        verify_model(ModelSource(ARCH, str(path)), LABELS, num_classes=5)
    check = verify_model(ModelSource(ARCH, str(path)), [], num_classes=3)
    assert check.labels == ["class 1", "class 2", "class 3"] and check.head == "kept"


def test_weights_of_another_architecture_say_which_to_choose(tmp_path: Path) -> None:
    path = tmp_path / "resnet.safetensors"
    safetensors.torch.save_file(_model("test_resnet", 3).state_dict(), str(path))

    with pytest.raises(ModelFileError, match=f"does not fit the '{ARCH}' architecture.*Choose the architecture"):
        verify_model(ModelSource(ARCH, str(path)), LABELS)


def test_a_hub_name_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path))

    with pytest.raises(BackboneError, match=r"Could not download 'resnet18.a1_in1k' .*\(offline\?\)"):
        verify_model(ModelSource("resnet18.a1_in1k"), LABELS)


def test_a_head_checkpoint_of_this_app_imports_with_its_backbone(tmp_path: Path, images: list[Path]) -> None:
    torch.manual_seed(3)
    head = HeadClassifier(256, 3)
    path = save_head_checkpoint(head, tmp_path / "round_0004.ckpt")
    path.with_suffix(".json").write_text(
        json.dumps({"label_names": LABELS, "backbone": f"{ARCH}-random-default"}), encoding="utf-8"
    )

    check = verify_model(ModelSource("", str(path)), [], images=[images[0]])

    assert check.arch == ARCH and check.source == "random" and check.labels == LABELS and check.head == "kept"
    assert check.max_difference is not None and check.max_difference < 1e-4


def test_torchscript_is_imported_only_when_allowed(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    with pytest.warns(FutureWarning):
        torch.jit.trace(_model(ARCH, 3), torch.randn(1, 3, 32, 32)).save(str(path))

    with pytest.raises(ModelFileError, match="TorchScript program"):
        create_project_from_model(tmp_path / "p", "ts", LABELS, ModelSource(ARCH, str(path)))
    session, check = create_project_from_model(
        tmp_path / "p", "ts", LABELS, ModelSource(ARCH, str(path), allow_torchscript=True)
    )
    try:
        assert check.head == "kept" and any("TorchScript was allowed" in n for n in check.notes)
        assert Path(session.settings.weights).suffix == ".safetensors"  # the program itself is not kept
    finally:
        session.close()


# ------------------------------------------------------------------------------------------------ command line
def test_simulate_refuses_a_malicious_weights_file_in_one_line(
    tmp_path: Path, evil: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, marker = evil
    data = write_digits(tmp_path / "data", size=32, class_folders=True, limit=20)[0].parents[1]

    code = main(["simulate", "--data", str(data), "--backbone", ARCH, "--weights", str(path)])

    err = capsys.readouterr().err
    assert code == 2 and not marker.exists()
    assert err.startswith("error: 'finetuned.pth' is not a plain weights file: it tries to run code")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow
def test_simulate_takes_the_architecture_from_an_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = save_safetensors(_model(ARCH, 3), tmp_path / "export", ARCH, LABELS, {"input_size": (3, 32, 32)})
    data = write_digits(tmp_path / "data", size=32, class_folders=True, limit=40)[0].parents[1]
    argv = ["simulate", "--data", str(data), "--weights", str(folder), "--strategies", "random", "--image-size", "32"]

    code = main([*argv, "--initial", "10", "--batch", "5", "--budget", "15", "--seeds", "1"])

    out = capsys.readouterr().out
    assert code == 0 and f"({ARCH}) loaded and checked" in out and "random" in out


# ------------------------------------------------------------------------------------------------ the page's handlers
@pytest.fixture
def ui(tmp_path: Path) -> Iterator[Handlers]:
    handlers = Handlers(tmp_path / "projects", model_choices=MODELS, base_settings=TINY)
    yield handlers
    registry.close_all(handlers.projects_dir)


def test_verify_and_import_on_the_page(ui: Handlers, tmp_path: Path, images: list[Path]) -> None:
    path = tmp_path / "tiny3.safetensors"
    safetensors.torch.save_file(_model(ARCH, 3).state_dict(), str(path))

    report = ui.models.verify_model(None, ARCH, None, "cat\ndog\nbird", str(path), None, False, str(images[0]))
    assert (
        report.startswith("### Model check passed ✓") and "**Classifier:** kept" in report and images[0].name in report
    )

    name, view, imported = ui.models.import_model(
        "pets", ARCH, None, "cat, dog, bird", str(path), None, "fast", False, None
    )
    assert name == "pets" and view.labels == LABELS and "**Classifier:** kept" in imported
    ui.import_images(name, "tab-1", [str(p) for p in images], [], False)
    session = registry.get(ui.projects_dir, name)
    wait_round(session)
    first = ui.current(name, "tab-1")
    assert first.image_id is not None and first.predictions is not None  # from the first image, before any label
    assert set(first.predictions) == set(LABELS)
    again = ui.models.verify_model(name, ARCH, None, "cat, dog, bird", str(path), None, False, None)
    assert f"`{images[0].name}` → output (1, 3)" in again  # one of the project's images, by its own name


def test_refusals_on_the_page(ui: Handlers, tmp_path: Path, evil: tuple[Path, Path]) -> None:
    path, marker = evil

    report = ui.models.verify_model(None, ARCH, None, "cat, dog, bird", str(path), None, False, None)
    with pytest.raises(gr.Error) as info:
        ui.models.import_model("evil", ARCH, None, "cat, dog, bird", str(path), None, "fast", False, None)

    assert report.startswith("### Model check failed ✗") and "tries to run code" in report
    assert "tries to run code" in str(info.value.message)
    assert not marker.exists() and "evil" not in ui.list_projects()
    onnx = tmp_path / "model.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.randn(1, 4),), str(onnx), dynamo=False)
    assert "ONNX model" in ui.models.verify_model(None, ARCH, None, "a, b", str(onnx), None, False, None)
    assert "Choose a model" in ui.models.verify_model(None, "", None, "a, b", None, None, False, None)


def test_model_types_of_the_new_project_form_work_without_a_file(ui: Handlers, images: list[Path]) -> None:
    report = ui.models.verify_model(None, TINY_MODEL, 2, "", None, None, False, str(images[0]))
    assert "Model check passed" in report and "(random)" in report and "**Classifier:** a new head" in report


# ------------------------------------------------------------------------------------------------ over HTTP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_verify_and_import_over_http(tmp_path: Path, evil: tuple[Path, Path]) -> None:
    from gradio_client import Client, handle_file

    from app.ui.layout import build_demo
    from app.ui.server import launch_kwargs

    projects = tmp_path / "projects"
    weights = tmp_path / "tiny3.safetensors"
    safetensors.torch.save_file(_model(ARCH, 3).state_dict(), str(weights))
    demo = build_demo(projects, model_choices=MODELS, base_settings=TINY)
    port = _free_port()
    _, url, _ = demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **launch_kwargs()
    )
    client = Client(url, verbose=False)
    try:
        report = client.predict(
            ARCH, None, "cat\ndog\nbird", handle_file(str(weights)), "", False, None, api_name="/verify_model"
        )
        assert "Model check passed" in report and "**Classifier:** kept" in report
        out = client.predict(
            "pets", ARCH, None, "cat, dog, bird", handle_file(str(weights)), "", "fast", False, None,
            api_name="/import_model",
        )  # fmt: skip
        assert out[0] == "pets" and "**Classifier:** kept" in out[-1]
        refused = client.predict(
            "evil", ARCH, None, "cat, dog, bird", handle_file(str(evil[0])), "", "fast", False, None,
            api_name="/import_model",
        )  # fmt: skip
        assert "Model check failed" in refused[-1] and "tries to run code" in refused[-1]
        assert not evil[1].exists() and not (projects / "evil").exists()
    finally:
        client.close()
        demo.close()
        registry.close_all(projects)
