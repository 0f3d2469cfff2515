"""The dashboard's annotator table: each person's labels, speed and agreement with the others (Cohen's kappa on
the images two people labeled), as HTML; nothing when one person labels alone."""

from __future__ import annotations

import html

from app.core.agreement import Agreement


def _number(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def annotators_html(agreement: Agreement) -> str:
    """The table of `agreement`, with a line on the overall agreement; empty with fewer than two annotators."""
    people = [a for a in agreement.annotators if a.annotator != "import"]
    if len(people) < 2:
        return ""
    rows = "".join(
        "<tr>"
        f"<td>{html.escape(a.annotator)}</td><td>{a.labels}</td>"
        f"<td>{_number(a.median_seconds, '.1f')}</td><td>{_number(a.labels_per_hour, '.0f')}</td>"
        f"<td>{a.shared}</td><td>{_number(a.kappa, '.2f')}</td>"
        "</tr>"
        for a in people
    )
    if agreement.kappa is None and agreement.shared:
        overall = (
            f"{agreement.shared} images were labeled twice. Agreement (Cohen's kappa) can be measured once the "
            "labels on them vary."
        )
    elif agreement.kappa is None:
        overall = "Agreement needs images that two people labeled (the host sets a share of second opinions)."
    else:
        overall = f"Agreement (Cohen's kappa) {agreement.kappa:.2f} on {agreement.shared} images labeled twice."
    return (
        '<div class="al-annotators"><h4>Annotators</h4>'
        "<table><thead><tr><th>annotator</th><th>labels</th><th>median seconds</th><th>labels per hour</th>"
        "<th>shared images</th><th>kappa with the others</th></tr></thead>"
        f"<tbody>{rows}</tbody></table><p>{html.escape(overall)}</p></div>"
    )
