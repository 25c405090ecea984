"""``check-config`` checks attention-transfer pairs of a teacher at its own input size."""

import pytest

from tfigkd.config import config_from_dict
from tfigkd.errors import UserError
from tfigkd.experiments.check import check_buildable
from tfigkd.testing import tiny_config_dict, write_npz


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    return write_npz(str(tmp_path_factory.mktemp("data") / "toy.npz"), n_train=24, n_test=6)


def _cfg(npz, **student):
    d = tiny_config_dict(npz)
    d["teacher"]["model"] = {"name": "resnet8", "kwargs": {}}
    d["teacher"]["input_size"] = [24, 24]  # the data is 12x12: strides 1, 1, 2, 4 in both
    d["student"] = {"model": {"name": "resnet8", "kwargs": {}}, "modes": ["kd_at"], **student}
    return config_from_dict(d)


def test_auto_pairing_across_input_sizes_passes(npz):
    assert "12x12x1" in check_buildable(_cfg(npz, at_pairing="auto"))
    # Equal stride, not equal size: the student's 12x12 features_1 and the teacher's 24x24 one.
    check_buildable(_cfg(npz, at_layers=[["features_1", "features_1"]]))


def test_pairs_of_unequal_stride_are_refused_before_training(npz):
    # features_2 of the teacher is 12x12 like the student's features_1, but at stride 2.
    with pytest.raises(UserError, match=r"'features_1' has stride 1 but 'features_2' has "
                                        r"stride 2.*Valid pairs: \[features_0, features_0\]"):
        check_buildable(_cfg(npz, at_layers=[["features_1", "features_2"]]))
