import gzip

import numpy as np
import pytest

from tfigkd.data import read_idx, write_idx


@pytest.mark.parametrize("name", ["images-idx3-ubyte.gz", "images-idx3-ubyte"])
def test_roundtrip_uint8_images(tmp_path, name):
    x = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    write_idx(str(tmp_path / name), x)
    out = read_idx(str(tmp_path / name))
    assert out.dtype == np.uint8 and out.shape == (5, 28, 28)
    np.testing.assert_array_equal(out, x)


def test_header_bytes_are_the_official_magic(tmp_path):
    path = str(tmp_path / "labels-idx1-ubyte.gz")
    write_idx(path, np.array([3, 1, 4], np.uint8))
    raw = gzip.open(path).read()
    assert raw[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 3])


def test_big_endian_int32(tmp_path):
    x = np.array([[1, -2], [70000, 3]], np.int32)
    write_idx(str(tmp_path / "a.idx"), x)
    np.testing.assert_array_equal(read_idx(str(tmp_path / "a.idx")), x)


def test_bad_magic(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x50\x4b\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(str(tmp_path / "bad"))


def test_truncated_payload(tmp_path):
    path = tmp_path / "t.idx"
    write_idx(str(path), np.zeros((4, 3), np.uint8))
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(str(path))
