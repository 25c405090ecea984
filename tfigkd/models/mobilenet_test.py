import pytest

from tfigkd.models import (NUM_FEATURES, build_model, compression_factor,
                           feature_channels, mobilenet_v2_cifar, trainable_params,
                           truncated_student)

# docs/method.md section 2: k -> (trainable params, last channels, CF to 2 decimals).
PAPER_TABLE = {
    3: (1_019_402, 160, 2.19), 5: (543_498, 96, 4.12), 7: (306_954, 96, 7.29),
    9: (185_738, 64, 12.04), 11: (77_194, 64, 28.98), 13: (40_970, 32, 54.59),
    15: (16_042, 24, 139.43), 17: (1_994, 16, 1121.71),
}


@pytest.fixture(scope="module")
def teacher():
    return mobilenet_v2_cifar()


def test_teacher_matches_paper(teacher):
    assert trainable_params(teacher) == 2_236_682
    assert teacher.output_shape == (None, 10)
    # Stride-1 stem and stage 2: 32x32 ends at 4x4 before the 1x1 conv to 1280.
    assert teacher.get_layer(f"features_{NUM_FEATURES - 1}").output.shape[1:] == (4, 4, 1280)


@pytest.mark.parametrize("k", sorted(PAPER_TABLE))
def test_students_match_paper_table(teacher, k):
    params, last, cf = PAPER_TABLE[k]
    student = truncated_student(k)
    assert trainable_params(student) == params
    assert student.get_layer(f"features_{NUM_FEATURES - 1 - k}").output.shape[-1] == last
    # The paper rounds 28.9747 up to 28.98; every other row matches to 0.01.
    assert compression_factor(teacher, student) == pytest.approx(cf, abs=0.011)


def test_attention_block_is_64_channels_at_8x8():
    student = truncated_student(5)
    assert student.get_layer("features_9").output.shape[1:] == (8, 8, 64)


def test_feature_channels_table():
    ch = feature_channels()
    assert len(ch) == NUM_FEATURES == 19
    assert ch[0] == 32 and ch[-1] == 1280 and ch[-2] == 320


def test_other_input_shapes_and_classes():
    m = truncated_student(5, input_shape=(28, 28, 1), num_classes=7)
    assert m.input_shape == (None, 28, 28, 1) and m.output_shape == (None, 7)


@pytest.mark.parametrize("k", [-1, 19, 2.5])
def test_bad_blocks_removed(k):
    with pytest.raises(ValueError, match="blocks_removed"):
        truncated_student(k)


def test_registry_builds_and_rejects_unknown():
    m = build_model("truncated_student", (32, 32, 3), 10, blocks_removed=17)
    assert trainable_params(m) == 1_994
    with pytest.raises(ValueError, match="Did you mean 'truncated_student'"):
        build_model("truncated_studnet", (32, 32, 3), 10)
    with pytest.raises(ValueError, match="Bad arguments"):
        build_model("truncated_student", (32, 32, 3), 10, blocks=3)


def test_check_fits_data_names_both_shapes():
    import types

    import pytest

    from tfigkd.errors import UserError
    from tfigkd.models import check_fits_data, truncated_student

    model = truncated_student(16, (12, 12, 1), 3)
    check_fits_data(model, types.SimpleNamespace(input_shape=(12, 12, 1), num_classes=3))
    with pytest.raises(UserError, match=r"takes \(12, 12, 1\) inputs .* data has \(28, 28, 1\)"):
        check_fits_data(model, types.SimpleNamespace(input_shape=(28, 28, 1), num_classes=3))
