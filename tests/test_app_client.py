"""The whole app over HTTP: launched on a free local port and driven with gradio_client, like a browser would."""

from __future__ import annotations

import html
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app.engine.demo import write_digits
from app.ui import registry
from app.ui.image_route import file_of
from app.ui.layout import build_demo
from app.ui.server import launch_kwargs
from tests.ui_support import DIGITS, MODELS, TINY, TINY_MODEL, digit_of

PROJECT = "client-digits"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    projects = tmp_path_factory.mktemp("projects")
    demo = build_demo(projects, model_choices=MODELS, base_settings=TINY)
    _, url, _ = demo.launch(
        server_name="127.0.0.1",
        server_port=_free_port(),
        prevent_thread_lock=True,
        quiet=True,
        **launch_kwargs(),
    )
    try:
        yield url, projects
    finally:
        demo.close()
        registry.close_all(projects)


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_digits(tmp_path_factory.mktemp("digits"), size=32, limit=30)


@pytest.fixture
def client(server: tuple[str, Path]) -> Iterator[Client]:
    c = Client(server[0], verbose=False)
    c.predict(api_name="/init")
    try:
        yield c
    finally:
        c.close()


def value(update: Any) -> Any:
    """The value inside a component update (gradio_client returns updates as dicts)."""
    return update.get("value") if isinstance(update, dict) and update.get("__type__") == "update" else update


def file_name(caption: str) -> str:
    match = re.match(r"\*\*(.+?)\*\*", caption or "")
    assert match, caption
    return match.group(1)


def image_file(image_html: str) -> Path:
    """The project file the labeling image shows (its address names the project and the image, not a path)."""
    match = re.search(r'<img src="(alabel/image/[^"]+)"', image_html or "")
    assert match, image_html
    found = file_of(unquote(html.unescape(match.group(1))))
    assert found is not None, match.group(1)
    return found[0]


def wait_for(check: Callable[[], Any], timeout: float = 120.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError("timed out")


def test_create_upload_label_a_batch_and_see_predictions(
    server: tuple[str, Path], client: Client, digit_files: list[Path]
) -> None:
    # Labeling events return: image (HTML), caption, labels, predictions, progress, prefetch (the server keeps the
    # state), and for labeling actions an answer mark.
    project, dropdown, image, caption, labels, _pred, _progress, _prefetch = client.predict(
        PROJECT, TINY_MODEL, "", "\n".join(DIGITS), "margin", TINY.batch_size, 0.2, "fast", "Model default",
        api_name="/start_project",
    )  # fmt: skip
    assert project == PROJECT and value(dropdown) == PROJECT
    assert [v for _, v in labels["choices"]] == DIGITS
    assert "<img" not in value(image) and "appears here" in value(image) and "Add images" in caption

    folder = [handle_file(str(f)) for f in digit_files]
    out = client.predict(folder, None, "", False, api_name="/import_images")
    report, folder_widget, files_widget = out[:3]
    assert f"**Imported {len(digit_files)}**" in report and "rejected 0" in report
    assert folder_widget["value"] is None and files_widget["value"] is None  # both upload widgets are cleared

    def first_image() -> tuple | None:
        polled = client.predict(api_name="/poll")  # status, then the labeling outputs
        return polled[1:] if "<img" in (value(polled[1]) or "") else None  # None: no change this tick

    view = wait_for(first_image)
    labeled = []
    for i in range(TINY.batch_size):
        image, caption, _labels, _pred, progress, prefetch = view[:6]
        assert "<img" in value(prefetch)  # the next images (after the batch's last one, its extension)
        assert image_file(value(image)).is_file()
        name = file_name(caption)
        assert name not in labeled
        assert f"Image **{i + 1}** of" in progress
        labeled.append(name)
        view = client.predict(digit_of(name), api_name="/submit_label")

    session = registry.get(server[1], PROJECT)
    assert {session.store.get_image(i).original_name for i in session.store.current_labels()} == set(labeled)

    def round_done() -> bool:
        status = client.predict(api_name="/poll")[0]
        return "Model of round 1 ready" in status

    wait_for(round_done)
    image, caption, _labels, predictions, progress, _prefetch, answer = client.predict(
        digit_of(file_name(view[1])), api_name="/submit_label"
    )
    assert image_file(value(image)).is_file() and "Round **1**" in progress and "data-answer" in answer
    # No random checks have calibrated the model yet: its top label shows, without a percentage, and the caption
    # says why.
    assert value(predictions)["label"] in DIGITS and not value(predictions).get("confidences")
    assert "without a percentage" in value(caption) or "not sure yet" in value(caption)

    summary, _curve, counts, _confusion, history, annotators = client.predict(api_name="/dashboard")
    assert f"**{TINY.batch_size + 1}** of {len(digit_files)}" in summary
    assert history["data"][0][0] == 1  # round 1
    assert sum(row[1] for row in counts["data"]) == TINY.batch_size + 1
    assert value(annotators) == ""  # one person labeling alone: no annotator table

    exported = value(client.predict("labels_csv", api_name="/export"))
    lines = Path(exported).read_text().strip().splitlines()
    assert len(lines) == TINY.batch_size + 2  # header + labels


def test_two_clients_get_different_images(server: tuple[str, Path], client: Client) -> None:
    other = Client(server[0], verbose=False)
    try:
        other.predict(api_name="/init")
        first = client.predict(PROJECT, api_name="/open_project")
        second = other.predict(PROJECT, api_name="/open_project")
        assert "<img" in value(first[2]) and "<img" in value(second[2])
        assert file_name(first[3]) != file_name(second[3])
    finally:
        other.close()


def test_errors_reach_the_client_as_messages(client: Client) -> None:
    with pytest.raises(AppError, match="already exists"):
        client.predict(
            PROJECT, TINY_MODEL, "", "a, b", "margin", 5, 0.2, "fast", "Model default", api_name="/start_project"
        )
    with pytest.raises(AppError, match="Open a project"):
        client.predict(api_name="/skip")
    with pytest.raises(AppError, match="Choose a folder"):
        client.predict(None, None, "", False, api_name="/import_images")
