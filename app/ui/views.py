"""What the labeling panel shows, as plain data (no Gradio here; `app.ui.updates` turns it into component updates)."""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import Any

from app.core.audit import MIN_AUDIT
from app.core.calibration import not_sure
from app.core.store import BatchItem
from app.engine.jobs import FAILED, RUNNING, JobStatus
from app.engine.session import ActiveLearningSession

BROWSER_FORMATS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"})
SMALL_SIDE = 256  # images smaller than this are upscaled with crisp (pixelated) edges
PREFETCH = 3

STRATEGY_NAMES = {
    "random": "Random",
    "least_confidence": "Least confidence",
    "margin": "Margin",
    "entropy": "Entropy",
    "diversity": "Diversity (core-set)",
    "margin_diverse": "Margin + diversity",
    "cold_start": "Cold start: typical images",
    "audit": "Random check",
}
WHY = {
    "random": "picked at random (no model yet)",
    "cold_start": "a typical image of its cluster, picked before any model exists",
    "least_confidence": "the model is least sure about it",
    "margin": "the model hesitates between its top two labels",
    "entropy": "the model's guess is spread over many labels",
    "diversity": "it is unlike anything labeled so far",
    "margin_diverse": "the model hesitates on it, and it differs from the other picks",
    "audit": "picked at random, so the model's accuracy can be measured honestly",
}
NOT_SURE = "Model's guess: **not sure yet** (its best guess is hardly more likely than a label picked at random)."
UNCALIBRATED = (
    "Model's guess: **{label}**, without a percentage: its confidence is calibrated on random checks once there are "
    f"{MIN_AUDIT} ({{n}} so far)."
)


SECOND_OPINION = (
    "A second opinion: another annotator labeled this image too. Label it as you see it (their label is hidden)."
)


def strategy_name(name: str | None) -> str:
    return STRATEGY_NAMES.get(name or "", (name or "unknown").replace("_", " ").capitalize())


def label_choices(labels: list[str]) -> list[tuple[str, str]]:
    """Radio choices; the number keys of the first nine are drawn by the page's CSS (see `app.ui.style`)."""
    return [(name, name) for name in labels]


def parse_labels(text: str | None) -> list[str]:
    """Labels typed one per line or separated by commas; blanks dropped, order and repeats kept."""
    parts = (text or "").replace("\r", "\n").replace(",", "\n").split("\n")
    return [p.strip() for p in parts if p.strip()]


@dataclass(frozen=True)
class Upcoming:
    """An image this tab will probably be shown next: the page fetches it ahead and shows it at once."""

    image_id: int
    path: str
    name: str
    small: bool


@dataclass
class LabelView:
    """Everything the labeling panel shows for one image (or the message shown instead of an image).

    Attributes:
        image_id: the image shown, None when there is none to show.
        image_path: absolute path the browser fetches (a PNG preview for formats browsers cannot show).
        name: the image's original file name.
        small: True when the image is small enough to be upscaled with crisp pixels.
        caption: Markdown under the image: file name and why it was picked, or a message.
        selected: the label to preselect (the image's current label), None for a fresh image.
        predictions: label -> probability from the current model, None before the first model.
        guess: what the guess panel shows of them (`shown_guess`): the probabilities once calibrated, else the top
            label alone.
        progress: Markdown progress line.
        labels: the project's labels, in order.
        shown_at: when the image was put on screen (to record the seconds a label took).
        upcoming: the images likely to come next, in the order this tab gets them (see `upcoming`).
    """

    image_id: int | None = None
    image_path: str | None = None
    name: str = ""
    small: bool = False
    caption: str = ""
    selected: str | None = None
    predictions: dict[str, float] | None = None
    guess: dict[str, float] | str | None = None
    progress: str = ""
    labels: list[str] = field(default_factory=list)
    shown_at: float = field(default_factory=time.time)
    upcoming: list[Upcoming] = field(default_factory=list)

    @property
    def cursor(self) -> dict[str, Any]:
        """What the page keeps in `gr.State` about the image on screen."""
        return {"image_id": self.image_id, "shown_at": self.shown_at}


def display_path(session: ActiveLearningSession, image_id: int) -> str:
    """The file to show: the original when browsers can display it, else a cached PNG preview."""
    path = session.image_path(image_id)
    if path.suffix.lower() in BROWSER_FORMATS:
        return str(path)
    preview = session.images_dir / "previews" / f"{path.stem}.png"
    if not preview.exists():
        from app.core.atomic import atomic_path
        from app.core.images import load_rgb

        with atomic_path(preview) as tmp:
            load_rgb(path).save(tmp, format="PNG")
    return str(preview)


def progress_line(session: ActiveLearningSession, image_id: int | None, batch: list[BatchItem] | None = None) -> str:
    """ "Image 3 of 10 in this batch · Round 2 · 57 of 1,797 labeled"."""
    batch = session.batch() if batch is None else batch
    p = session.progress()
    parts = []
    position = next((i for i, b in enumerate(batch) if b.image_id == image_id), None)
    if position is not None:
        parts.append(f"Image **{position + 1}** of {len(batch)} in this batch")
    parts.append(f"Round **{p['round']}**")
    parts.append(f"**{p['labeled']:,}** of {p['total']:,} labeled")
    return " · ".join(parts)


def why_picked(item: BatchItem | None) -> str:
    if item is None:
        return "Not in the current batch."
    reason = WHY.get(item.strategy, "picked by the query strategy")
    score = "" if item.score is None else f" (score {item.score:.3f})"
    return f"{strategy_name(item.strategy)}: {reason}{score}."


def image_view(
    session: ActiveLearningSession,
    image_id: int,
    batch: list[BatchItem] | None = None,
    client: str | None = None,
    annotator: str | None = None,
) -> LabelView:
    """The view of one image: the file, why it was picked, its current label and the model's guess.

    Args:
        client: the tab's client id; the images it will probably get next are listed in `LabelView.upcoming`.
        annotator: who labels in this tab; an image waiting for their second opinion hides the first label.
    """
    batch = session.batch() if batch is None else batch
    row = session.image(image_id)
    item = next((b for b in batch if b.image_id == image_id), None)
    current = session.label_of(image_id)
    why = why_picked(item)
    if current and annotator and session.labeling.second_pass(image_id, annotator):
        current, why = None, SECOND_OPINION
    status = f" · labeled **{html.escape(current)}**" if current else ""
    predictions = session.predictions(image_id)
    guess, note = shown_guess(predictions, latest_metrics(session))
    why += f"  \n{note}" if note else ""
    return LabelView(
        image_id=image_id,
        image_path=display_path(session, image_id),
        name=row.original_name,
        small=max(row.width, row.height) < SMALL_SIDE,
        caption=f"**{html.escape(row.original_name)}** · {row.width}×{row.height}{status}  \n{why}",
        selected=current,
        predictions=predictions,
        guess=guess,
        progress=progress_line(session, image_id, batch),
        labels=session.labels,
        upcoming=upcoming(session, batch, image_id, client, annotator),
    )


def latest_metrics(session: ActiveLearningSession) -> dict[str, Any]:
    """The newest round's metrics (what calibrated the model's probabilities); empty before the first round."""
    last = session.latest_round()
    return {} if last is None else dict(last.metrics)


def shown_guess(
    predictions: dict[str, float] | None, metrics: dict[str, Any]
) -> tuple[dict[str, float] | str | None, str]:
    """What the guess panel shows and the line under the image about it.

    The probabilities show once a round calibrated them on at least `MIN_AUDIT` random checks (its metrics then
    hold "ece"); before that only the top label shows, with a line saying why. A guess no better than chance says
    "not sure yet".

    Args:
        predictions: label -> probability from the current model, or None before the first model.
        metrics: the newest round's metrics (`latest_metrics`).

    Returns:
        (the guess component's value: label -> probability, or the top label alone, or None; the Markdown line, or "").
    """
    if not predictions:
        return predictions, ""
    unsure = not_sure(list(predictions.values()))
    if metrics.get("ece") is not None:
        return predictions, NOT_SURE if unsure else ""
    top = max(predictions, key=lambda name: predictions[name])
    n = int(metrics.get("audit_n") or 0)
    return top, NOT_SURE if unsure else UNCALIBRATED.format(label=html.escape(top), n=n)


def guess_value(session: ActiveLearningSession, image_id: int) -> dict[str, float] | str | None:
    """The guess panel's value for one image (see `shown_guess`)."""
    return shown_guess(session.predictions(image_id), latest_metrics(session))[0]


def upcoming(
    session: ActiveLearningSession,
    batch: list[BatchItem],
    image_id: int,
    client: str | None,
    annotator: str | None = None,
) -> list[Upcoming]:
    """Up to `PREFETCH` images this client will probably get next (see `Labeling.upcoming`), up to the first one a
    browser cannot show as it is: files are never converted here."""
    if client is None:
        return []
    out = []
    for i in session.labeling.upcoming(batch, image_id, client, PREFETCH, annotator=annotator):
        path = session.image_path(i)
        if path.suffix.lower() not in BROWSER_FORMATS:
            break  # its preview is made when it is shown; the page waits for the server from here on
        row = session.image(i)
        out.append(Upcoming(i, str(path), row.original_name, max(row.width, row.height) < SMALL_SIDE))
    return out


def message_view(session: ActiveLearningSession | None, message: str) -> LabelView:
    """No image to show: a message instead (no project, no images, waiting for the first batch, all done)."""
    if session is None:
        return LabelView(caption=message)
    return LabelView(caption=message, progress=progress_line(session, None), labels=session.labels)


def waiting_message(session: ActiveLearningSession) -> str:
    """Why there is no image to label right now."""
    status = session.round_status()
    if session.count_images() == 0:
        return "Add images (left column, **Add images**) to start labeling."
    if status is not None and status.state == RUNNING:
        return "Preparing the next images to label… they appear here by themselves."
    if status is not None and status.state == FAILED:
        return f"Preparing images failed: {status.error}"
    p = session.progress()
    if p["labeled"] >= p["total"]:
        return "Every image is labeled. Export your labels and model (left column, **Export**)."
    return "No image is waiting for you right now. Press **Next** to fetch one."


def status_html(session: ActiveLearningSession | None) -> str:
    """The round status line with a thin progress bar."""
    if session is None:
        return _status("idle", "Open a project or start a new one.", None)
    status: JobStatus | None = session.round_status()
    if status is not None and status.state == RUNNING:
        return _status("running", f"Learning: {status.message}", status.progress)
    if status is not None and status.state == FAILED:
        return _status("failed", f"The last round failed: {status.error}", None)
    if (loaded := loaded_model_line(session)) is not None:  # a checkpoint is the active model, not the newest round's
        return _status("ready", loaded, None)
    last = session.latest_round()
    if last is None:
        if session.count_images() == 0:
            return _status("idle", "No images yet.", None)
        if session.model.has_model():  # an imported model's own classifier
            return _status("ready", "Imported model ready: its guesses show until the first round.", None)
        return _status("idle", "No model yet: label the first batch and the first round starts by itself.", None)
    text = f"Model of round {last.number} ready ({last.labeled} labels). {estimate_text(last.metrics)}"
    advice = last.metrics.get("advice")
    return _status("ready", text + (f" {advice['text']}" if advice else ""), None)


def estimate_text(metrics: dict[str, Any]) -> str:
    """ "Accuracy about 84 % (95 % range 70-92 %, from 12 random checks)." or why there is none yet."""
    acc = metrics.get("accuracy")
    if acc is None or "accuracy_low" not in metrics:
        return metrics.get("note") or "Accuracy is not measured yet: it is measured on random checks from now on."
    low, high, n = metrics["accuracy_low"], metrics["accuracy_high"], metrics["audit_n"]
    text = f"Accuracy about {acc:.0%} (95% range {low:.0%}–{high:.0%}, from {n} random checks)."
    return f"{text} {metrics['caveat']}" if metrics.get("caveat") else text


def labels_kept(labeled: int) -> str:
    """ "your 58 labels are kept" (a model checkpoint never rolls labels back)."""
    return f"your {labeled} label is kept" if labeled == 1 else f"your {labeled} labels are kept"


def loaded_model_line(session: ActiveLearningSession) -> str | None:
    """The status line while a loaded checkpoint is the active model (None otherwise): which model it is, that the
    labels stay, and what the next round does."""
    active = session.model.active()
    if active is None or active.checkpoint is None:
        return None
    text = active.describe()
    kept = labels_kept(session.progress()["labeled"])
    return f"{text[:1].upper()}{text[1:]} is active; {kept}. The next round trains a new model on all of them."


def _status(kind: str, text: str, fraction: float | None) -> str:
    bar = ""
    if fraction is not None:
        bar = f'<div class="al-bar"><div style="width:{max(0.0, min(1.0, fraction)) * 100:.0f}%"></div></div>'
    return f'<div class="al-status al-{kind}"><span>{html.escape(text)}</span>{bar}</div>'


def job_key(session: ActiveLearningSession | None) -> str:
    """Changes whenever the round job starts, progresses to another state, or a round is recorded."""
    if session is None:
        return ""
    status = session.round_status()
    job = "" if status is None else f"{status.id}:{status.state}"
    return f"{job}|{session.current_round()}"
