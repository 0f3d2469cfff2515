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


def test_appends_write_only_the_new_rows_and_keep_order(tmp_path):
    cache = EmbeddingCache(tmp_path)
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((50, 4)).astype(np.float16)
    cache.add(range(0, 20), vecs[:20])
    header_and_first = (tmp_path / "vectors.npy").read_bytes()[:200]
    cache.add([*range(20, 50), 3, 20], np.concatenate([vecs[20:], np.ones((2, 4))]))  # 3 and 20 already known
    data = (tmp_path / "vectors.npy").read_bytes()
    assert data[128:200] == header_and_first[128:200]  # the first rows were not rewritten
    np.testing.assert_array_equal(EmbeddingCache(tmp_path).get(list(range(49, -1, -1))), vecs[::-1])
    assert np.load(tmp_path / "vectors.npy").shape == (50, 4)  # still a plain .npy file


def test_an_append_that_never_committed_is_ignored_then_overwritten(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.add([1, 2], np.array([[1, 1], [2, 2]], dtype=np.float32))
    ids_before = (tmp_path / "ids.npy").read_bytes()
    cache.add([3], np.array([[3, 3]], dtype=np.float32))
    (tmp_path / "ids.npy").write_bytes(ids_before)  # a crash after the rows, before the ids (the commit point)
    reopened = EmbeddingCache(tmp_path)
    assert reopened.missing([1, 2, 3]) == [3]
    reopened.add([4], np.array([[4, 4]], dtype=np.float32))
    np.testing.assert_array_equal(EmbeddingCache(tmp_path).get([4, 2, 1]), [[4, 4], [2, 2], [1, 1]])
    assert np.load(tmp_path / "vectors.npy").shape == (3, 2)


def test_a_different_width_is_refused(tmp_path):
    cache = EmbeddingCache(tmp_path)
    cache.add([1], np.ones((1, 3)))
    with pytest.raises(ValueError, match="one cache directory per backbone"):
        cache.add([2], np.ones((1, 4)))


def test_starting_over_never_pairs_a_stale_id_list_with_new_rows(tmp_path, monkeypatch):
    from app.engine import embedding_cache

    np.save(tmp_path / "ids.npy", np.array([1, 2], dtype=np.int64))  # a torn cache: two ids, one row
    np.save(tmp_path / "vectors.npy", np.zeros((1, 2), dtype=np.float16))
    cache = EmbeddingCache(tmp_path)
    assert cache.missing([1, 2]) == [1, 2]
    real_save = embedding_cache._atomic_save

    def killed_before_the_ids(path, array):
        if path.name == "ids.npy":
            raise KeyboardInterrupt  # the process stops after the new rows, before the commit point
        real_save(path, array)

    monkeypatch.setattr(embedding_cache, "_atomic_save", killed_before_the_ids)
    with pytest.raises(KeyboardInterrupt):
        cache.add([5, 6, 7], np.array([[5, 5], [6, 6], [7, 7]], dtype=np.float32))
    monkeypatch.undo()
    reopened = EmbeddingCache(tmp_path)
    assert reopened.missing([1, 2, 5]) == [1, 2, 5]  # rows of 5 and 6 are never read as images 1 and 2
