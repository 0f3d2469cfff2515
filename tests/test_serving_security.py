"""What the running app serves, to whom, and who is recorded as the annotator."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from app import cli
from app.core import tokens
from app.engine.demo import write_digits
from app.engine.session import ActiveLearningSession
from app.ui import registry
from app.ui.downloads import hand_out
from app.ui.handlers import CUSTOM, Handlers
from app.ui.host_guard import allowed, host_name
from app.ui.image_route import image_url
from app.ui.visitors import annotator, new_client_id
from tests.browser_support import running_app
from tests.ui_support import DIGITS, MODELS, TINY, wait_round


def _project(projects: Path, name: str, images: Path) -> ActiveLearningSession:
    """A project with images, and files like those a real one grows: checkpoints, embeddings, exports."""
    session = ActiveLearningSession.create(projects, name, DIGITS, TINY)
    session.add_data(write_digits(images, size=32, limit=6))
    root = session.store.root
    for rel in ("checkpoints/round_0001.ckpt", "checkpoints/round_0001.json", "embeddings/key/vectors.npy"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"private model bytes")
    session.export("labels_csv")
    return session


@pytest.fixture(scope="module")
def app_and_projects(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    projects = tmp_path_factory.mktemp("projects")
    images = tmp_path_factory.mktemp("images")
    registry.register(projects, _project(projects, "mine", images / "a"))
    _project(projects, "other", images / "b").close()
    with running_app(projects, model_choices=MODELS, base_settings=TINY) as url:
        yield url, projects


def _get(url: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def _file_routes(path: Path) -> list[str]:
    text = quote(str(path))
    return [f"/gradio_api/file={text}", f"/gradio_api/file/{text}"]


def _cookie(client: str) -> dict[str, str]:
    return {"Cookie": f"alabel_client_7860={client}"}


def test_only_images_of_projects_reach_a_page_of_this_server(app_and_projects: tuple[str, Path]) -> None:
    url, projects = app_and_projects
    mine = registry.get(projects, "mine")
    image = mine.store.image_path(mine.store.image_ids()[0])
    address = "/" + image_url(image)
    assert str(projects) not in address  # no server path in the page
    assert _get(url, address, _cookie(tokens.new_token())).status == 200
    assert _get(url, address).status == 403  # not from a page this server handed a tab id
    assert _get(url, address, _cookie(tokens.new_token(b"another server's key"))).status == 403
    for route in _file_routes(image):  # Gradio's own file route serves no project file at all
        assert _get(url, route).status in (403, 404), route
    private = [
        projects / "mine" / "project.db",
        projects / "mine" / "checkpoints" / "round_0001.ckpt",
        projects / "mine" / "embeddings" / "key" / "vectors.npy",
        projects / "mine" / "exports" / "labels.csv",
        projects / "other" / "exports" / "labels.csv",
        projects / "other" / "project.db",
    ]
    base = address.split("/mine/")[0] + "/mine"
    for path in private:
        assert path.is_file()
        for route in _file_routes(path):
            assert _get(url, route).status in (403, 404), route
    for sneaky in ("../project.db", "..%2Fproject.db", "%2E%2E/project.db", "../../other/project.db"):
        assert _get(url, f"{base}/{sneaky}", _cookie(tokens.new_token())).status in (403, 404), sneaky


def test_a_request_for_another_host_or_from_another_site_is_refused(app_and_projects: tuple[str, Path]) -> None:
    url, _ = app_and_projects
    port = urlsplit(url).port
    assert _get(url, "/").status == 200
    assert _get(url, "/", {"Host": f"localhost:{port}"}).status == 200
    assert _get(url, "/", {"Origin": f"http://127.0.0.1:{port}"}).status == 200
    for headers in (
        {"Host": "evil.example"},
        {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"},
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": f"http://127.0.0.1:{port + 1}"},  # a page of another local server
        {"Origin": f"http://localhost:{port}"},  # not the page's own origin (Host is 127.0.0.1)
        {"Host": f"evil.example:80@127.0.0.1:{port}"},
    ):
        response = _get(url, "/gradio_api/info", headers)
        assert response.status == 403, headers
        assert response.getheader("access-control-allow-origin") is None


def test_host_names_are_read_like_a_browser_sends_them() -> None:
    assert host_name("127.0.0.1:7860") == "127.0.0.1"
    assert host_name("[::1]:7860") == "::1"
    assert host_name("http://LOCALHOST:80") == "localhost"
    assert allowed({"host": "app.localhost:7860"})
    assert not allowed({"host": "127.0.0.1.evil.example"})
    assert not allowed({"host": "localhost.evil.example"})
    assert not allowed({})


def test_a_download_is_a_private_copy_outside_the_project(tmp_path: Path) -> None:
    export = tmp_path / "projects" / "p" / "exports" / "labels.csv"
    export.parent.mkdir(parents=True)
    export.write_text("image_id,label\n1,a\n", encoding="utf-8")
    first, second = hand_out(export), hand_out(export)
    assert first.name == "labels.csv" and first.read_bytes() == export.read_bytes()
    assert first.parent != second.parent
    assert not first.is_relative_to(tmp_path / "projects")


def test_the_export_button_downloads_the_export(app_and_projects: tuple[str, Path]) -> None:
    from gradio_client import Client

    url, projects = app_and_projects
    client = Client(url, verbose=False)
    try:
        client.predict(api_name="/init")
        client.predict("mine", api_name="/open_project")
        downloaded = client.predict("labels_csv", api_name="/export")
    finally:
        client.close()
    path = Path(downloaded["value"] if isinstance(downloaded, dict) else downloaded)
    assert path.read_bytes() == (projects / "mine" / "exports" / "labels.csv").read_bytes()


# ------------------------------------------------------------------------------------------ share and sign-in
def test_share_needs_sign_in_or_an_explicit_public(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--share"]) == 2
    assert "--auth" in capsys.readouterr().err
    assert cli.main(["--share", "--auth", "nocolon"]) == 2


def test_auth_file_lists_several_users(tmp_path: Path) -> None:
    users = tmp_path / "users.txt"
    users.write_text("# annotators\nann:secret\n\nbob: pass:word\n", encoding="utf-8")
    assert cli._auth_pairs(["carol:pw"], str(users)) == [("carol", "pw"), ("ann", "secret"), ("bob", " pass:word")]
    users.write_text("ann:secret\nbroken line\n", encoding="utf-8")
    with pytest.raises(cli.AppError, match="line 2"):
        cli._auth_pairs([], str(users))
    with pytest.raises(cli.AppError, match="twice"):
        cli._auth_pairs(["ann:a", "ann:b"], None)


def test_a_tab_cannot_take_another_tabs_id() -> None:
    mine = new_client_id()
    assert tokens.verify(mine) and new_client_id(mine) == mine
    seen_in_an_export = annotator(mine)  # "user#<8 characters>"
    forged = seen_in_an_export.split("#")[1] + "-0123456789abcdef"
    assert new_client_id(forged) != forged
    assert new_client_id(mine[:-1] + ("0" if mine[-1] != "0" else "1")) != mine
    assert annotator(new_client_id(forged)) != seen_in_an_export


def test_the_signed_in_name_is_the_annotator_and_undo_is_per_person(tmp_path: Path) -> None:
    ui = Handlers(tmp_path / "projects", model_choices=MODELS, base_settings=TINY)
    session = ActiveLearningSession.create(ui.projects_dir, "p", DIGITS, TINY)
    registry.register(ui.projects_dir, session)
    try:
        ui.import_images(
            "p", new_client_id(), [str(f) for f in write_digits(tmp_path / "i", size=32, limit=12)], [], False
        )
        wait_round(session)
        tab_a, tab_b = new_client_id(), new_client_id()
        view = ui.current("p", tab_a)
        ui.submit("p", tab_a, view.cursor, "3", user="alice")
        other = ui.current("p", tab_b)
        ui.submit("p", tab_b, other.cursor, "4", user="bob")
        assert [a.annotator for a in session.store.history()] == ["alice", "bob"]
        ui.undo("p", tab_b, None, user="alice")  # alice, from another tab, takes back her own label only
        assert [(a.annotator, a.undone) for a in session.store.history()] == [("alice", True), ("bob", False)]
    finally:
        registry.close_all(ui.projects_dir)


def test_the_tab_id_round_trips_through_the_page_and_cannot_be_made_up(app_and_projects: tuple[str, Path]) -> None:
    from gradio_client import Client

    url, _ = app_and_projects
    client = Client(url, verbose=False)
    try:
        # outputs: the workspace token (none outside workspaces), then the hidden box the tab keeps for reloads
        workspace, first = client.predict("", "", api_name="/init")[:2]
        assert workspace == "" and tokens.verify(first)
        assert client.predict(first, "", api_name="/init")[1] == first  # a reload keeps the tab's id
        forged = first[:-1] + ("0" if first[-1] != "0" else "1")
        assert client.predict(forged, "", api_name="/init")[1] not in (forged, first)
    finally:
        client.close()


def test_labeling_without_the_page_load_is_refused(app_and_projects: tuple[str, Path]) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError as ClientAppError

    url, _ = app_and_projects
    client = Client(url, verbose=False)
    try:
        client.predict("mine", api_name="/open_project")
        with pytest.raises(ClientAppError, match="reload the page"):
            client.predict("3", api_name="/submit_label")
        with pytest.raises(ClientAppError, match="reload the page"):
            client.predict(api_name="/undo")
    finally:
        client.close()


def test_names_in_messages_and_reports_are_shown_as_text(tmp_path: Path) -> None:
    from app.core.errors import AppError
    from app.engine.model_report import failure_markdown
    from app.ui.errors import friendly

    report = failure_markdown("The file names '<img src=https://evil.example/b.png>' as its architecture.")
    assert "<img" not in report

    @friendly
    def refuse() -> None:
        raise AppError("The label '<img src=https://evil.example/b.png>' is unknown.")

    with pytest.raises(Exception) as err:
        refuse()
    assert "<img" not in err.value.message and "&lt;img" in err.value.message


def test_server_model_folders_are_refused_when_the_app_is_shared(tmp_path: Path) -> None:
    import gradio as gr

    shared = Handlers(tmp_path / "projects", model_choices=MODELS, base_settings=TINY)
    for name in ("local-dir:/srv/models/private", "/etc", "~/models"):
        with pytest.raises(gr.Error, match="cannot be used when the app is shared"):
            shared.models.model_source(name, None, None, False)
        with pytest.raises(gr.Error, match="cannot be used when the app is shared"):
            shared.form_settings(CUSTOM, name, "margin", 5, 0.2, "fast", "Model default")
    local = Handlers(tmp_path / "projects", model_choices=MODELS, base_settings=TINY, allow_local_paths=True)
    assert local.models.model_source("local-dir:/srv/models/mine", None, None, False).arch.startswith("local-dir:")
