"""The labeling image, the images fetched ahead and the answer mark, as the page receives them."""

from __future__ import annotations

import io
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image
from starlette.responses import PlainTextResponse
from starlette.testclient import TestClient

from app.core import tokens
from app.engine.queues import Tile
from app.ui import thumbnails
from app.ui.gridbox import grid_html
from app.ui.image_route import THUMB_QUERY, ImageRoute, file_of, image_url, register_root, resolve, thumb_url
from app.ui.imagebox import PLACEHOLDER, ZOOM_TITLE, answer_html, image_html, upcoming_html
from app.ui.views import LabelView, Upcoming


def src_of(tag_html: str) -> list[str]:
    """The files the page's image addresses name."""
    found = [file_of(unquote(s)) for s in re.findall(r'<img src="(alabel/image/[^"]+)"', tag_html)]
    return [str(f[0]) if f else "?" for f in found]


def _image(root: Path, rel: str) -> str:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"png")
    return str(path.resolve())


@pytest.fixture
def projects(tmp_path: Path) -> Path:
    register_root(tmp_path, private=False)
    return tmp_path


def test_the_image_is_the_projects_own_file_and_zooms_on_the_page(projects: Path) -> None:
    path = _image(projects, "my project/images/ab/cat-dog.png")
    view = LabelView(image_id=7, image_path=path, name="cat & dog.png")
    out = image_html(view)
    assert src_of(out) == [path]
    assert str(projects) not in out  # the address names the project and the image, not a server path
    assert 'data-id="7"' in out and 'alt="cat &amp; dog.png"' in out
    assert "<a " not in out and "_blank" not in out  # a click zooms in on the page (the page's script)
    assert f'title="{ZOOM_TITLE}"' in out
    assert "al-small" not in out
    small = image_html(LabelView(image_id=7, image_path=path, small=True))
    assert 'class="al-frame al-small"' in small
    assert image_html(view) != out  # every answer redraws, even for the same image


def test_no_image_shows_the_placeholder() -> None:
    out = image_html(LabelView(caption="Add images"))
    assert "<img" not in out and PLACEHOLDER in out


def test_images_ahead_keep_their_order_and_say_which_image_they_are(projects: Path) -> None:
    b, a = _image(projects, "p/images/b.png"), _image(projects, "p/images/a.png")
    out = upcoming_html([Upcoming(3, b, "b.png", True), Upcoming(1, a, "a.png", False)])
    assert src_of(out) == [b, a]
    assert re.findall(r'data-id="(\d+)" data-small="(\d)"', out) == [("3", "1"), ("1", "0")]
    assert upcoming_html([]) == "<div></div>"


def test_only_files_under_a_projects_images_have_an_address(projects: Path) -> None:
    with pytest.raises(ValueError):
        image_url(_image(projects, "p/project.db"))
    with pytest.raises(ValueError):
        image_url(_image(projects.parent / "elsewhere", "p/images/x.png"))


def test_a_workspace_image_reaches_only_tabs_of_that_workspace(tmp_path: Path) -> None:
    register_root(tmp_path, private=True)
    mine, theirs = tokens.new_token(), tokens.new_token()
    path = _image(tmp_path, f"workspaces/{tokens.token_id(mine)}/p/images/ab/x.png")
    address = image_url(path)
    my_tab, their_tab = (tokens.join_client(w, tokens.new_token()) for w in (mine, theirs))
    assert resolve(address, [my_tab]) == Path(path)
    assert resolve(address, [their_tab]) is None
    assert resolve(address, []) is None
    assert resolve(address, [mine]) is None  # a bare token names no workspace
    forged = tokens.join_client(mine.split("-")[0] + "-" + "0" * 24, tokens.new_token())
    assert resolve(address, [forged]) is None


def test_each_answer_mark_is_new() -> None:
    marks = {answer_html() for _ in range(3)}
    assert len(marks) == 3 and all("data-answer" in m for m in marks)


def _photo(root: Path, rel: str, side: int = 900) -> Path:
    """A noisy photo-sized PNG, well over `thumbnails.SMALL_BYTES`."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, (side, side // 2, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path.resolve()


def test_a_tile_gets_a_small_copy_made_once_inside_its_project_under_a_server_made_name(projects: Path) -> None:
    photo = _photo(projects, "p/images/ab/photo.png")
    images = photo.parents[1]
    small = thumbnails.thumbnail(photo, images)
    assert small.parent == projects / "p" / thumbnails.FOLDER / str(thumbnails.SIZE)  # outside images/: no address
    assert re.fullmatch(r"[0-9a-f]{32}\.webp", small.name)
    with Image.open(small) as img:
        assert max(img.size) == thumbnails.SIZE and img.size[0] < img.size[1]
    made = small.stat().st_mtime_ns
    assert thumbnails.ready(photo, images) == small and thumbnails.thumbnail(photo, images).stat().st_mtime_ns == made
    tiny = Path(_image(projects, "p/images/tiny.png"))
    assert thumbnails.thumbnail(tiny, images) == tiny  # small already: sent as it is
    assert thumbnails.inline(tiny) == "data:image/png;base64,cG5n"  # and tiny: in the page itself
    assert thumbnails.inline(photo) is None


def test_thumbnails_pass_the_same_checks_as_the_images(projects: Path) -> None:
    photo = _photo(projects, "p/images/photo.png")
    (projects / "p" / "project.db").write_bytes(b"private")
    routed = ImageRoute(PlainTextResponse("app"))
    client = TestClient(routed, base_url="http://127.0.0.1")  # (no lifespan: the app behind is a bare answer)
    address = "/" + thumb_url(photo)
    assert address.endswith(f"?{THUMB_QUERY}")
    assert client.get(address).status_code == 403  # no tab id from this server
    client.cookies.set("alabel_client", tokens.new_token())
    answer = client.get(address)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/webp"
    assert "immutable" in answer.headers["cache-control"]
    with Image.open(io.BytesIO(answer.content)) as img:
        assert max(img.size) == thumbnails.SIZE
    assert client.get("/" + image_url(photo)).content == photo.read_bytes()  # the full image, as before
    base = address.split("/p/")[0] + "/p"
    for sneaky in ("../project.db", "..%2Fproject.db", "../thumbnails", "x.png"):
        assert client.get(f"{base}/{sneaky}?{THUMB_QUERY}").status_code in (403, 404), sneaky
    name = next((projects / "p" / thumbnails.FOLDER).rglob("*.webp")).name
    assert client.get(f"{base}/{name}?{THUMB_QUERY}").status_code == 403  # a thumbnail has no address


def test_a_grid_page_inlines_tiny_images_and_holds_back_the_next_pages_thumbnails(projects: Path) -> None:
    tiny, photo = _image(projects, "p/images/t.png"), str(_photo(projects, "p/images/big.png"))
    out = grid_html([(Tile(1, "a", 0.9), tiny)], selected=True, note="", ahead=[(Tile(2, "a", 0.8), photo)])
    shown, ahead = out.split("al-grid-ahead")
    assert 'src="data:image/png;base64,' in shown
    assert 'data-src="alabel/image/' in ahead and " src=" not in ahead  # asked for once the page shown is in
