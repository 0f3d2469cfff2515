import numpy as np
import pytest

from app.engine.embedding_cache import EmbeddingCache


def test_add_get_and_reopen(tmp_path):
    cache = EmbeddingCache(tmp_path / "emb")
    cache.add([5, 3], np.array([[1, 2], [3, 4]], dtype=np.float32))
    assert cache.missing([3, 4, 5]) == [4]
    np.testing.assert_array_equal(cache.get([3, 5]), [[3, 4], [1, 2]])
    reopened = EmbeddingCache(tmp_path / "emb")
    np.testing.assert_array_equal(reopened.get([5]), [[1, 2]])
    assert reopened.get([5]).dtype == np.float32


def test_ensure_computes_each_image_once(tmp_path):
    cache = EmbeddingCache(tmp_path)
    calls = []

    def compute(ids):
        calls.append(list(ids))
        return np.array([[i, i] for i in ids], dtype=np.float32)

    assert cache.ensure([1, 2, 3], compute, chunk=2) == 3
    assert cache.ensure([1, 2, 3, 4], compute) == 1
    assert calls == [[1, 2], [3], [4]]
    np.testing.assert_array_equal(cache.get([4, 1]), [[4, 4], [1, 1]])


def test_unknown_id_raises_keyerror(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.add([1], np.ones((1, 3)))
    with pytest.raises(KeyError):
        cache.get([2])
