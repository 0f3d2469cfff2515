"""The look: a soft theme with system fonts (nothing fetched from the web) and a little CSS."""

from __future__ import annotations

import gradio as gr

IMAGE_HEIGHT = 540


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
#al-image .al-frame { height: min(__IMAGE_HEIGHT__px, 70vh); display: flex; align-items: center;
  justify-content: center; background: var(--neutral-100); border-radius: var(--radius-md); overflow: hidden; }
#al-image .al-frame a { display: block; width: 100%; height: 100%; cursor: zoom-in; }
#al-image .al-frame img { width: 100%; height: 100%; object-fit: contain; transform: none; user-select: none; }
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
  font-size: 1.05rem; padding: 0.65rem 0.9rem; min-width: 6.5rem; border-radius: var(--radius-md); cursor: pointer;
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
#al-actions button { min-width: 0; }
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
""".replace("__IMAGE_HEIGHT__", str(IMAGE_HEIGHT))
