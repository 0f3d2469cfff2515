"""ActiveLearningSession: the verbs a user has, over one project folder."""

from __future__ import annotations

import functools
import re
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from app.core.agreement import Agreement, compute_agreement
from app.core.atomic import clean_temp_files
from app.core.errors import AppError, EmptyPoolError, StoreError
from app.core.ingest import IMAGES_DIR, IngestReport, clean_staging, ingest
from app.core.progress import CountProgressFn, ProgressFn, no_progress
from app.core.settings import ProjectSettings
from app.core.store import Annotation, BatchItem, ImageRow, ProjectStore, RoundRow
from app.engine import finetuning, label_check, rounds
from app.engine.extension import pick_extension
from app.engine.jobs import JobRunner, JobStatus
from app.engine.label_check import Suspect
from app.engine.label_set import LabelSet
from app.engine.labeling import Labeling
from app.engine.learners import EMBED_MESSAGE, embed_missing, image_paths, project_compute
from app.engine.model_state import ModelState
from app.engine.rounds import NOT_ENOUGH_LABELS  # noqa: F401  (re-exported: the note a round without enough labels gets)
from lit_models.trainer import Compute

_NAME_RE = re.compile(r"^[\w][\w .-]{0,63}$")
ROUND_JOB = "round"
PROBS_JOB = "probabilities"  # the rest of a big pool's probabilities, after a round scored only its candidates


def _scaled(progress: ProgressFn, lo: float, hi: float) -> ProgressFn:
    return lambda f, m: progress(lo + (hi - lo) * f, m)


def check_project_name(name: str) -> str:
    """A project name is a folder name: letters, digits, spaces, '.', '-' and '_' (at most 64)."""
    name = (name or "").strip()
    if not _NAME_RE.match(name) or name in {".", ".."}:
        raise StoreError("Give the project a name of letters, digits, spaces, '-', '_' or '.' (at most 64 characters).")
    return name


class ActiveLearningSession:
    """One project: its store, its cached embeddings, its current model and its background jobs.

    Thread-safe: the UI calls it from several request threads while a round trains in the background.
    """

    def __init__(self, store: ProjectStore, settings: ProjectSettings) -> None:
        self.store = store
        self.settings = settings
        self.jobs = JobRunner()
        self.model = ModelState(store.root, settings, store)
        self.label_set = LabelSet(store, self.model)  # add, rename, merge, delete labels
        self._round_lock = threading.Lock()
        self._batch_lock = threading.Lock()
        self._extension_cache: tuple[tuple, list[tuple[int, str, float | None]]] | None = None
        self.labeling = Labeling(
            store,
            extension=self._extension,
            labels_changed=self.maybe_start_round,
            learn_now=self.start_round,
            lock=self._batch_lock,
        )

    # ----------------------------------------------------------------- projects
    @classmethod
    def create(
        cls, projects_dir: str | Path, name: str, labels: Sequence[str], settings: ProjectSettings | None = None
    ) -> ActiveLearningSession:
        """Make a new project folder with its labels and settings."""
        name = check_project_name(name)
        labels = [str(x).strip() for x in labels if str(x).strip()]
        if len(labels) < 2:
            raise StoreError("A project needs at least two labels; type one per line or separate them with commas.")
        if len(set(labels)) != len(labels):
            raise StoreError("Each label must be different; remove the repeated ones.")
        root = Path(projects_dir) / name
        if (root / ProjectStore.DB_NAME).exists():
            raise StoreError(f"A project named '{name}' already exists; open it instead or choose another name.")
        settings = settings or ProjectSettings()
        store = ProjectStore(root)
        store.update_settings(name=name, settings=settings.to_dict(), created=time.time())
        store.ensure_labels(labels)
        return cls(store, settings)

    @classmethod
    def open(cls, projects_dir: str | Path, name: str) -> ActiveLearningSession:
        """Open an existing project and resume where it stopped (batch, model, labels)."""
        root = Path(projects_dir) / check_project_name(name)
        if not (root / ProjectStore.DB_NAME).exists():
            raise StoreError(f"There is no project named '{name}'. Choose one from the list.")
        store = ProjectStore(root, create=False)
        clean_staging(store.root)  # staging folders left by imports that were killed
        clean_temp_files(store.root / folder for folder in ("checkpoints", "exports", "embeddings"))  # and by saves
        settings = ProjectSettings.from_dict(store.get_setting("settings", {}))
        session = cls(store, settings)
        session.model.restore_active()
        return session

    @staticmethod
    def list_projects(projects_dir: str | Path) -> list[str]:
        """Names of the projects in `projects_dir`, sorted."""
        base = Path(projects_dir)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / ProjectStore.DB_NAME).exists())

    @property
    def name(self) -> str:
        return str(self.store.get_setting("name", self.store.root.name))

    @property
    def folder_name(self) -> str:
        """The project folder's name: what it is opened by (a folder copied by hand keeps `name` from before)."""
        return self.store.root.name

    @property
    def labels(self) -> list[str]:
        return self.store.labels()

    def close(self) -> None:
        """Stop background work and release the database."""
        self.jobs.cancel(ROUND_JOB)
        self.jobs.wait(ROUND_JOB, timeout=30)
        self.jobs.wait(PROBS_JOB, timeout=30)
        self.store.close()

    # --------------------------------------------------------------------- data
    def add_data(
        self,
        sources: Sequence[str | Path],
        *,
        labels_from_folders: bool = False,
        allowed_roots: Sequence[str | Path] = (),
        progress: CountProgressFn | None = None,
    ) -> IngestReport:
        """Import images (folders, files, zips, CSVs); see `app.core.ingest.ingest`."""
        return ingest(
            self.store,
            sources,
            labels_from_folders=labels_from_folders,
            allowed_roots=allowed_roots,
            progress=progress,
        )

    def add_label(self, name: str) -> None:
        """Add one label at the end of the label set."""
        self.store.add_label(name)

    # ------------------------------------------------------------------ batches
    def batch(self) -> list[BatchItem]:
        """The current batch, in order."""
        return self.store.batch()

    def next_item(self, client_id: str, annotator: str | None = None) -> BatchItem | None:
        """Claim the next image for `client_id` (labeled by `annotator`, if known); see `Labeling.next_item`."""
        return self.labeling.next_item(client_id, annotator)

    def _pool_ids(self) -> list[int]:
        labeled = self.store.current_labels()
        in_batch = {b.image_id for b in self.store.batch()}
        return [i for i in self.store.image_ids() if i not in labeled and i not in in_batch]

    def peek_extension(self) -> list[int]:
        """The images the batch would grow by if it were used up now; see `Labeling.peek_extension`."""
        return self.labeling.peek_extension()

    def _extension(self) -> list[tuple[int, str, float | None]]:
        """The `(image_id, strategy, score)` picks of a batch extension; kept while the pool and model stay the
        same, so a peek and the extension that follows agree and the picking is done once."""
        pool = self._pool_ids()
        key = (self.store.current_round(), self.model.generation, tuple(pool))
        cached = self._extension_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        items = self._pick_extension(pool) if pool else []
        self._extension_cache = (key, items)
        return items

    def _pick_extension(self, pool: list[int]) -> list[tuple[int, str, float | None]]:
        return pick_extension(self.store, self.model, self.settings, pool)

    def ensure_batch(self, progress: ProgressFn = no_progress) -> list[BatchItem]:
        """Make sure there is a batch to label: the cold-start pick when nothing is labeled yet."""
        with self._batch_lock:
            current = self.store.batch()
            if any(b.status == "pending" for b in current):
                return current
        self.run_round(progress=progress, record=False)
        return self.store.batch()

    # --------------------------------------------------------------- annotation
    def label(
        self,
        image_id: int,
        label: str,
        *,
        annotator: str = "user",
        seconds: float | None = None,
        method: str = "single",
    ) -> int:
        """Record a label; may start a round in the background. See `Labeling.label`."""
        return self.labeling.label(image_id, label, annotator=annotator, seconds=seconds, method=method)

    def skip(self, image_id: int) -> None:
        """Leave an image unlabeled; it is not offered again in this batch."""
        self.labeling.skip(image_id)

    def undo(self, annotator: str | None = None, client: str | None = None) -> Annotation | None:
        """Take back the newest label (of `annotator`); the image goes back into the batch; see `Labeling.undo`."""
        return self.labeling.undo(annotator, client)

    def agreement(self) -> Agreement:
        """Each annotator's labels, speed and agreement with the others (shared labeling); see `app.core.agreement`."""
        return compute_agreement(self.store.history())

    def set_overlap(self, fraction: float) -> None:
        """Have that share (0 to 1) of each new batch and extension labeled by two different annotators."""
        self.settings = self.settings.replace(overlap=float(fraction))  # ValueError with a message when out of range
        self.store.update_settings(settings=self.settings.to_dict())

    # --------------------------------------------------------------- reads for the page
    @property
    def images_dir(self) -> Path:
        """The folder of the project's images (content-addressed copies, never modified): all the page may show."""
        return self.store.root / IMAGES_DIR

    def image(self, image_id: int) -> ImageRow:
        """One image's record (file name, size, where it came from)."""
        return self.store.get_image(image_id)

    def image_path(self, image_id: int) -> Path:
        """Where one image's file is."""
        return self.store.image_path(image_id)

    def image_files(self, count: int) -> list[tuple[Path, str]]:
        """The first `count` images as (file, original name)."""
        return [(self.store.root / row.path, row.original_name) for row in self.store.images()[:count]]

    def label_of(self, image_id: int) -> str | None:
        """The current label of an image, or None."""
        return self.store.label_of(image_id)

    def count_images(self) -> int:
        return self.store.count_images()

    def label_counts(self) -> dict[str, int]:
        """Images per label, in label order."""
        return self.store.label_counts()

    def rounds(self) -> list[RoundRow]:
        """Every recorded round, oldest first."""
        return self.store.rounds()

    def latest_round(self) -> RoundRow | None:
        """The newest recorded round (one row: cheap enough for a status poll)."""
        return self.store.latest_round()

    def current_round(self) -> int:
        """Number of rounds recorded so far."""
        return self.store.current_round()

    def predictions(self, image_id: int) -> dict[str, float] | None:
        """The current model's probability per label for one image, or None before the first model."""
        probs = self.model.probs_for([image_id])
        if probs is None:
            return None
        return self.label_set.named(self.model.label_names, probs[0])

    def suspects(self, top: int | None = None) -> list[Suspect]:
        """Labeled images whose label is likely wrong, most suspicious first (at most `top`); see
        `app.engine.label_check`. Embeds images not cached yet; trains a few heads (seconds), so call it off the
        request path."""
        ids = self.store.image_ids()
        self._embed(ids)
        return label_check.cached_suspects(self.store, self.settings, self.model.cache, ids, top=top)

    def progress(self) -> dict[str, Any]:
        """Counts for the progress line: labeled, total, round, batch position."""
        batch = self.store.batch()
        done = sum(1 for b in batch if b.status != "pending")
        return {
            "labeled": len(self.store.current_labels()),
            "total": self.store.count_images(),
            "round": self.store.current_round(),
            "batch_done": done,
            "batch_size": len(batch),
        }

    # ------------------------------------------------------------------- rounds
    def maybe_start_round(self) -> JobStatus | None:
        """Start a round in the background when every image of the batch is labeled or skipped."""
        batch = self.store.batch()
        if not batch or any(b.status == "pending" for b in batch):
            return None
        if not any(b.status == "labeled" for b in batch):
            return None
        return self.start_round()

    def start_round(self) -> JobStatus:
        """Train, evaluate, score and select in a background job (one at a time)."""
        return self.jobs.start(ROUND_JOB, lambda progress, stop: self.run_round(progress=progress, stop_event=stop))

    def round_status(self) -> JobStatus | None:
        return self.jobs.status(ROUND_JOB)

    def ensure_embeddings(self, progress: ProgressFn = no_progress) -> np.ndarray:
        """Embed every image not cached yet; returns the embeddings of all images in id order.

        With `devices` x `num_nodes` > 1 in the settings, the missing images are embedded in one run over that many
        processes (Lightning's DDP; GPUs when there are any, else CPU processes), which reports no progress.
        """
        ids = self.store.image_ids()
        self._embed(ids, progress)
        return self.model.cache.get(ids)

    def embed_all(self, progress: ProgressFn = no_progress) -> None:
        """Embed every image not cached yet, as `ensure_embeddings` does, without a float32 copy of the pool."""
        self._embed(self.store.image_ids(), progress)

    def _embed(self, ids: list[int], progress: ProgressFn = no_progress, *, current: bool = False) -> None:
        """Embed the images of `ids` the frozen backbone (`current`: the current model's backbone) has not."""
        cache = self.model.current_cache() if current else self.model.cache
        if not cache.missing(ids):
            return
        if current and self.model.is_finetuned():  # a fine-tuned model reads its own backbone's features
            backbone, compute, message = self.model.current_backbone(), Compute(), finetuning.REEMBED_MESSAGE
        else:
            backbone, compute, message = self.model.backbone(), project_compute(self.settings), EMBED_MESSAGE
        paths = image_paths(self.store)
        embed_missing(backbone, cache, ids, paths, progress=progress, message=message, compute=compute)

    def run_round(
        self, *, progress: ProgressFn = no_progress, stop_event: threading.Event | None = None, record: bool = True
    ) -> dict[str, Any]:
        """Run one round now (blocking): embeddings, train, evaluate, score the pool, select the next batch.

        Args:
            record: False for the cold-start pick (no training round is recorded without labels).

        Returns:
            The round's metrics, or ``{"cancelled": True}`` when `stop_event` stopped it (nothing is kept).
        """
        with self._round_lock:
            started, s = time.perf_counter(), self.settings
            ids = self.store.image_ids()
            if not ids:
                raise EmptyPoolError("The project has no images yet; add a folder, files, a zip or a CSV first.")
            split = 0.1 if s.mode == "finetune" else 0.5  # of the progress bar: embedding, then the learner
            self._embed(ids, _scaled(progress, 0.0, split))
            data = rounds.read(self.store, s, ids, self.model.cache.matrix(ids))  # float16 memory map, no copy
            learner, data = rounds.choose_learner(data, self.model, self.store, s)
            k = min(s.batch_size, len(data.pool_rows))  # twice as many picked: spares for images labeled meanwhile
            result = rounds.run(
                data, learner, strategy=s.strategy, k=min(len(data.pool_rows), 2 * k), stop=stop_event,
                progress=_scaled(progress, 0.1 if isinstance(learner, finetuning.FineTuneLearner) else 0.5, 0.95),
                evaluate=functools.partial(rounds.evaluate, hidden=s.head_hidden, seed=s.seed), started=started,
                audit_share=s.audit_share, size=k,
            )  # fmt: skip
            if result.cancelled:
                return {"cancelled": True}
            rounds.commit(self.store, self.model, data, result, strategy=s.strategy, size=k, record=record)
            if result.fitted is not None and result.fitted.partial:  # a big pool: its candidates were scored
                self.jobs.start(PROBS_JOB, lambda _progress, _stop: self.model.complete_probs())
            progress(1.0, "Next batch ready")
            return result.metrics

    # -------------------------------------------------------------- checkpoints
    def save_checkpoint(self, name: str | None = None) -> str:
        """Save the active model under a name (by default its round and the time); returns the name."""
        active = self.model.active()
        number = self.store.current_round() if active is None else active.round
        name = check_project_name(name or f"round-{number:03d}-{time.strftime('%Y%m%d-%H%M%S')}")
        return self.model.save_named(name)  # with the round and label count of the model it is

    def list_checkpoints(self) -> list[dict[str, Any]]:
        """Saved checkpoints, newest first: name, round, labeled, created."""
        return self.model.list_named()

    def load_checkpoint(self, name: str) -> dict[str, Any]:
        """Make a saved checkpoint the active model (kept by a restart) until a round trains a newer one; labels are
        never rolled back (they come from the store). Its metadata, with ``active``: the `ActiveModel` it now is."""
        info = self.model.load_named(name, self.store.labels())
        ids = self.store.image_ids()
        self._embed(ids)
        self._embed(ids, current=True)  # a fine-tuned checkpoint reads its own backbone's embeddings
        self.model.refresh_probs(ids)
        return info

    def switch_model(self, settings: ProjectSettings, adopt: Callable[[ModelState], None]) -> None:
        """Give the project another backbone (`settings`) and a model state of its own, which `adopt` fills before
        it is used (`app.engine.model_into_project`); a running round is cancelled first. Labels stay."""
        self.jobs.cancel(ROUND_JOB)
        self.jobs.wait(ROUND_JOB, timeout=60)
        with self._round_lock:
            model = ModelState(self.store.root, settings, self.store)
            adopt(model)
            self.store.update_settings(settings=settings.to_dict())
            self.settings, self.model, self._extension_cache = settings, model, None
            self.label_set = LabelSet(self.store, model)

    # ------------------------------------------------------------------ exports
    def export(self, kind: str) -> Path:
        """Write one export (labels_csv, class_zip, provenance_json, ckpt, safetensors, onnx; all_zip: the labels
        and the model in one zip, see `app.engine.export_all`; project_zip: `export_project`); returns its path."""
        from app.engine import export_all, exports

        out = self.store.root / "exports"
        out.mkdir(exist_ok=True)
        if kind == "labels_csv":
            return exports.labels_csv(self.store, out / "labels.csv")
        if kind == "class_zip":
            return exports.class_zip(self.store, out / "images_by_class.zip")
        if kind == "provenance_json":
            return exports.provenance_json(self.store, out / "provenance.json")
        if kind == "all_zip":
            return export_all.export_all(self.store, self.model, out)
        if kind == "project_zip":
            return self.export_project(out / "project.zip")
        if kind in {"ckpt", "safetensors", "onnx"}:
            if not self.model.has_model():
                raise AppError("There is no trained model yet: label a batch so the first round can train one.")
            return exports.model_export(self.model, kind, out)
        raise AppError(f"Unknown export '{kind}'.")

    def export_project(self, out: Path | None = None, *, embeddings: bool = True) -> Path:
        """Write the whole project as one zip (`app.engine.project_archive`; by default ``exports/project.zip``) that
        `app.engine.project_import` opens anywhere; waits for a running round, so its model files are complete."""
        from app.engine import project_archive

        with self._round_lock:
            return project_archive.export_project(
                self.store, out or self.store.root / "exports" / "project.zip", embeddings=embeddings
            )

    def delete_project(self) -> None:
        """Remove the project folder (used by tests and the UI's delete action)."""
        root = self.store.root
        self.close()
        shutil.rmtree(root, ignore_errors=True)
