"""Editing the label set of an open project: add, rename, merge, delete (an unused label only).

The store carries every annotation with a rename or merge (they reference labels by id). The current model keeps
working until the next round trains on the new label set: a renamed label's output is renamed, a merged label's
guesses count for the label it was merged into, and a deleted label's output is left out of the guesses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from app.core.errors import StoreError
from app.core.store import ProjectStore
from app.engine.model_state import ModelState

TOO_FEW = "A project needs at least two labels, so '{name}' cannot go: add another label first."


class LabelSet:
    """The label verbs of one project (`ActiveLearningSession.label_set`).

    Args:
        store: the project's store (the one source of truth for the labels).
        model: the project's model state, whose outputs follow a rename or a merge.
    """

    def __init__(self, store: ProjectStore, model: ModelState) -> None:
        self.store = store
        self.model = model

    def names(self) -> list[str]:
        """The labels, in order."""
        return self.store.labels()

    def add(self, name: str) -> str:
        """Append a label; returns its cleaned name (a name taken already is refused)."""
        self.store.add_label(name)
        return str(name).strip()

    def rename(self, old: str, new: str) -> str:
        """Rename `old` to `new` (its images keep their label under the new name); returns the cleaned new name.

        Raises:
            StoreError: `old` does not exist, `new` is empty, or `new` is taken (merge instead).
        """
        self.store.rename_label(old, new)
        cleaned = str(new).strip()
        self._rename_outputs({old: cleaned})
        return cleaned

    def merge(self, source: str, target: str) -> None:
        """Give every image labeled `source` the label `target`, then remove `source`.

        Raises:
            StoreError: either does not exist, they are the same label, or only two labels are left.
        """
        if source != target:
            self._keep_two(source)
        self.store.merge_labels(source, target)
        self._rename_outputs({source: target})

    def delete(self, name: str) -> None:
        """Remove a label no annotation uses.

        Raises:
            LabelInUseError: an annotation (even an undone one) uses it; merge it into another label instead.
            StoreError: it does not exist, or only two labels are left.
        """
        self._keep_two(name)
        self.store.delete_label(name)

    def named(self, outputs: Sequence[str], probs: np.ndarray) -> dict[str, float]:
        """The model's probability per current label, from its outputs' names (a merged label's outputs add up;
        an output whose label is gone is left out)."""
        known, out = set(self.store.labels()), {}
        for name, p in zip(outputs, probs, strict=True):
            if name in known:
                out[name] = out.get(name, 0.0) + float(p)
        return out

    def _keep_two(self, name: str) -> None:
        labels = self.store.labels()
        if name in labels and len(labels) <= 2:
            raise StoreError(TOO_FEW.format(name=name))

    def _rename_outputs(self, names: dict[str, str]) -> None:
        if self.model.fitted is not None:
            self.model.label_names = [names.get(n, n) for n in self.model.label_names]
