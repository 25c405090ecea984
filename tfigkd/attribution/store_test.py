import glob
import os
import shutil

import numpy as np
import pytest

from tfigkd.attribution.settings import IGSettings
from tfigkd.attribution.store import (StoreMismatchError, finalize_store, load_maps,
                                      parse_shard_spec, write_store)
from tfigkd.data import Subset, fingerprint

H = W = 5


def _subset(n=23, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.permutation(1000)[:n]  # sparse, unsorted indices
    return Subset(rng.integers(0, 255, (n, H, W, 1), dtype=np.uint8), rng.integers(0, 3, n), idx)


def _fake_compute(x, y):
    """A map that is a function of the image, so a mix-up would show."""
    maps = x[..., 0].astype(np.float32) / 7.0 + y[:, None, None]
    return maps, np.full(len(x), 0.01, np.float32), np.full(len(x), 0.001, np.float32)


class _Crash(Exception):
    pass


def _write(store, s, fn=_fake_compute, **kw):
    args = dict(fingerprint=fingerprint(s), teacher_hash="t" * 64, settings=IGSettings(),
                shard_size=5, batch_size=3, progress=False)
    args.update(kw)
    return write_store(store, s, fn, **args)


def test_roundtrip_joins_by_index(tmp_path):
    s = _subset()
    store = str(tmp_path / "ig")
    assert _write(store, s) == 5
    man = finalize_store(store)
    assert man["count"] == 23 and len(man["shards"]) == 5
    maps = load_maps(store, s, fingerprint=fingerprint(s), teacher_hash="t" * 64)
    expected = _fake_compute(s.x, s.y)[0].astype(np.float16)
    np.testing.assert_array_equal(maps, expected)
    # Shuffle the subset: maps still follow their images.
    perm = np.random.default_rng(3).permutation(len(s))
    shuffled = s.take(perm)
    maps2 = load_maps(store, shuffled, fingerprint=fingerprint(shuffled))
    np.testing.assert_array_equal(maps2, expected[perm])


def test_kill_and_resume_is_identical(tmp_path):
    s = _subset()
    calls = {"n": 0}

    def crashing(x, y):
        calls["n"] += 1
        if calls["n"] == 5:  # inside the third shard
            raise _Crash()
        return _fake_compute(x, y)

    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    with pytest.raises(_Crash):
        _write(a, s, crashing)
    assert len(glob.glob(os.path.join(a, "shard-*.json"))) == 2
    assert not glob.glob(os.path.join(a, ".tmp-*"))
    assert _write(a, s) == 3  # only the missing shards
    _write(b, s)
    ma, mb = finalize_store(a), finalize_store(b)
    assert [x["sha256"] for x in ma["shards"]] == [x["sha256"] for x in mb["shards"]]


def test_job_array_workers_then_verify(tmp_path):
    s = _subset()
    store = str(tmp_path / "ig")
    assert _write(store, s, worker=(0, 2)) == 3
    with pytest.raises(StoreMismatchError, match="2 of 5 shards are missing"):
        finalize_store(store)
    assert _write(store, s, worker=(1, 2)) == 2
    assert finalize_store(store)["count"] == 23
    assert parse_shard_spec("1/4") == (1, 4)
    for bad in ("4/4", "x", "1-4"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard_spec(bad)


@pytest.fixture
def store(tmp_path):
    s = _subset()
    path = str(tmp_path / "ig")
    _write(path, s)
    finalize_store(path)
    return path, s


def test_refuses_other_data(store):
    path, s = store
    other = _subset(seed=1)
    with pytest.raises(StoreMismatchError, match="other training data"):
        load_maps(path, other, fingerprint=fingerprint(other))


def test_refuses_other_teacher_and_settings(store):
    path, s = store
    with pytest.raises(StoreMismatchError, match="another teacher"):
        load_maps(path, s, fingerprint=fingerprint(s), teacher_hash="u" * 64)
    with pytest.raises(StoreMismatchError, match="settings"):
        load_maps(path, s, fingerprint=fingerprint(s), settings=IGSettings(n_steps=7))


def test_refuses_wrong_shape(store):
    path, s = store
    big = Subset(np.zeros((len(s), H + 1, W, 1), np.uint8), s.y, s.index)
    with pytest.raises(StoreMismatchError, match="5x5 but the images are 6x5"):
        load_maps(path, big, fingerprint=fingerprint(s))


def test_refuses_missing_and_corrupt_shards(store):
    path, s = store
    shard = sorted(glob.glob(os.path.join(path, "shard-*.tfrecord.gz")))[1]
    backup = shard + ".bak"
    shutil.copy(shard, backup)
    with open(shard, "r+b") as f:
        f.seek(30)
        f.write(b"\x00\x01\x02")
    with pytest.raises(StoreMismatchError, match="corrupt"):
        load_maps(path, s, fingerprint=fingerprint(s))
    os.unlink(shard)
    with pytest.raises(StoreMismatchError, match="missing"):
        load_maps(path, s, fingerprint=fingerprint(s))
    os.unlink(os.path.join(path, "manifest.json"))
    with pytest.raises(StoreMismatchError, match="manifest.json not found"):
        load_maps(path, s, fingerprint=fingerprint(s))


def test_refuses_mixing_runs(store, tmp_path):
    path, s = store
    with pytest.raises(StoreMismatchError, match="different teacher_sha256"):
        _write(path, s, teacher_hash="v" * 64)


def test_maps_joined_to_a_file_for_streamed_data(tmp_path):
    """``to_file``: the same maps, read on demand, written once and then reused."""
    from tfigkd.attribution.store import joined_maps_path
    from tfigkd.data.lazy import LazyRows

    s = _subset()
    store = str(tmp_path / "ig")
    _write(store, s)
    finalize_store(store)
    keys = dict(fingerprint=fingerprint(s), teacher_hash="t" * 64)
    in_memory = load_maps(store, s, **keys)
    join = str(tmp_path / "joined")
    path = joined_maps_path(store, s, join)
    lazy = load_maps(store, s, join_dir=join, **keys)
    assert lazy.path == path
    assert isinstance(lazy, LazyRows) and lazy.dtype == np.float16 and lazy.shape == (23, H, W)
    np.testing.assert_array_equal(np.asarray(lazy), in_memory)
    np.testing.assert_array_equal(lazy[np.array([4, 0, 22])], in_memory[[4, 0, 22]])
    stamp = os.stat(path).st_mtime_ns
    again = load_maps(store, s, join_dir=join, **keys)
    assert os.stat(path).st_mtime_ns == stamp  # reused, not rewritten
    np.testing.assert_array_equal(np.asarray(again), in_memory)
    # Another order of the same examples is another file.
    perm = np.random.default_rng(1).permutation(len(s))
    other = load_maps(store, s.take(perm), join_dir=join, fingerprint=fingerprint(s.take(perm)))
    assert other.path != path
    np.testing.assert_array_equal(np.asarray(other), in_memory[perm])
    # keep=False checks every record and keeps nothing.
    assert load_maps(store, s, keep=False, **keys) is None
    # An unfinished store is the usual one-line error, not a missing-file crash.
    os.remove(os.path.join(store, "manifest.json"))
    with pytest.raises(StoreMismatchError, match="incomplete"):
        load_maps(store, s, join_dir=join, **keys)
