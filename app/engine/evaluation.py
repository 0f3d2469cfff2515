"""Measuring a round's model honestly: cross-fitting on audit labels, calibration, and the stop advice.

Audit labels are drawn at random from the pool (`app.core.audit`), so the model's accuracy on them is an unbiased
estimate of its accuracy on the pool. Each audit label is scored by a head trained on every label except its fold's
audit labels (cross-fitting), so the same labels still train the model the user exports. The same out-of-fold
predictions fit the temperature that calibrates the probabilities shown (`app.core.calibration`). A fixed stop set
of images, predicted every round, feeds the stop advice (`app.core.stopping`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from app.core import stopping
from app.core.audit import MIN_AUDIT, audit_estimate, audit_folds
from app.core.calibration import expected_calibration_error, fit_temperature, tempered
from app.core.metrics import classification_metrics
from app.core.stopping import advise, agreement, paired_gain, stop_set
from lit_models.train import predict_proba, train_head

FOLDS = 5  # folds of the audit labels (10 cost twice as much and measured no better)
LEAVE_ONE_OUT_BELOW = 10  # fewer audit labels than this: leave-one-out
NOT_ENOUGH_LABELS = "Not enough labels to measure the model yet."
FINETUNE_CAVEAT = (
    "In fine-tune mode this measures a head on the pretrained features (cross-fitted the same way), not the "
    "fine-tuned model itself, which trained on every random check; its confidence is calibrated with that head's."
)


class EvalData(Protocol):
    """What an evaluation reads (`app.engine.rounds.RoundData` has all of it)."""

    ids: np.ndarray
    x: np.ndarray
    label_names: tuple[str, ...]
    labeled_rows: np.ndarray
    y: np.ndarray
    val: np.ndarray
    audit: np.ndarray | None
    pool_rows: np.ndarray
    history: tuple[dict[str, Any], ...]
    seed: int


def cross_fit(
    x: np.ndarray, rows: np.ndarray, y: np.ndarray, audit: np.ndarray, num_classes: int, *, hidden: int = 0,
    max_epochs: int | None = None, seed: int = 0,
) -> np.ndarray | None:  # fmt: skip
    """Out-of-fold probabilities of the audit labels: each fold's audit labels scored by a head trained on every
    other label (strategy picks and the other folds' audit labels alike).

    Args:
        x: embeddings of every image; `rows` the labeled rows, `y` their classes, `audit` which of them are audit.

    Returns:
        (number of audit labels, C) probabilities in the order of ``np.flatnonzero(audit)``, or None without audit
        labels or when a fold would leave nothing to train on.
    """
    positions = np.flatnonzero(audit)
    if len(positions) == 0:
        return None
    out = np.empty((len(positions), num_classes), dtype=np.float32)
    n = len(positions)
    for fold in audit_folds(n, n if n < LEAVE_ONE_OUT_BELOW else FOLDS, seed):
        keep = np.ones(len(rows), dtype=bool)
        keep[positions[fold]] = False
        if not keep.any():
            return None
        head = train_head(x[rows[keep]], y[keep], num_classes, hidden=hidden, max_epochs=max_epochs, seed=seed)
        out[fold] = predict_proba(head, x[rows[positions[fold]]])
    return out


def _rows_of(fitted: Any, ids: np.ndarray) -> np.ndarray | None:
    """Rows of `fitted.probs` for `ids` (None when some were not scored)."""
    if np.array_equal(fitted.ids, ids):
        return np.arange(len(ids))
    index = {int(i): r for r, i in enumerate(fitted.ids)}
    rows = [index.get(int(i)) for i in ids]
    return None if any(r is None for r in rows) else np.asarray(rows, dtype=np.int64)


def _stability(data: EvalData, fitted: Any, labeled: int) -> dict[str, Any]:
    """This round's stop set predictions and their agreement with those of the newest round at least
    `stopping.SPAN` labels older, on the whole fixed stop set (images labeled since included, as in Bloodgood &
    Vijay-Shanker and small-text: without them the set keeps only the easy images the strategy left, and agreement
    looks settled while the model still learns the hard ones)."""
    ids = data.ids[stop_set(data.ids)]
    rows = _rows_of(fitted, ids)
    if rows is None:
        return {}
    pred = fitted.probs[rows].argmax(axis=1)
    past = [h for h in data.history if h.get("labeled") is not None]
    at = stopping.reference([int(h["labeled"]) for h in past], labeled)
    previous = None if at is None else past[at].get("stop_set")
    kappa, compared = agreement(previous, ids.tolist(), pred.tolist(), None, len(data.label_names))
    return {"stop_set": {"ids": ids.tolist(), "pred": pred.tolist()}, "agreement": kappa, "agreement_n": compared}


def recent_gain(
    data: EvalData, audit: np.ndarray, *, hidden: int = 0, max_epochs: int | None = None, seed: int = 0
) -> dict[str, Any] | None:
    """What 100 more labels add, on the random checks: two heads trained on every label but the random checks (as
    the head that selects), one of them also without a random `stopping.LEAVE_OUT` of the labels (at most a quarter
    of them), both scoring the random checks; two fits, paired on the same checks."""
    others = np.flatnonzero(~audit)
    count = min(stopping.LEAVE_OUT, len(others) // 4)
    if count == 0 or not audit.any():
        return None
    before = ~audit
    before[np.random.default_rng([seed, 0x6A1]).choice(others, size=count, replace=False)] = False
    rows, y_audit, classes = data.labeled_rows, data.y[audit], len(data.label_names)
    right = []
    for keep in (~audit, before):
        head = train_head(data.x[rows[keep]], data.y[keep], classes, hidden=hidden, max_epochs=max_epochs, seed=seed)
        right.append(predict_proba(head, data.x[rows[audit]]).argmax(axis=1) == y_audit)
    return paired_gain(right[0], right[1], count)


def _kappas(data: EvalData, metrics: dict[str, Any]) -> tuple[list[float | None], list[int]]:
    past = [h for h in data.history if h.get("labeled") is not None]
    kappas = [h.get("agreement") for h in past] + [metrics.get("agreement")]
    return kappas, [int(h["labeled"]) for h in past] + [int(metrics["labeled"])]


def evaluate(
    data: EvalData, fitted: Any, *, hidden: int = 0, max_epochs: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """A round's numbers: counts; the accuracy estimate on audit labels (cross-fitted, with its 95 % interval, overall
    and per class; None below `MIN_AUDIT` audit labels, with a note saying so); the temperature that calibrates the
    probabilities and the calibration error before and after it; the stop set's agreement and the stop advice.

    Args:
        fitted: the round's model (a `Fitted`), or None (nothing to measure).
        hidden, max_epochs: the fold heads' width and epochs (as the round's head); `seed` their seed.

    Returns:
        JSON-ready metrics; "temperature" is the one the round applies to the model it keeps.
    """
    rows = data.labeled_rows
    audit = np.zeros(len(rows), dtype=bool) if data.audit is None else np.asarray(data.audit, dtype=bool)
    metrics: dict[str, Any] = {
        "labeled": len(rows), "train": int((~data.val).sum()), "val": int(data.val.sum()),
        "audit_n": int(audit.sum()), "temperature": 1.0,
    }  # fmt: skip
    if fitted is None or fitted.probs is None:
        metrics["note"] = NOT_ENOUGH_LABELS
        return metrics
    names = list(data.label_names)
    oof = cross_fit(data.x, rows, data.y, audit, len(names), hidden=hidden, max_epochs=max_epochs, seed=seed)
    if oof is not None and len(oof) >= MIN_AUDIT:
        y_audit = data.y[audit]
        temperature = fit_temperature(oof, y_audit)
        shown = tempered(oof, temperature)
        pred = shown.argmax(axis=1)
        metrics.update(classification_metrics(y_audit.tolist(), pred.tolist(), names))
        metrics.update(audit_estimate(y_audit, pred, names))
        metrics["temperature"] = temperature
        metrics["ece_before"] = expected_calibration_error(oof, y_audit)
        metrics["ece"] = expected_calibration_error(shown, y_audit)
        metrics["validation"] = f"cross-fitted on {len(y_audit)} random checks"
        if getattr(fitted, "finetuned", False):
            metrics["caveat"] = FINETUNE_CAVEAT
    else:
        metrics["accuracy"] = None
        metrics["note"] = (
            f"Not enough random checks yet to measure accuracy honestly ({metrics['audit_n']} of {MIN_AUDIT})."
        )
    metrics.update(_stability(data, fitted, len(rows)))
    (kappas, labels), audit_n = _kappas(data, metrics), int(metrics.get("audit_n") or 0)
    gain = None
    if oof is not None and audit_n >= stopping.MIN_AUDIT_TO_STOP:
        gain = recent_gain(data, audit, hidden=hidden, max_epochs=max_epochs, seed=seed)
    metrics["advice"] = advise(kappas, labels, gain, audit_n)
    return metrics
