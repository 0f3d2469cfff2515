"""The labeling image, the images fetched ahead and the answer mark, as the page receives them."""

from __future__ import annotations

import re
from urllib.parse import unquote

from app.ui.imagebox import PLACEHOLDER, answer_html, image_html, upcoming_html
from app.ui.views import LabelView, Upcoming


def src_of(tag_html: str) -> list[str]:
    return [unquote(s) for s in re.findall(r'<img src="gradio_api/file=([^"]+)"', tag_html)]


def test_the_image_is_the_projects_own_file_with_a_full_size_link() -> None:
    view = LabelView(image_id=7, image_path="/data/my project/images/ab/cat & dog.png", name="cat & dog.png")
    out = image_html(view)
    assert src_of(out) == ["/data/my project/images/ab/cat & dog.png"]
    assert 'data-id="7"' in out and 'alt="cat &amp; dog.png"' in out
    assert re.search(r'<a href="gradio_api/file=[^"]+" target="_blank"', out)
    assert "al-small" not in out
    small = image_html(LabelView(image_id=7, image_path="/p/x.png", small=True))
    assert 'class="al-frame al-small"' in small
    assert image_html(view) != out  # every answer redraws, even for the same image


def test_no_image_shows_the_placeholder() -> None:
    out = image_html(LabelView(caption="Add images"))
    assert "<img" not in out and PLACEHOLDER in out


def test_images_ahead_keep_their_order_and_say_which_image_they_are() -> None:
    items = [Upcoming(3, "/p/b.png", "b.png", True), Upcoming(1, "/p/a.png", "a.png", False)]
    out = upcoming_html(items)
    assert src_of(out) == ["/p/b.png", "/p/a.png"]
    assert re.findall(r'data-id="(\d+)" data-small="(\d)"', out) == [("3", "1"), ("1", "0")]
    assert upcoming_html([]) == "<div></div>"


def test_each_answer_mark_is_new() -> None:
    marks = {answer_html() for _ in range(3)}
    assert len(marks) == 3 and all("data-answer" in m for m in marks)
