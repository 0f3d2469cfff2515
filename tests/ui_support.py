"""Shared helpers for the UI tests: a tiny random-weight model and the digits written as PNG files."""

from __future__ import annotations

import re
from functools import cache

from app.core.settings import ProjectSettings
from app.engine.session import ActiveLearningSession
from app.ui.handlers import CUSTOM

TINY = ProjectSettings(
    backbone="test_efficientnet",
    backbone_source="random",
    image_size=32,
    batch_size=5,
    max_epochs=3,
    min_val=2,
    val_fraction=0.2,
)
TINY_MODEL = "Tiny test model"
MODELS = {TINY_MODEL: ("test_efficientnet", "random"), CUSTOM: (None, "random")}
DIGITS = [str(d) for d in range(10)]


@cache
def _targets() -> list[int]:
    from sklearn.datasets import load_digits

    return [int(t) for t in load_digits().target]


def digit_of(name: str) -> str:
    """The true digit of a file written by `app.engine.demo.write_digits` (digit_0042.png -> its target)."""
    match = re.search(r"digit_(\d+)", name)
    assert match, name
    return str(_targets()[int(match.group(1))])


def true_label(session: ActiveLearningSession, image_id: int) -> str:
    return digit_of(session.store.get_image(image_id).original_name)


def wait_round(session: ActiveLearningSession, timeout: float = 180.0) -> None:
    """Wait for the background round (or first-batch preparation) to end, and require that it succeeded."""
    status = session.jobs.wait("round", timeout=timeout)
    assert status is not None
    assert status.state == "done", status.error
