"""The dashboard's tables and plots as plain pandas frames and HTML, built from the project store."""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd

from app.core.audit import MIN_AUDIT
from app.core.metrics import MATRIX_MAX_CLASSES, top_confusions
from app.core.store import RoundRow
from app.engine import suspect_cache
from app.engine.session import ActiveLearningSession
from app.ui.annotators import annotators_html
from app.ui.views import estimate_text, strategy_name

CURVE_COLUMNS = ["labeled", "value", "metric"]
HISTORY_COLUMNS = ["round", "strategy", "labeled", "accuracy", "95% range", "random checks", "seconds"]
ESTIMATE, LOW, HIGH = "accuracy (estimate)", "95% range: low end", "95% range: high end"


@dataclass
class Dashboard:
    """Everything the dashboard tab shows.

    Attributes:
        curve: the accuracy estimate and the ends of its 95 % range against the number of labels, one row per round
            and line; only rounds measured on random checks (the curve never mixes methods).
        counts: labels per class.
        confusion: HTML: the latest measured round's accuracy per label with its range, and its mistakes on the
            random checks: the confusion matrix (rows: true label, columns: predicted) with few labels, else the most
            confused pairs.
        history: one row per round.
        summary: one Markdown line above the plots.
        annotators: HTML: each annotator's labels, speed and agreement (empty when one person labels alone).
    """

    curve: pd.DataFrame
    counts: pd.DataFrame
    confusion: str
    history: pd.DataFrame
    summary: str
    annotators: str = ""
    curve_note: str | None = None


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
    curve_rows = [row for r in rounds for row in _curve_rows(r.labeled, r.metrics)]
    counts = session.label_counts()
    measured = [r for r in rounds if r.metrics.get("confusion") or "top_confusions" in r.metrics]
    confusion = per_class_html(measured[-1].metrics) + mistakes_html(measured[-1].metrics) if measured else ""
    progress = session.progress()
    summary = f"**{progress['labeled']:,}** of {progress['total']:,} images labeled · {len(rounds)} round(s)"
    if rounds:
        last = rounds[-1].metrics
        summary += f"  \n{estimate_text(last)} {calibration_text(last)}".rstrip()
        if last.get("advice"):
            summary += f"  \n**{last['advice']['text']}**"
    summary += suspects_text(session)
    return Dashboard(
        curve=pd.DataFrame(curve_rows, columns=CURVE_COLUMNS),
        curve_note=None if curve_rows else empty_curve_note(rounds[-1].metrics if rounds else {}),
        counts=pd.DataFrame({"label": list(counts), "count": list(counts.values())}),
        confusion=confusion or _note(_why_no_confusion(rounds)),
        history=pd.DataFrame([_history_row(r) for r in rounds][::-1], columns=HISTORY_COLUMNS),
        summary=summary,
        annotators=annotators_html(session.agreement()),
    )


def suspects_text(session: ActiveLearningSession) -> str:
    """How many labels look wrong (a line to add to the summary; empty while none do or before they are known).

    Starts the label checker in the background when what it keeps is from an earlier round.
    """
    suspect_cache.refresh(session)
    count = len(suspect_cache.open_suspects(session))
    if not count:
        return ""
    many = f"{count} labels look" if count != 1 else "1 label looks"
    return f"  \n**{many} wrong** — check them in Review → Likely wrong labels."


def empty_curve_note(last: dict) -> str:
    """The empty accuracy chart's title: when its first point comes."""
    return f"Accuracy: from {MIN_AUDIT} random checks ({int(last.get('audit_n') or 0)} so far)"


def _curve_rows(labeled: int, metrics: dict) -> list[dict]:
    """The estimate and its range at one round; none where the round was not measured on random checks."""
    if metrics.get("accuracy") is None or "accuracy_low" not in metrics:
        return []
    values = ((ESTIMATE, "accuracy"), (LOW, "accuracy_low"), (HIGH, "accuracy_high"))
    return [{"labeled": labeled, "value": float(metrics[key]), "metric": name} for name, key in values]


def _history_row(r: RoundRow) -> dict:
    m = r.metrics
    honest = m.get("accuracy") is not None and "accuracy_low" in m
    return {
        "round": r.number,
        "strategy": strategy_name(r.strategy),
        "labeled": r.labeled,
        "accuracy": round(float(m["accuracy"]), 3) if honest else None,
        "95% range": f"{m['accuracy_low']:.2f}–{m['accuracy_high']:.2f}" if honest else "",
        "random checks": int(m.get("audit_n") or 0),
        "seconds": round(float(r.seconds), 2),
    }


def calibration_text(metrics: dict) -> str:
    """How far the confidence shown is from the accuracy it claims (measured on the random checks)."""
    ece = metrics.get("ece")
    if ece is None:
        return ""
    return f"The confidence shown is calibrated on them: on average it is {ece:.0%} away from the real hit rate."


def per_class_html(metrics: dict) -> str:
    """The accuracy estimate of each label with its 95 % range and the random checks it rests on."""
    per_class = metrics.get("per_class") or {}
    if not per_class:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(name))}</td><td>{c['accuracy']:.0%}</td>"
        f"<td>{c['low']:.0%}–{c['high']:.0%}</td><td>{int(c['n'])}</td></tr>"
        for name, c in per_class.items()
    )
    caption = "Accuracy per label, on the random checks of that label."
    return (
        f'<div class="al-confusion"><table><caption>{html.escape(caption)}</caption>'
        "<thead><tr><th>label</th><th>accuracy</th><th>95% range</th><th>random checks</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def _why_no_confusion(rounds: list) -> str:
    if not rounds:
        return "The accuracy per label and the mistakes appear after the first round."
    return (
        "Not enough random checks yet to measure the model honestly: a few images of every batch are picked at "
        "random for this, and the numbers appear after a few more batches."
    )


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
    """ "12 random checks" (each scored by a model that did not train on it), or what an older round measured on."""
    matrix = metrics.get("confusion") or []
    n = metrics.get("n") or metrics.get("val") or sum(sum(r) for r in matrix)
    if "accuracy_low" in metrics:
        return f"{n} random checks"
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
