"""The shared-project panel (crowd mode): who you label as, Hugging Face sign-in on a Space, and the host's
sign-in with the settings only the host may change (the share of images two annotators label).

Built only when the server shares one project; the host tools of the page (adding images, models, exports) stay
hidden until this tab is the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.ui.errors import friendly, plain
from app.ui.handlers import Handlers
from app.ui.states import States
from app.ui.updates import QUIET


@dataclass(frozen=True)
class CrowdPanel:
    """Whoami line, host sign-in, the overlap setting."""

    whoami: gr.Markdown
    password: gr.Textbox
    sign_in: gr.Button
    overlap: gr.Slider
    save_overlap: gr.Button
    host_settings: gr.Group


def whoami_text(h: Handlers, client: str | None) -> str:
    """ "You label as **ann**." (and "You are the host." for the host)."""
    name = h.who(client)
    host = " You are the host." if h.visitors.is_host(client) and h.hosting.crowd else ""
    return f"Everyone here labels **{plain(h.hosting.shared_project)}** together. You label as **{plain(name)}**.{host}"


def build_crowd_panel(h: Handlers) -> CrowdPanel:
    """Lay out the panel (inside the page's left column)."""
    gr.Markdown("### Shared labeling")
    whoami = gr.Markdown(elem_id="al-whoami")
    if h.hosting.hf_login:
        gr.LoginButton(size="sm")
    with gr.Accordion("Host", open=False):
        password = gr.Textbox(label="Host password", type="password", max_lines=1)
        sign_in = gr.Button("Sign in as host", size="sm")
        with gr.Group(visible=False) as host_settings:
            overlap = gr.Slider(
                0,
                0.5,
                step=0.05,
                value=0.0,
                label="Second opinions",
                info="Share of images two annotators label, to measure how well they agree.",
            )
            save_overlap = gr.Button("Save setting", size="sm")
    return CrowdPanel(whoami, password, sign_in, overlap, save_overlap, host_settings)


def wire_crowd_panel(panel: CrowdPanel, states: States, h: Handlers, *, host_tools: gr.Column) -> None:
    """Attach the panel's events (inside the Blocks context).

    Args:
        host_tools: the page's host-only panels (adding images, models, exports), shown once this tab is the host.
    """

    @friendly
    def sign_in(client: str | None, project: str | None, password: str) -> tuple[Any, ...]:
        client = h.new_client(client)
        if not h.visitors.sign_in_host(client, password):
            raise gr.Error("That is not the host password.")
        session = h.sessions.get(project) if project else None
        overlap = session.settings.overlap if session is not None else 0.0
        shown = gr.update(visible=True)
        return "", whoami_text(h, client), shown, gr.update(visible=True), overlap

    panel.sign_in.click(
        sign_in,
        [states.client, states.project, panel.password],
        [panel.password, panel.whoami, panel.host_settings, host_tools, panel.overlap],
        api_name="host_sign_in",
        **QUIET,
    )

    @friendly
    def save_overlap(client: str | None, project: str | None, fraction: float) -> None:
        h.visitors.require_host(client)
        h.sessions.get(project).set_overlap(float(fraction))
        gr.Info(f"From the next batch on, {float(fraction):.0%} of the images get a second opinion.")

    panel.save_overlap.click(
        save_overlap, [states.client, states.project, panel.overlap], None, api_name="set_overlap", **QUIET
    )
