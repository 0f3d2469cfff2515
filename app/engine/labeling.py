"""The labeling protocol: which image each tab (or annotator) sees next, what it may fetch ahead, claims, the
batch's extension, labels, skips and undo.

Every tab has a server-signed client id. A tab claims batch images one at a time (`next_item`), so two tabs are
never given the same image; it may reserve the image after the one on screen so it can show it ahead
(`upcoming`); when the batch is used up while the model still trains, the batch grows with images the current
model picks (the extension, picked by the session and passed in here), so labeling never waits for training.
The UI calls these verbs; it never opens the store.

Shared labeling: with the project setting ``overlap`` above 0, that share of the batch's images is labeled by two
different annotators (see `app.core.batch_rows`). A tab that says who labels there (`next_item(client,
annotator=...)`) is also handed images another annotator labeled once; `second_pass` tells the page such an image
is one (it should not show the first label). A tab that does not say gets first labels only, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from app.core.annotation_rows import NewAnnotation
from app.core.records import Annotation, BatchItem
from app.core.store import ProjectStore

Pick = tuple[int, str, float | None]  # (image_id, strategy, score)


class Labeling:
    """The labeling verbs of one project.

    Args:
        store: the project's store (claims, batch and annotations live there).
        extension: the `(image_id, strategy, score)` picks the batch would grow by now (same answer while the pool
            and the model stay the same, so a peek and the extension that follows agree).
        labels_changed: called after every label or skip (the session may start a round).
        learn_now: called when a tab used up the batch while other tabs still hold some of it.
        lock: held while the batch is read and rewritten by more than one statement.
    """

    def __init__(
        self,
        store: ProjectStore,
        *,
        extension: Callable[[], list[Pick]],
        labels_changed: Callable[[], object],
        learn_now: Callable[[], object],
        lock: threading.Lock,
    ) -> None:
        self.store = store
        self._extension = extension
        self._labels_changed = labels_changed
        self._learn_now = learn_now
        self._lock = lock

    # ----------------------------------------------------------------------------------- what a tab sees
    def batch(self) -> list[BatchItem]:
        """The current batch, in order."""
        return self.store.batch()

    def next_item(self, client: str, annotator: str | None = None) -> BatchItem | None:
        """Claim the next image for `client` (each client gets different images of the batch).

        Args:
            annotator: who labels in this tab; then images of the batch labeled once by somebody else that want a
                second label (shared labeling) are handed out too, after the unlabeled ones. None: never.

        When the batch is used up, it grows by the extension, so labeling never waits for training. Returns None
        when no unlabeled image is left for this client.
        """
        item = self.store.claim_next(client, annotator=annotator)
        if item is not None:
            return item
        with self._lock:
            item = self.store.claim_next(client, annotator=annotator)
            if item is None:
                extended = self._extend()
                if any(b.status == "labeled" for b in self.store.batch()):
                    self._learn_now()  # after the extension: training competes for the CPU
                if extended:
                    item = self.store.claim_next(client, annotator=annotator)
        return item

    def second_pass(self, image_id: int, annotator: str | None = None) -> bool:
        """True when the image is in the batch waiting for its second annotator (with `annotator`: one they may
        be, so their page hides the first label)."""
        return int(image_id) in self.store.waiting_second(annotator)

    def resume(self, client: str) -> BatchItem | None:
        """The first tab after a restart takes over the claims of the earlier run: the batch's first open image."""
        return self.store.claim_next(client, stale_after=0.0)

    def browsable(self, batch: list[BatchItem], client: str) -> list[BatchItem]:
        """Batch items this tab may move to with the arrows: done ones, its own, and unclaimed ones."""
        return [b for b in batch if b.status != "pending" or b.claimed_by in (None, client)]

    def upcoming(
        self, batch: list[BatchItem], image_id: int | None, client: str, limit: int, annotator: str | None = None
    ) -> list[int]:
        """Up to `limit` images this client will probably get next, in the order it gets them.

        Its own claimed images of the batch, then unclaimed ones: (with `annotator`, as in `next_item`) those waiting
        for a second label it may give, then pending ones, each by position; then the extension once the batch is
        about to be used up (see `next_item`). The first is reserved for this client when it holds no other, so two
        tabs are never shown the same next image ahead.
        """
        waiting = set() if annotator is None else set(self.store.waiting_second(annotator))
        open_items = [b for b in batch if b.image_id != image_id and (b.status == "pending" or b.image_id in waiting)]
        open_items.sort(key=lambda b: (b.status == "pending", b.position))  # the order `next_item` claims them in
        mine = [b.image_id for b in open_items if b.claimed_by == client]
        free = [b.image_id for b in open_items if b.claimed_by is None]
        if not mine:
            while free and not self.store.reserve(free[0], client, annotator):
                free.pop(0)
        order = mine + free
        others_hold = any(b.status == "pending" and b.claimed_by not in (None, client) for b in batch)
        if len(order) < limit and not others_hold:
            order += [i for i in self.peek_extension() if i != image_id]
        return order[:limit]

    def peek_extension(self) -> list[int]:
        """The images the batch would grow by if it were used up now, in order (the page fetches them ahead)."""
        return [image_id for image_id, _, _ in self._extension()]

    def _extend(self) -> bool:
        items = self._extension()
        if not items:
            return False
        self.store.extend_batch(items)  # leaves out images labeled meanwhile
        return True

    # ----------------------------------------------------------------------------------- what a tab does
    def label(
        self,
        image_id: int,
        label: str,
        *,
        annotator: str = "user",
        seconds: float | None = None,
        method: str = "single",
    ) -> int:
        """Record a label (or a new label for an already labeled image), with why the image was picked and how the
        label was given (`app.core.annotation_rows.METHODS`).

        A second label of a shared image (see the module's notes) becomes its current label but starts no round: the
        image was counted labeled at its first.
        """
        item = next((b for b in self.store.batch() if b.image_id == image_id), None)
        second = item is not None and item.overlap and image_id in self.store.waiting_second(annotator)
        ann_id = self.store.add_annotation(
            image_id,
            label,
            annotator=annotator,
            round=self.store.current_round(),
            strategy=item.strategy if item else None,
            score=item.score if item else None,
            seconds=seconds,
            method=method,
        )
        if not second:
            self._labels_changed()
        return ann_id

    def label_page(
        self, labels: dict[int, str], *, annotator: str, method: str, page: str, seconds: float | None = None
    ) -> list[int]:
        """Record the labels of a grid page in one step (all or none); Undo takes the whole page back.

        Args:
            labels: image id -> label.
            method: "grid_page" or "more_like_this".
            page: the page's id, shared by its annotations.
            seconds: the time spent on the page, shared out over its labels.
        """
        if not labels:
            return []
        batch = {b.image_id: b for b in self.store.batch()}
        share = None if seconds is None else round(seconds / len(labels), 3)
        rows = [
            NewAnnotation(int(i), label, annotator, self.store.current_round(), "review", None, share, method, page)
            for i, label in labels.items()
            if not (i in batch and batch[i].strategy == "audit")
        ]
        ids = self.store.add_annotations(rows)
        self._labels_changed()
        return ids

    def skip(self, image_id: int) -> None:
        """Leave an image unlabeled; it is not offered again in this batch."""
        self.store.set_batch_status(image_id, "skipped")
        self._labels_changed()

    def undo(self, annotator: str | None = None, client: str | None = None) -> Annotation | None:
        """Take back the newest label (of `annotator`); the image goes back into the batch.

        Args:
            client: the tab that undoes; the image, if now open and free, is claimed for it (it shows it again).
        """
        undone = self.store.undo_last(annotator)
        if undone is not None and client is not None:
            self.store.reserve(undone.image_id, client)
        return undone
