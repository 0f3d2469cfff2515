import numpy as np

from app.core.splits import stratified_holdout, validation_mask


def test_validation_mask_is_stratified_and_keeps_training_images():
    ids = list(range(100))
    y = [0] * 50 + [1] * 40 + [2] * 10
    mask = validation_mask(ids, y, 0.2, seed=0)
    y = np.array(y)
    assert mask[y == 0].sum() == 10
    assert mask[y == 1].sum() == 8
    assert mask[y == 2].sum() == 2


def test_validation_mask_is_stable_as_labels_accumulate():
    ids = list(range(200))
    y = [i % 4 for i in ids]
    first = set(np.array(ids[:100])[validation_mask(ids[:100], y[:100], 0.2)])
    later = set(np.array(ids)[validation_mask(ids, y, 0.2)])
    # the held-out images of the first 100 stay held out in large part when 100 more arrive
    assert len(first & later) >= 0.5 * len(first)


def test_single_example_class_is_never_held_out():
    mask = validation_mask([1, 2, 3], [0, 0, 1], 0.5)
    assert not mask[2]


def test_stratified_holdout_fraction_per_class():
    y = np.array([0] * 30 + [1] * 70)
    held = stratified_holdout(y, 0.3, seed=1)
    assert held[y == 0].sum() == 9
    assert held[y == 1].sum() == 21
