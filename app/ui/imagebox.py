"""The image being labeled, the images fetched ahead of it, and the answer mark of labeling actions, as HTML.

The image is plain HTML (not `gr.Image`): the browser loads the project's own file by the same address the
fetch-ahead list used, so the next image is already in its cache, and the page's script (`app.ui.hotkeys`) can put
it on screen the moment a key is pressed, before the server's answer arrives.
"""

from __future__ import annotations

import html
import itertools

from app.ui.image_route import image_url
from app.ui.views import LabelView, Upcoming

PLACEHOLDER = "The image to label appears here."
ZOOM_TITLE = "Click to zoom (Esc or a click closes it)"  # the page's script opens the zoom (`app.ui.hotkeys`)
_answers = itertools.count(1)


def file_url(path: str) -> str:
    """The address the page fetches a project image from (see `app.ui.image_route`)."""
    return image_url(path)


def image_html(view: LabelView) -> str:
    """The labeling image, scaled to the frame with its aspect ratio kept; a placeholder when there is none.

    A click on it opens the full-size image over the page (the zoom of `app.ui.hotkeys`), not a new tab.
    """
    if view.image_id is None or not view.image_path:
        return f'<div class="al-frame al-empty"><span>{PLACEHOLDER}</span></div>'
    small = " al-small" if view.small else ""
    src = html.escape(file_url(view.image_path))
    # `data-view` differs on every answer, so the page always redraws the image the server chose
    return (
        f'<div class="al-frame{small}" data-id="{view.image_id}" data-view="{next(_answers)}" title="{ZOOM_TITLE}">'
        f'<img src="{src}" alt="{html.escape(view.name)}" draggable="false"></div>'
    )


def upcoming_html(items: list[Upcoming]) -> str:
    """Hidden images the browser fetches ahead; the first is what the page shows at once on the next label."""
    tags = "".join(
        f'<img src="{html.escape(file_url(u.path))}" alt="{html.escape(u.name)}" data-id="{u.image_id}"'
        f' data-small="{int(u.small)}">'
        for u in items
    )
    return f"<div>{tags}</div>"


def answer_html() -> str:
    """A mark that changes with every answer to a labeling action, so the page knows the answer has arrived."""
    return f'<span data-answer="{next(_answers)}"></span>'
