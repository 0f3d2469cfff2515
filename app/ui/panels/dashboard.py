"""The Dashboard tab: learning curve (the accuracy estimate and its range), the stop advice, labels per class, the
latest measured round's accuracy per label and mistakes, the rounds so far.

What it shows is built as plain data by `app.ui.dashboard`; this module lays it out and redraws it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.ui import dashboard
from app.ui.handlers import Handlers
from app.ui.states import States
from app.ui.updates import PRIVATE

CURVE_TITLE = "Accuracy on random checks (95% range)"


@dataclass(frozen=True)
class DashboardPanel:
    """The Dashboard tab; `tab` redraws it when selected."""

    tab: gr.Tab
    summary: gr.Markdown
    curve: gr.LinePlot
    counts: gr.BarPlot
    confusion: gr.HTML
    history: gr.Dataframe
    annotators: gr.HTML
    refresh: gr.Button

    def outputs(self) -> list[gr.components.Component]:
        """What a redraw updates, in the order of `dashboard_updates`."""
        return [self.summary, self.curve, self.counts, self.confusion, self.history, self.annotators]


def dashboard_updates(h: Handlers, project: str | None) -> tuple[Any, ...]:
    """The dashboard of `project` (an empty one without a project)."""
    d = dashboard.build(h.sessions.maybe(project))
    curve = gr.update(value=d.curve, title=d.curve_note or CURVE_TITLE)
    return d.summary, curve, d.counts, d.confusion, d.history, d.annotators


def build_dashboard_panel() -> DashboardPanel:
    """Lay out the Dashboard tab (inside the page's tabs)."""
    with gr.Tab("Dashboard", id="dashboard") as tab:
        summary = gr.Markdown()
        with gr.Row():
            curve = gr.LinePlot(
                x="labeled",
                y="value",
                color="metric",
                title=CURVE_TITLE,
                x_title="labeled images",
                y_title="accuracy",
                y_lim=[0, 1.05],
                height=300,
            )
            counts = gr.BarPlot(x="label", y="count", title="Labels per class", height=300, sort=None, y_lim=[0, None])
        with gr.Row():
            with gr.Column():
                gr.Markdown("#### Accuracy per label and mistakes (latest measured round)")
                confusion = gr.HTML()
            with gr.Column():
                gr.Markdown("#### Rounds")
                history = gr.Dataframe(
                    interactive=False,
                    wrap=True,
                    max_height=320,
                    column_widths=["9%", "23%", "12%", "13%", "17%", "13%", "13%"],
                )
        annotators = gr.HTML(elem_id="al-annotators")
        refresh = gr.Button("Refresh", size="sm")
    return DashboardPanel(
        tab=tab,
        summary=summary,
        curve=curve,
        counts=counts,
        confusion=confusion,
        history=history,
        annotators=annotators,
        refresh=refresh,
    )


def wire_dashboard_panel(panel: DashboardPanel, states: States, h: Handlers) -> None:
    """Redraw the dashboard when the project changes, a round is recorded, or the tab or Refresh is clicked."""
    redraw = {
        "fn": lambda project: dashboard_updates(h, project),
        "inputs": [states.project],
        "outputs": panel.outputs(),
    }
    states.project_box.change(**redraw, show_progress="hidden", **PRIVATE)
    states.round.change(**redraw, show_progress="hidden", **PRIVATE)
    panel.refresh.click(**redraw, api_name="dashboard")
    panel.tab.select(**redraw, show_progress="hidden", **PRIVATE)
