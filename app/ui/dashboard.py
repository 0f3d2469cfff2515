"""The dashboard's tables and plots as plain pandas frames and HTML, built from the project store."""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from app.core.metrics import MATRIX_MAX_CLASSES, top_confusions
from app.engine.session import ActiveLearningSession
from app.ui.views import strategy_name

CURVE_COLUMNS = ["labeled", "value", "metric"]
HISTORY_COLUMNS = ["round", "strategy", "labeled", "accuracy", "macro-F1", "seconds"]


@dataclass
class Dashboard:
    """Everything the dashboard tab shows.

    Attributes:
        curve: one row per round and metric (accuracy, macro-F1) against the number of labels.
        counts: labels per class.
        confusion: an HTML table of the latest measured round's mistakes: its confusion matrix (rows: true label,
            columns: predicted) with few labels, else its most confused pairs.
        history: one row per round.
        summary: one Markdown line above the plots.
    """

    curve: pd.DataFrame
    counts: pd.DataFrame
    confusion: str
    history: pd.DataFrame
    summary: str


def empty() -> Dashboard:
    return Dashboard(
        curve=pd.DataFrame(columns=CURVE_COLUMNS),
        counts=pd.DataFrame(columns=["label", "count"]),
        confusion=_note("Open a project to see its dashboard."),
        history=pd.DataFrame(columns=HISTORY_COLUMNS),
        summary="",
    )


def build(session: ActiveLearningSession | None) -> Dashboard:
    """The dashboard of a project (an empty one without a project)."""
    if session is None:
        return empty()
    rounds = session.rounds()
    curve_rows, history_rows = [], []
    for r in rounds:
        acc, f1 = r.metrics.get("accuracy"), r.metrics.get("macro_f1")
        if acc is not None:
            curve_rows.append({"labeled": r.labeled, "value": float(acc), "metric": "accuracy"})
        if f1 is not None:
            curve_rows.append({"labeled": r.labeled, "value": float(f1), "metric": "macro-F1"})
        history_rows.append(
            {
                "round": r.number,
                "strategy": strategy_name(r.strategy),
                "labeled": r.labeled,
                "accuracy": None if acc is None else round(float(acc), 3),
                "macro-F1": None if f1 is None else round(float(f1), 3),
                "seconds": round(float(r.seconds), 2),
            }
        )
    counts = session.label_counts()
    measured = [r for r in rounds if r.metrics.get("confusion") or "top_confusions" in r.metrics]
    confusion = mistakes_html(measured[-1].metrics) if measured else _note(_why_no_confusion(rounds))
    progress = session.progress()
    summary = (
        f"**{progress['labeled']:,}** of {progress['total']:,} images labeled · {len(rounds)} round(s) · "
        "accuracy and macro-F1 on held-out labels (cross-validated while few are held out)"
    )
    return Dashboard(
        curve=pd.DataFrame(curve_rows, columns=CURVE_COLUMNS),
        counts=pd.DataFrame({"label": list(counts), "count": list(counts.values())}),
        confusion=confusion,
        history=pd.DataFrame(history_rows[::-1], columns=HISTORY_COLUMNS),
        summary=summary,
    )


def _why_no_confusion(rounds: list) -> str:
    if not rounds:
        return "The confusion matrix appears after the first round."
    return "Not enough labels are held out to measure the model yet; it appears after a few more batches."


def _note(text: str) -> str:
    return f'<p class="al-note">{html.escape(text)}</p>'


def mistakes_html(metrics: dict) -> str:
    """A round's mistakes: its confusion matrix when it has few labels, else its most confused pairs.

    Args:
        metrics: a round's metrics (see `app.core.metrics.classification_metrics`); rounds recorded before
            "top_confusions" existed carry a full "confusion" matrix and "labels" instead.
    """
    matrix = metrics.get("confusion") or []
    if matrix and len(matrix) <= MATRIX_MAX_CLASSES:
        return confusion_html(metrics)
    pairs = metrics.get("top_confusions")
    if pairs is None:
        pairs = top_confusions(matrix, metrics.get("labels", []))
    return pairs_html(pairs, _images(metrics))


def pairs_html(pairs: list, images: str) -> str:
    """The most confused (true label, guess) pairs as an HTML table, most frequent first.

    Args:
        pairs: [true label, guessed label, count] rows.
        images: what was measured, e.g. "120 held-out images".
    """
    if not pairs:
        return _note(f"No mistakes on {images}.")
    rows = "".join(
        f"<tr><td>{html.escape(str(true))}</td><td>{html.escape(str(guess))}</td><td>{int(count)}</td></tr>"
        for true, guess, count in pairs
    )
    caption = f"The most frequent mistakes on {images}."
    return (
        f'<div class="al-confusion"><table><caption>{html.escape(caption)}</caption>'
        "<thead><tr><th>true label</th><th>model's guess</th><th>images</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def _images(metrics: dict) -> str:
    """ "120 held-out images" or "40 cross-validated labeled images"."""
    matrix = metrics.get("confusion") or []
    n = metrics.get("n") or metrics.get("val") or sum(sum(r) for r in matrix)
    how = "cross-validated labeled" if "cross" in str(metrics.get("validation", "")) else "held-out"
    return f"{n} {how} images"


def confusion_html(metrics: dict) -> str:
    """A confusion matrix as an HTML table, cells shaded by their share of the row."""
    labels = [str(x) for x in metrics.get("labels", [])]
    matrix = metrics.get("confusion") or []
    if not labels or not matrix:
        return _note("No confusion matrix yet.")
    head = "".join(f"<th>{html.escape(name)}</th>" for name in labels)
    rows = []
    for i, (name, counts) in enumerate(zip(labels, matrix, strict=False)):
        total = sum(counts) or 1
        cells = []
        for j, count in enumerate(counts):
            share = count / total
            tone = "var(--al-ok)" if i == j else "var(--al-bad)"
            alpha = 0.08 + 0.6 * share if count else 0
            style = f"background: color-mix(in srgb, {tone} {alpha * 100:.0f}%, transparent)" if count else ""
            cells.append(f'<td style="{style}">{count}</td>')
        rows.append(f"<tr><th>{html.escape(name)}</th>{''.join(cells)}</tr>")
    caption = f"{_images(metrics)}: rows are the true label, columns the model's guess."
    return (
        f'<div class="al-confusion"><table><caption>{html.escape(caption)}</caption>'
        f'<thead><tr><th class="corner">true ↓ / guess →</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )
