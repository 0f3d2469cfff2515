"""Likely-wrong labels: the scoring, a project's suspects, and `python -m app check-labels`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.core.label_issues import estimated_wrong, label_issues, neighbour_votes
from app.engine.session import ActiveLearningSession
from tests.ui_support import DIGITS, TINY

FLIPS = {(3, 4): "8", (5, 1): "6", (7, 2): "1", (9, 0): "4", (2, 7): "0"}  # (digit, index) -> the wrong label given


def _pixels(path: Path) -> np.ndarray:
    """A stand-in embedding: the image's 8x8 grey pixels (the digits' own resolution), as 64 numbers."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L").resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float32).ravel()


def _pixel_embeddings(session: ActiveLearningSession, progress: object = None) -> np.ndarray:
    """`ActiveLearningSession.ensure_embeddings` without a backbone: every image's pixels, cached as embeddings."""
    ids = session.store.image_ids()
    missing = session.model.cache.missing(ids)
    if missing:
        session.model.cache.add(missing, np.stack([_pixels(session.store.image_path(i)) for i in missing]))
    return session.model.cache.get(ids)


# ------------------------------------------------------------------------------------------------ the scoring
def test_neighbours_vote_for_their_own_cluster_and_never_for_themselves() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (6, 4)) + [5, 0, 0, 0], rng.normal(0, 0.1, (6, 4)) + [0, 5, 0, 0]])
    y = np.array([0] * 6 + [1] * 6)
    y[0] = 1  # a wrong label inside cluster 0

    votes = neighbour_votes(x, y, 2, k=3)

    assert votes.shape == (12, 2) and np.allclose(votes.sum(axis=1), 1.0)
    assert votes[0, 0] > 0.9  # its neighbours say 0 whatever its own label says
    assert (votes[6:, 1] > 0.9).all() and (votes[1:6, 0] > 0.6).all()


def test_confident_learning_counts_the_wrong_labels_and_the_ranking_puts_them_first() -> None:
    rng = np.random.default_rng(1)
    truth = np.repeat(np.arange(4), 25)
    probs = np.full((100, 4), 0.05)
    probs[np.arange(100), truth] = 0.85
    probs += rng.uniform(0, 0.02, probs.shape)
    probs /= probs.sum(axis=1, keepdims=True)
    given = truth.copy()
    flipped = np.array([3, 30, 61, 90])
    given[flipped] = (truth[flipped] + 1) % 4
    x = np.eye(4)[truth] + rng.normal(0, 0.05, (100, 4))

    issues = label_issues(x, given, probs)

    assert estimated_wrong(given, probs) == 4
    assert sorted(issues.ranked.tolist()) == flipped.tolist()
    assert issues.suggested[flipped].tolist() == truth[flipped].tolist()
    assert (np.diff(issues.score[issues.order]) <= 1e-12).all()  # most suspicious first


# ------------------------------------------------------------------------------------------------ a project
def test_a_projects_suspects_are_its_flipped_labels(tmp_path: Path, digits_dir: Path) -> None:
    session = ActiveLearningSession.create(tmp_path / "projects", "p", DIGITS, TINY)
    try:
        session.add_data([digits_dir], labels_from_folders=True)
        _pixel_embeddings(session)  # cached, so `suspects` embeds nothing
        by_file = {session.image(i).source: i for i in session.store.image_ids()}
        flipped = {by_file[str(digits_dir / str(d) / f"{i}.png")]: (str(d), wrong) for (d, i), wrong in FLIPS.items()}
        for image_id, (_, wrong) in flipped.items():
            session.label(image_id, wrong)

        suspects = session.suspects()
        top = session.suspects(top=3)
    finally:
        session.close()

    first = {s.image_id: s for s in suspects[:8]}
    found = set(first) & set(flipped)
    assert len(found) >= 4, [(s.image_id, s.label, s.suggested) for s in suspects[:8]]
    assert all(first[i].label == flipped[i][1] for i in found)  # the label given, not the true one
    assert sum(first[i].suggested == flipped[i][0] for i in found) >= len(found) - 1  # 9 and 5 may look alike
    assert len(suspects) < 30 and [s.image_id for s in top] == [s.image_id for s in suspects[:3]]


def test_a_project_without_enough_labels_has_no_suspects(tmp_path: Path, digits_dir: Path) -> None:
    session = ActiveLearningSession.create(tmp_path / "projects", "p", DIGITS, TINY)
    try:
        session.add_data([digits_dir / "1", digits_dir / "2"])
        _pixel_embeddings(session)
        assert session.suspects() == []  # nothing labeled
        for image_id in session.store.image_ids()[:9]:
            session.label(image_id, "1")
        session.label(session.store.image_ids()[-1], "2")
        assert session.suspects() == []  # 10 labels, but one label has a single image: no fold could learn it
    finally:
        session.close()


# ------------------------------------------------------------------------------------------------ check-labels
def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_check_labels_on_a_csv_names_the_wrong_labels_by_their_paths_as_given(
    tmp_path: Path, digits_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ActiveLearningSession, "ensure_embeddings", _pixel_embeddings)
    table = tmp_path / "labels.csv"
    lines = ["path,label"]
    for d in range(10):
        for i in range(10):
            lines.append(f"digits/{d}/{i}.png,{FLIPS.get((d, i), str(d))}")
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "suspects.csv"

    code = main(["check-labels", "--data", str(table), "--out", str(out)])

    rows = _rows(out)
    assert code == 0 and list(rows[0]) == ["path", "label", "suggested", "score"]
    given = {line.split(",")[0]: line.split(",")[1] for line in lines[1:]}
    assert all(row["label"] == given[row["path"]] for row in rows)
    scores = [float(row["score"]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    first = {row["path"]: row for row in rows[:8]}
    wrong = {f"digits/{d}/{i}.png": str(d) for d, i in FLIPS}
    assert len(set(first) & set(wrong)) >= 4
    assert sum(first[p]["suggested"] == wrong[p] for p in set(first) & set(wrong)) >= 3
    printed = capsys.readouterr().out
    assert f"Checked 100 labeled images: {len(rows)} suspected" in printed and f"Wrote {len(rows)} rows" in printed


@pytest.mark.slow
def test_check_labels_on_a_class_folder_with_a_model_file(
    tmp_path: Path, digits_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import safetensors.torch
    import timm
    import torch

    torch.manual_seed(0)
    weights = tmp_path / "tiny.safetensors"
    safetensors.torch.save_file(timm.create_model("test_efficientnet", num_classes=10).state_dict(), str(weights))
    out = tmp_path / "suspects.csv"
    argv = ["check-labels", "--data", str(digits_dir), "--backbone", "test_efficientnet", "--weights", str(weights)]

    code = main([*argv, "--image-size", "32", "--out", str(out), "--top", "5", "--work-dir", str(tmp_path / "w")])

    rows = _rows(out)
    assert code == 0 and 1 <= len(rows) <= 5 and list(rows[0]) == ["path", "label", "suggested", "score"]
    for row in rows:
        path = Path(row["path"])
        assert path.is_file() and path.parent.parent == digits_dir  # under PATH, as given
        assert row["label"] == path.parent.name and row["suggested"] in DIGITS and row["suggested"] != row["label"]
    assert "Checked 100 labeled images" in capsys.readouterr().out
    assert (tmp_path / "w" / "check-labels" / "project.db").exists()  # kept for the next run


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "does not exist"),
        ("no_label_column", "has no label column"),
        ("no_path_column", "column"),
        ("one_class", "at least two labels"),
        ("no_class_folders", "No labeled images"),
        ("too_few", "needs at least 10"),
        ("text_file", "neither a folder nor a .csv"),
        ("bad_top", "--top must be at least 1"),
    ],
)
def test_check_labels_refuses_bad_input_in_one_line(
    case: str, expected: str, tmp_path: Path, digits_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = [f"digits/1/{i}.png" for i in range(10)]
    data = {
        "missing": str(tmp_path / "nowhere"),
        "no_label_column": str(_write_csv(tmp_path / "a.csv", "path\n" + "\n".join(images) + "\n")),
        "no_path_column": str(_write_csv(tmp_path / "b.csv", "name,label\nx.png,1\n")),
        "one_class": str(digits_dir / ".." / "digits_one"),
        "no_class_folders": str(digits_dir / "1"),
        "too_few": str(_write_csv(tmp_path / "c.csv", "path,label\ndigits/1/0.png,1\ndigits/2/0.png,2\n")),
        "text_file": str(_write_csv(tmp_path / "notes.txt", "hello")),
        "bad_top": str(digits_dir),
    }[case]
    if case == "one_class":
        (Path(data) / "7").mkdir(parents=True)
        for i in range(12):
            (Path(data) / "7" / f"{i}.png").write_bytes((digits_dir / str(i % 10) / f"{i // 10}.png").read_bytes())
    extra = ["--top", "0"] if case == "bad_top" else []

    code = main(["check-labels", "--data", data, "--out", str(tmp_path / "s.csv"), *extra])

    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and expected in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "s.csv").exists()
