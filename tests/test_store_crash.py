"""A store killed with SIGKILL loses nothing it reported as written."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.store import ProjectStore

REPO_ROOT = Path(__file__).resolve().parents[1]

WRITER = """
import hashlib, sys
from app.core.store import ProjectStore

store = ProjectStore(sys.argv[1], create=False)
i = 0
while True:
    digest = hashlib.sha256(str(i).encode()).hexdigest()
    image = store.add_image(sha256=digest, path=f"images/{digest[:2]}/{digest}.png", original_name=f"{i}.png",
                            source="crash", size_bytes=i, width=1, height=1)
    ann = store.add_annotation(image, "ab"[i % 2], seconds=float(i))
    if i % 10 == 0:
        store.update_settings(last=i)
    print(image, ann, flush=True)
    i += 1
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_sigkill_loses_no_committed_annotation(tmp_path: Path) -> None:
    store = ProjectStore(tmp_path / "p")
    store.ensure_labels(["a", "b"])
    store.close()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "p")],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reported: list[tuple[int, int]] = []
    try:
        while len(reported) < 300:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"the writer stopped early: {proc.stderr.read()}")
            image, ann = map(int, line.split())
            reported.append((image, ann))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    conn = sqlite3.connect(tmp_path / "p" / ProjectStore.DB_NAME)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()

    again = ProjectStore(tmp_path / "p", create=False)
    history = {h.id: h for h in again.history()}
    images = set(again.image_ids())
    for n, (image, ann) in enumerate(reported):
        assert image in images
        assert ann in history
        assert (history[ann].image_id, history[ann].label, history[ann].seconds) == (image, "ab"[n % 2], float(n))
    assert len(history) >= len(reported)
    assert again.get_setting("last") >= (len(reported) - 1) // 10 * 10
    again.close()
