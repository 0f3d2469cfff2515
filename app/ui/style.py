"""The look: a soft theme with system fonts (nothing fetched from the web) and a little CSS."""

from __future__ import annotations

import re

import gradio as gr

IMAGE_HEIGHT = 540
PHONE_WIDTH = 700  # px: below it the page is laid out for a phone (the project column folds away)
# Shown on a phone only: shows or hides the project column (the page's script, `app.ui.hotkeys`, toggles it).
SIDE_TOGGLE = (
    '<button type="button" id="al-side-toggle" aria-controls="al-side" aria-expanded="false">☰ Project</button>'
)


def theme() -> gr.themes.Base:
    """A calm, soft theme; system fonts so the page works offline."""
    return gr.themes.Soft(
        primary_hue="indigo",
        secondary_hue="slate",
        neutral_hue="slate",
        radius_size="md",
        font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
    ).set(
        body_background_fill="*neutral_50",
        block_shadow="none",
        button_large_radius="*radius_md",
    )


CSS = """
:root { --al-ok: #16a34a; --al-bad: #dc2626; }
.gradio-container { width: 100% !important; max-width: 1500px !important; margin: 0 auto !important; }
#al-header h1 { font-size: 1.45rem; margin: 0.2rem 0 0; font-weight: 650; letter-spacing: -0.01em; }
#al-header p { margin: 0.1rem 0 0.4rem; color: var(--body-text-color-subdued); }

/* the image: as large as the panel allows, aspect ratio kept, never stretched or mirrored */
#al-image .al-frame { height: clamp(240px, calc(100vh - 300px), __IMAGE_HEIGHT__px); display: flex;
  align-items: center; justify-content: center; background: var(--neutral-100); border-radius: var(--radius-md);
  overflow: hidden; }
#al-image .al-frame img { width: 100%; height: 100%; object-fit: contain; transform: none; user-select: none;
  cursor: zoom-in; }
/* the zoom: the image over the whole page, as large as the window allows; Esc or a click closes it */
#al-zoom { position: fixed; inset: 0; z-index: 1000; display: flex; align-items: center; justify-content: center;
  background: rgba(15, 23, 42, 0.9); cursor: zoom-out; }
#al-zoom img { width: 96vw; height: 96vh; object-fit: contain; }
#al-zoom.al-small img { image-rendering: pixelated; }
#al-image .al-frame.al-small img { image-rendering: pixelated; }
#al-image .al-empty { color: var(--body-text-color-subdued); padding: 1rem; text-align: center; }
/* while the server's answer for the image already on screen is on its way, its old details are dimmed */
body.al-pending #al-caption, body.al-pending #al-predictions, body.al-pending #al-progress { opacity: 0.45; }
body.al-pending #al-labels label:has(input:checked) { background: none !important;
  border-color: var(--border-color-primary); font-weight: normal; transition: none; }
#al-caption { min-height: 3.2em; }
#al-prefetch, #al-answer { display: none !important; }
#al-caption p { margin: 0.15rem 0; }

/* label choices as big buttons; the first ten show their number key (1-9, then 0) */
#al-labels .wrap { gap: 0.5rem; counter-reset: alkey; }
#al-labels label { counter-increment: alkey; position: relative; display: flex; align-items: center; gap: 0.6rem;
  font-size: 1.05rem; padding: 0.5rem 0.75rem; min-width: 5.5rem; border-radius: var(--radius-md); cursor: pointer;
  border: 1px solid var(--border-color-primary); box-shadow: none; }
#al-labels label input[type=radio] { position: absolute; opacity: 0; width: 1px; height: 1px; pointer-events: none; }
#al-labels label:nth-child(-n+10)::before { content: counter(alkey); display: inline-flex; align-items: center;
  justify-content: center; min-width: 1.45em; height: 1.45em; border-radius: 4px; font-size: 0.78rem;
  font-family: var(--font-mono); color: var(--body-text-color-subdued); border: 1px solid var(--border-color-primary);
  background: var(--background-fill-primary); }
#al-labels label:nth-child(10)::before { content: "0"; }
#al-labels label:has(input:checked) { background: var(--color-accent-soft); border-color: var(--color-accent);
  color: var(--body-text-color); font-weight: 600; }
#al-labels label:has(input:checked) span { color: var(--body-text-color); }
#al-labels label:has(input:focus-visible) { outline: 2px solid var(--color-accent); outline-offset: 1px; }
#al-actions { flex-wrap: nowrap; gap: 0.4rem; }
#al-actions button { min-width: 0; white-space: nowrap; padding-left: 0.4rem; padding-right: 0.4rem; }
/* the model's guess with its Accept button, right under the labels */
#al-predictions .output-class { font-size: 1.3rem; padding: 0.1rem 0 0.3rem; }
#al-predictions .confidence-set { margin-bottom: 0.25rem; }
#al-predictions .confidence-set:nth-of-type(n+4) { display: none; }  /* the top three (the API has all) */
#al-accept { border: 1px solid var(--color-accent); color: var(--color-accent); font-weight: 600; margin-top: -4px; }
#al-side-panel:not(:has([data-testid=label-output-value])) #al-accept { opacity: 0.45; }  /* no guess yet */
#al-side-toggle { display: none; }
#al-label-set .al-label-row { align-items: flex-end; }
#al-label-set .al-label-row button { margin-bottom: 0.35rem; }
/* a message saying again what one on screen says (app.ui.hotkeys), and the count it added to the title */
.al-twin, [data-testid=toast-body]:has(.al-twin) .toast-count { display: none !important; }
/* the upload fields' titles sit above their drop zones, not over them */
#al-upload-folder > label[data-testid=block-label], #al-upload-files > label[data-testid=block-label] {
  position: static; margin: 0 0 0.3rem; }
#al-keys { color: var(--body-text-color-subdued); font-size: 0.85rem; }
#al-keys kbd { font-family: var(--font-mono); font-size: 0.8rem; padding: 0 0.35em; border-radius: 4px;
  border: 1px solid var(--border-color-primary); background: var(--background-fill-primary); }

/* status line with a thin progress bar */
.al-status { display: flex; flex-direction: column; gap: 4px; padding: 0.55rem 0.8rem; border-radius: var(--radius-md);
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary); font-size: 0.92rem; }
.al-status.al-running { border-color: var(--color-accent); }
.al-status.al-failed { border-color: var(--al-bad); color: var(--al-bad); }
.al-bar { height: 4px; border-radius: 2px; background: var(--neutral-200); overflow: hidden; }
.al-bar > div { height: 100%; background: var(--color-accent); transition: width 0.4s ease; }

.al-note { color: var(--body-text-color-subdued); }
.al-confusion { overflow-x: auto; }
.al-confusion table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.al-confusion caption { caption-side: bottom; text-align: left; padding-top: 0.4rem; font-size: 0.85rem;
  color: var(--body-text-color-subdued); }
.al-confusion th, .al-confusion td { padding: 0.3rem 0.55rem; text-align: center;
  border: 1px solid var(--border-color-primary); }
.al-confusion th.corner { font-weight: 400; font-size: 0.8rem; color: var(--body-text-color-subdued); }
footer { opacity: 0.6; }
"""

# A phone: the image, the label keys and the guess on one screen; the project column folds away once there is an
# image to label (the button in the header shows it again). It goes into the page's head as it is (`app.ui.hotkeys`):
# Gradio rewrites the selectors inside a media query of `CSS` (body classes and `.gradio-container` would not match).
PHONE_CSS = """
@media (max-width: __PHONE__px) {
  .gradio-container { padding: 0 4px !important; }
  .gradio-container .main, .gradio-container .wrap.fillable { padding-left: 0 !important; padding-right: 0 !important; }
  #al-header { position: relative; }
  #al-header h1 { font-size: 1.05rem; margin: 0; padding-right: 6rem; }
  #al-header p { display: none; }
  #al-side-toggle { display: inline-block; position: absolute; right: 0; top: 0; font-size: 0.8rem; white-space: nowrap;
    padding: 0.25rem 0.6rem; border-radius: var(--radius-md); border: 1px solid var(--border-color-primary);
    background: var(--background-fill-primary); color: var(--body-text-color); }
  body:not(.al-side-open):not(:has(#al-image .al-empty)) #al-side { display: none !important; }
  .al-status { padding: 0.3rem 0.5rem; font-size: 0.78rem; }
  .al-status > span { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden; }
  #al-panel, #al-panel > .column { gap: 6px !important; }
  #al-image .al-frame { height: min(34vh, 300px); }
  #al-caption { min-height: 0; font-size: 0.8rem; }
  #al-caption p { display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden; }
  #al-labels .wrap { gap: 0.3rem; }
  #al-labels label { flex: 1 1 3.6rem; min-width: 0; padding: 0.4rem 0.45rem; gap: 0.35rem; font-size: 1rem; }
  #al-labels label::before { font-size: 0.65rem; }
  #al-predictions .confidence-set:nth-of-type(n+2) { display: none; }
  #al-keys { display: none; }
}
""".replace("__PHONE__", str(PHONE_WIDTH))
# Gradio's own rules for `CSS` come with a long prefix, so every phone declaration is marked important to win.
PHONE_CSS = re.sub(r"(?<!important)(?<!\{);", " !important;", PHONE_CSS.replace(" !important;", ";"))
CSS = CSS.replace("__IMAGE_HEIGHT__", str(IMAGE_HEIGHT))
