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
    _, resnet, ds = models
    assert {hw for _, hw in feature_blocks(ds)} == {(8, 8), (4, 4), (2, 2)}
    assert auto_pairs(ds, resnet) == [("features_0", "features_3")]  # 32, 32, 16, 8
    tiny = build_model("ds_cnn", (32, 32, 3), 10, stem_stride=8, blocks=1, downsample=[])
    with pytest.raises(UserError, match="no student block has the spatial size"):
        auto_pairs(tiny, resnet)


# Inputs of different sizes: blocks pair by stride (input size / block size).

def test_stride_pairing_across_input_sizes():
    teacher = build_model("resnet8", (64, 64, 3), 10)  # strides 1, 1, 2, 4
    student = build_model("resnet8", (32, 32, 3), 10)  # strides 1, 1, 2, 4
    # By stride, not by size: the student's 32x32 features_1 (stride 1) goes with the
    # teacher's 64x64 features_1, not with its 32x32 features_2 (stride 2).
    assert auto_pairs(student, teacher) == [("features_1", "features_1"),
                                            ("features_2", "features_2"),
                                            ("features_3", "features_3")]
    assert ("features_1", "features_2") not in valid_pairs(student, teacher)
    assert check_pairs(student, teacher, [["features_0", "features_1"]]) == [
        ("features_0", "features_1")]
    with pytest.raises(UserError, match=r"'features_3' has stride 4 but 'features_2' has stride 2;"
                                        r" with inputs of different sizes \(32x32 and 64x64\).*"
                                        r"Valid pairs: \[features_0, features_0\], "
                                        r"\[features_0, features_1\]"):
        check_pairs(student, teacher, [["features_3", "features_2"]])


def test_stride_pairing_absorbs_same_padding_rounding():
    # "same" padding at 20x20: 10, 5, 3 (stride 6.67); at 12x12: 6, 3, 2 (stride 6).
    teacher = build_model("ds_cnn", (20, 20, 3), 10, stem_stride=2, downsample=[0, 1])
    student = build_model("ds_cnn", (12, 12, 3), 10, stem_stride=2, downsample=[0, 1])
    assert auto_pairs(student, teacher) == [("features_0", "features_0"),
                                            ("features_1", "features_1"),
                                            ("features_4", "features_4")]


def test_no_shared_stride_is_a_clear_error():
    student = build_model("ds_cnn", (32, 32, 3), 10, stem_stride=8, blocks=1, downsample=[])
    teacher = build_model("resnet8", (64, 64, 3), 10)
    with pytest.raises(UserError, match=r"no student block has the stride of a teacher block "
                                        r"\(inputs 32x32 and 64x64; student strides: 8; "
                                        r"teacher strides: 1, 2, 4\)"):
        auto_pairs(student, teacher)
    with pytest.raises(UserError, match="has stride 8 but 'features_3' has stride 4"):
        check_pairs(student, teacher, [["features_0", "features_3"]])


def test_stride_is_exact_where_the_ratio_rounds_the_wrong_way():
    """224 vs 80 and 96 vs 40: input / block is not whole (2.5 and 1.25 cells), so rounding
    the ratio pairs the wrong depths; the power-of-two stride under "same" padding does not."""
    from tfigkd.distill.pairing import axis_stride

    assert [axis_stride(224, b) for b in (112, 56, 28, 14, 7)] == [2, 4, 8, 16, 32]
    assert [axis_stride(80, b) for b in (40, 20, 10, 5, 3)] == [2, 4, 8, 16, 32]
    assert axis_stride(40, 3) == 16 and axis_stride(40, 2) == 32 and axis_stride(96, 6) == 16
    assert axis_stride(12, 1) == float("inf") and axis_stride(30, 7) is None
    # Real models: a ds_cnn at 224 (stem 2, blocks downsampling to stride 32) and at 80.
    kw = dict(stem_stride=2, blocks=5, downsample=[0, 1, 2, 3])
    teacher = build_model("ds_cnn", (224, 224, 3), 10, **kw)
    student = build_model("ds_cnn", (80, 80, 3), 10, **kw)
    t_sizes = dict(feature_blocks(teacher))
    s_sizes = dict(feature_blocks(student))
    pairs = auto_pairs(student, teacher)
    # Every student block finds the teacher block of its own stride, the deepest included.
    assert len(pairs) == len({hw for hw in s_sizes.values()})
    for s_name, t_name in pairs:
        s_hw, t_hw = s_sizes[s_name], t_sizes[t_name]
        assert axis_stride(80, s_hw[0]) == axis_stride(224, t_hw[0])
    deepest = max(s_sizes, key=lambda n: int(n.split("_")[1]))
    t_deep = dict(pairs)[deepest]
    assert (s_sizes[deepest], t_sizes[t_deep]) == ((3, 3), (7, 7))  # 80/3 = 26.7, 224/7 = 32
