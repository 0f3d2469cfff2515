import numpy as np

from app.engine.evaluation import cross_validated_metrics


def test_cross_validation_scores_every_label_out_of_fold():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 16)) * 5
    y = np.repeat(np.arange(3), 8)
    x = (centers[y] + rng.normal(size=(24, 16))).astype(np.float32)
    metrics = cross_validated_metrics(x, y, ["a", "b", "c"])
    assert metrics["n"] == 24
    assert metrics["accuracy"] > 0.9
    assert metrics["validation"] == "5-fold cross-validation"


def test_unlearnable_labels_are_not_scored_as_if_seen():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    y = rng.integers(0, 2, size=40)
    # a head scored on its own training data would fit noise; out-of-fold it stays near chance
    assert cross_validated_metrics(x, y, ["a", "b"])["accuracy"] < 0.8


def test_too_few_labels_gives_nothing():
    assert cross_validated_metrics(np.zeros((9, 4), np.float32), np.zeros(9, int), ["a", "b"]) is None


def test_about_one_label_per_class_is_too_few_to_measure():
    rng = np.random.default_rng(2)
    names = [str(d) for d in range(10)]
    assert cross_validated_metrics(rng.normal(size=(19, 4)).astype(np.float32), np.arange(19) % 10, names) is None
    assert cross_validated_metrics(rng.normal(size=(20, 4)).astype(np.float32), np.arange(20) % 10, names) is not None
