"""Files the app overwrites are replaced whole or not at all: a kill or an error mid-save keeps the old file."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from app.core.atomic import atomic_files, atomic_path, atomic_write_bytes, atomic_write_text
from app.core.settings import ProjectSettings
from app.engine.model_state import ModelState
from lit_models.export import load_head_checkpoint
from lit_models.modules import HeadClassifier

REPO = Path(__file__).resolve().parents[1]
TINY = ProjectSettings(backbone="test_efficientnet", backbone_source="random", image_size=32)
LABELS = ["a", "b", "c"]

# Saves checkpoint "best" (weights from seed 0), then saves "best" again (seed 1) and dies half way through one
# write: argv[2] names the write ("ckpt" or "json").
_KILLED_SAVE = """
import io, os, signal, sys
from pathlib import Path
import torch
from app.core.settings import ProjectSettings
from app.engine.model_state import ModelState
from lit_models.modules import HeadClassifier

state = ModelState(Path(sys.argv[1]), ProjectSettings(backbone="test_efficientnet", backbone_source="random"))
torch.manual_seed(0)
state.head, state.label_names = HeadClassifier(16, 3), ["a", "b", "c"]
state.save_named("best", 1, 8)

def die_half_way(data, target):
    with open(target, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        os.fsync(fh.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

real_save, real_write_text = torch.save, Path.write_text
def dying_save(obj, target, *args, **kwargs):
    buffer = io.BytesIO()
    real_save(obj, buffer)
    die_half_way(buffer.getvalue(), target)
def dying_write_text(self, text, *args, **kwargs):
    die_half_way(text.encode(), self)
if sys.argv[2] == "ckpt":
    torch.save = dying_save
else:
    Path.write_text = dying_write_text
torch.manual_seed(1)
state.head = HeadClassifier(16, 3)
state.save_named("best", 2, 16)
"""


def _head(seed: int) -> HeadClassifier:
    torch.manual_seed(seed)
    return HeadClassifier(16, 3)


def _assert_old_checkpoint(root: Path) -> None:
    """Checkpoint "best" of `root` is the first one saved (weights of seed 0, round 1), and it loads."""
    folder = root / "checkpoints"
    visible = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
    assert visible == {"best.ckpt", "best.json"}
    loaded, old = load_head_checkpoint(folder / "best.ckpt").state_dict(), _head(0).state_dict()
    assert all(torch.equal(loaded[k], old[k]) for k in old)
    assert json.loads((folder / "best.json").read_text(encoding="utf-8"))["round"] == 1
    assert [c["round"] for c in ModelState(root, TINY).list_named()] == [1]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
@pytest.mark.parametrize("write", ["ckpt", "json"])
def test_kill_during_save_checkpoint_keeps_the_previous_one(tmp_path: Path, write: str) -> None:
    script = textwrap.dedent(_KILLED_SAVE)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), write], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    _assert_old_checkpoint(tmp_path)


def _fail_half_way(data: bytes, target: str | os.PathLike) -> None:
    Path(target).write_bytes(data[: len(data) // 2])
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("write", ["ckpt", "json"])
def test_failed_save_named_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: str
) -> None:
    state = ModelState(tmp_path, TINY)
    state.head, state.label_names = _head(0), LABELS
    state.save_named("best", 1, 8)
    real_save = torch.save

    def failing_save(obj: object, target: str | os.PathLike, *args: object, **kwargs: object) -> None:
        buffer = io.BytesIO()
        real_save(obj, buffer)
        _fail_half_way(buffer.getvalue(), target)

    if write == "ckpt":
        monkeypatch.setattr(torch, "save", failing_save)
    else:
        monkeypatch.setattr(Path, "write_text", lambda self, text, *a, **k: _fail_half_way(text.encode(), self))
    state.head = _head(1)
    with pytest.raises(OSError, match="No space"):
        state.save_named("best", 2, 16)
    monkeypatch.undo()
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp file left
    _assert_old_checkpoint(tmp_path)


def _stop_writing_file(target: Path) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("stopped")


def _stop_writing_folder(target: Path) -> None:
    with atomic_files(target) as tmp:
        (tmp / "two.txt").write_text("2")
        raise RuntimeError("stopped")


def test_atomic_path_replaces_only_with_a_complete_file(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "a.json", "old")
    with pytest.raises(RuntimeError):
        _stop_writing_file(target)
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and sorted(tmp_path.iterdir()) == [target]


def test_atomic_files_replace_the_written_files_only(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_files(target) as tmp:
        (tmp / "one.txt").write_text("1")
        (tmp / "two.txt").write_text("old")
    with pytest.raises(RuntimeError):
        _stop_writing_folder(target)
    assert {p.name: p.read_text() for p in target.iterdir()} == {"one.txt": "1", "two.txt": "old"}
    assert sorted(tmp_path.iterdir()) == [target]
    with atomic_files(target) as tmp:
        (tmp / "two.txt").write_text("2")
    assert {p.name: p.read_text() for p in target.iterdir()} == {"one.txt": "1", "two.txt": "2"}
    assert sorted(tmp_path.iterdir()) == [target]


def test_opening_a_project_removes_temp_files_that_killed_saves_left(tmp_path: Path) -> None:
    from app.core.atomic import temp_sibling
    from app.engine.session import ActiveLearningSession

    ActiveLearningSession.create(tmp_path, "p", LABELS).close()
    root = tmp_path / "p"
    (root / "exports" / "model").mkdir(parents=True)
    (root / "embeddings" / "key").mkdir(parents=True)
    (root / "checkpoints").mkdir(exist_ok=True)
    old_file = temp_sibling(root / "checkpoints" / "round_0001.ckpt")
    old_folder = temp_sibling(root / "exports" / "model")  # what atomic_files stages a model folder in
    old_nested = temp_sibling(root / "exports" / "model" / "model.onnx")
    old_vectors = temp_sibling(root / "embeddings" / "key" / "vectors.npy")
    live = temp_sibling(root / "checkpoints" / "best.ckpt")  # may be a save still running in another process
    kept = [root / "checkpoints" / "best.ckpt", root / "exports" / ".notes.tmp", root / "exports" / "labels.csv"]
    old_folder.mkdir()
    for path in [old_file, old_folder / "weights.safetensors", old_nested, old_vectors, live, *kept]:
        path.write_bytes(b"half")
    two_hours_ago = time.time() - 7200
    for path in [old_file, old_folder / "weights.safetensors", old_folder, old_nested, old_vectors, *kept]:
        os.utime(path, (two_hours_ago, two_hours_ago))

    ActiveLearningSession.open(tmp_path, "p").close()

    for path in (old_file, old_folder, old_nested, old_vectors):
        assert not path.exists(), path
    assert live.is_file() and all(path.is_file() for path in kept)
    assert (root / "exports" / "model").is_dir()


def test_a_checkpoint_whose_head_and_label_list_disagree_is_refused_not_used(tmp_path: Path) -> None:
    """A save stopped between its renames can pair a new head with the old label list: it is never loaded."""
    import json

    from app.core.errors import AppError
    from app.engine.checkpoints import Checkpoints
    from app.engine.learners import Fitted
    from lit_models.modules import HeadClassifier

    files = Checkpoints(tmp_path, "key")
    files.save_named("mine", Fitted(HeadClassifier(8, 3), ("a", "b", "c")), round_number=2, labeled=30)
    meta = tmp_path / "checkpoints" / "mine.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "label_names": ["a", "b"]}), encoding="utf-8")
    with pytest.raises(AppError, match="save it again"):
        files.load_named("mine", ["a", "b"])
    files.save_round(1, Fitted(HeadClassifier(8, 3), ("a", "b", "c")))
    round_meta = tmp_path / "checkpoints" / "round_0001.json"
    round_meta.write_text(json.dumps({**json.loads(round_meta.read_text()), "label_names": ["a", "b"]}))
    assert files.load_latest("checkpoints/round_0001.ckpt", ["a", "b"]) is None
