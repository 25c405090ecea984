import pytest

from tfigkd.distill.pairing import auto_pairs, check_pairs, feature_blocks, valid_pairs
from tfigkd.errors import UserError
from tfigkd.models import build_model, mobilenet_v2_cifar


@pytest.fixture(scope="module")
def models():
    return (mobilenet_v2_cifar((32, 32, 3), 10), build_model("resnet8", (32, 32, 3), 10),
            build_model("ds_cnn", (32, 32, 3), 10, stem_stride=4, downsample=[0, 1]))


def test_auto_pairs_the_deepest_block_of_each_shared_size(models):
    teacher, resnet, _ = models
    # Teacher: 32x32 up to features_3, 16x16 up to 6, 8x8 up to 13, 4x4 after.
    assert auto_pairs(resnet, teacher) == [("features_1", "features_3"),
                                           ("features_2", "features_6"),
                                           ("features_3", "features_13")]
    assert ("features_3", "features_9") in valid_pairs(resnet, teacher)


def test_requested_pairs_are_checked_with_the_valid_ones_listed(models):
    teacher, resnet, _ = models
    assert check_pairs(resnet, teacher, [["features_3", "features_9"]]) == [
        ("features_3", "features_9")]
    with pytest.raises(UserError, match=r"'features_3' is 8x8 but 'features_2' is 32x32.*"
                                        r"Valid pairs: \[features_0, features_0\]"):
        check_pairs(resnet, teacher, [["features_3", "features_2"]])
    with pytest.raises(UserError, match="student has no feature block 'features_9'"):
        check_pairs(resnet, teacher, [["features_9", "features_9"]])


def test_no_shared_size_is_a_clear_error(models):
    _, _, ds = models
    assert {hw for _, hw in feature_blocks(ds)} == {(8, 8), (4, 4), (2, 2)}
    teacher16 = build_model("resnet8", (16, 16, 3), 10)  # 16, 16, 8, 4
    assert auto_pairs(ds, teacher16) == [("features_0", "features_2"), ("features_1", "features_3")]
    tiny = build_model("ds_cnn", (32, 32, 3), 10, stem_stride=2, blocks=1, downsample=[])
    with pytest.raises(UserError, match="no student block has the spatial size"):
        auto_pairs(tiny, build_model("resnet8", (8, 8, 3), 10))
