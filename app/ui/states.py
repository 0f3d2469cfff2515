"""The page's shared states: what this tab is (client id), which project it has open, the image on screen.

Every panel reads some of them; `gr.State` never reaches the browser, so hidden textboxes carry the values the
tab's sessionStorage keeps (see `app.ui.hotkeys.INIT_JS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from app.core import tokens
from app.engine.demo import DEMO_NAME

WORKSPACE_KEY = "alabel-workspace"


@dataclass(frozen=True)
class States:
    """The page's states and hidden carriers.

    Attributes:
        workspace: the visitor's workspace token, kept in the browser's local storage (empty outside private
            workspaces; see `app.ui.sessions`).
        client: the tab's server-signed client id.
        project: the open project's reference (its name, or "<workspace>/<name>"; see `app.ui.sessions`).
        client_box: the client id as the browser keeps it (hidden).
        project_box: the project name as the browser keeps it (hidden); its change reloads project views.
        cursor: the image on screen: {"image_id", "shown_at"}.
        job_key: the last seen round job key (see `app.ui.views.job_key`).
        round: the number of rounds recorded; the dashboard redraws when it changes.
        timer: the poll of the round job's status.
    """

    workspace: gr.BrowserState
    client: gr.State
    project: gr.State
    client_box: gr.Textbox
    project_box: gr.Textbox
    cursor: gr.State
    job_key: gr.State
    round: gr.State
    timer: gr.Timer


def build_states(demo: bool, private: bool = False) -> States:
    """Create the states (inside the Blocks context); `demo` opens the digits demo project (the visitor's own
    copy in a private workspace, once the page has loaded)."""
    return States(
        workspace=gr.BrowserState("", storage_key=WORKSPACE_KEY, secret=tokens.browser_secret()),
        client=gr.State(None),
        project=gr.State(DEMO_NAME if demo and not private else None),
        client_box=gr.Textbox("", visible=False),
        project_box=gr.Textbox(DEMO_NAME if demo else "", visible=False),
        cursor=gr.State({"image_id": None, "shown_at": 0.0}),
        job_key=gr.State(None),
        round=gr.State(-1),
        timer=gr.Timer(1.0),
    )
