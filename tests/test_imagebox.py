"""The labeling image, the images fetched ahead and the answer mark, as the page receives them."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from app.core import tokens
from app.ui.image_route import file_of, image_url, register_root, resolve
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
