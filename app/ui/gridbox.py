"""A review grid page as HTML: thumbnails with the model's guess, selected or not, and the next page fetched ahead.

The page's script (`app.ui.grid_keys`) moves the focus ring, toggles selection and records the labels typed on
tiles; what it sends back is read from these tiles' ``data-*`` attributes. The next page comes as whole hidden
tiles (``.al-grid-ahead``), their images fetched (small copies, `app.ui.thumbnails`) once the page shown has its
own: on Enter the script moves them into the grid at once, and the server's answer then replaces them with the
page it computed.
"""

from __future__ import annotations

import html

from app.engine.queues import Tile
from app.ui.image_route import thumb_url
from app.ui.thumbnails import inline

EMPTY = "Nothing to review here yet."


def _caption(tile: Tile) -> str:
    if tile.suggested is not None and tile.label is not None:
        return f"labeled {html.escape(tile.label)} · maybe {html.escape(tile.suggested)}"
    if tile.label is not None:
        return f"labeled {html.escape(tile.label)}"
    if tile.guess is None:
        return "no guess yet"
    if tile.confidence is None:  # not calibrated yet: the guess without a percentage, as the labeling panel shows it
        return html.escape(tile.guess)
    return f"{html.escape(tile.guess)} · {tile.confidence:.0%}"


def tile_html(tile: Tile, path: str, selected: bool, *, later: bool = False) -> str:
    """One thumbnail (`path` is the image file; its small copy is what the browser fetches, or the image itself
    in the page when it is tiny, `app.ui.thumbnails.inline`) with its caption.

    With `later` (a tile of the next page, hidden) the address waits in ``data-src``: the page's script asks for
    it once the page shown has all its images, so they do not queue behind these."""
    state = " al-selected" if selected else ""
    check = ""
    if tile.suggested is not None and tile.label is not None:
        check = f' data-given="{html.escape(tile.label)}" data-suggested="{html.escape(tile.suggested)}"'
    address = inline(path)  # a tiny image: in the page itself, nothing to fetch
    source = "data-src" if later and address is None else "src"
    return (
        f'<div class="al-tile{state}" data-id="{tile.image_id}"{check} tabindex="-1">'
        f'<img {source}="{html.escape(address or thumb_url(path))}" alt="" draggable="false" decoding="async">'
        f'<button class="al-tile-more" type="button" title="More like this (M)" aria-label="More like this">≈</button>'
        f'<span class="al-tile-caption">{_caption(tile)}</span><span class="al-tile-label"></span></div>'
    )


def grid_html(
    tiles: list[tuple[Tile, str]],
    *,
    selected: bool,
    note: str,
    ahead: list[tuple[Tile, str]] = (),
    page: str = "",
) -> str:
    """The page `page`: `tiles` as (tile, image file), all `selected` or none, a line above it, and the next page's
    tiles (`ahead`) hidden, their images fetched once this page's are in, so the page's script can show them at
    once."""
    mark = html.escape(page)
    if not tiles:
        return f'<div class="al-grid-empty" data-page="{mark}">{html.escape(note or EMPTY)}</div>'
    body = "".join(tile_html(t, p, selected) for t, p in tiles)
    hidden = "".join(tile_html(t, p, selected, later=True) for t, p in ahead)
    return (
        f'<p class="al-grid-note">{html.escape(note)}</p>'
        f'<div class="al-grid" data-count="{len(tiles)}" data-page="{mark}">{body}</div>'
        f'<div class="al-grid-ahead" hidden>{hidden}</div>'
    )


GRID_CSS = """
#al-review-grid .al-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; }
#al-review-grid .al-tile { position: relative; border: 3px solid transparent; border-radius: 8px; padding: 4px;
  background: var(--block-background-fill); cursor: pointer; opacity: 0.55; outline: none; }
#al-review-grid .al-tile.al-selected { border-color: var(--color-accent); opacity: 1; }
#al-review-grid .al-tile.al-relabeled { border-color: #d97706; opacity: 1; }
#al-review-grid .al-tile.al-focus { box-shadow: 0 0 0 3px var(--body-text-color); }
#al-review-grid .al-tile img { width: 100%; aspect-ratio: 1; object-fit: contain; image-rendering: pixelated;
  display: block; user-select: none; }
#al-review-grid .al-tile-more { position: absolute; top: 6px; right: 6px; width: 1.9rem; height: 1.9rem;
  border-radius: 50%; border: 1px solid var(--border-color-primary); background: var(--background-fill-primary);
  color: var(--body-text-color); font-size: 1.05rem; line-height: 1; opacity: 0.85; cursor: pointer; padding: 0; }
#al-review-grid .al-tile-more:hover, #al-review-grid .al-tile.al-focus .al-tile-more { opacity: 1; }
#al-review-grid .al-tile.al-kept { border-color: #15803d; opacity: 1; }
#al-review-grid .al-tile.al-kept .al-tile-label { color: #15803d; }
#al-review-grid .al-grid.al-prefetched { outline: none; }
#al-review-grid .al-tile-caption { display: block; font-size: 0.85rem; text-align: center; }
#al-review-grid .al-tile-label { display: block; font-weight: 600; text-align: center; color: #b45309; }
#al-review-grid .al-grid-note, #al-review-grid .al-grid-empty { margin: 0.3rem 0 0.6rem; }
"""
