import pytest

from tfigkd.errors import UserError
from tfigkd.freshness import check_same_recipe, is_current, recipe_diff


def test_recipe_diff_names_nested_keys_and_shortens_hashes():
    old = {"student": {"temperature": 2.5, "alpha": 0.5}, "teacher_sha256": "a" * 64, "seed": 0}
    new = {"student": {"temperature": 4.0, "alpha": 0.5}, "teacher_sha256": "b" * 64, "seed": 0}
    diff = recipe_diff(old, new)
    assert "student.temperature: 2.5 -> 4.0" in diff
    assert "teacher_sha256: 'aaaaaaaaaaaa...' -> 'bbbbbbbbbbbb...'" in diff
    assert "alpha" not in diff and "seed" not in diff
    assert is_current(old, dict(old)) and not is_current(old, new)


def test_missing_keys_and_missing_recipes_differ():
    assert recipe_diff({"a": 1}, {"a": 1, "b": 2}) == "b: None -> 2"
    assert not is_current(None, {"a": 1})


def test_check_same_recipe():
    check_same_recipe(None, {"fingerprint": "x"}, "F", "a run", "fix it")  # older work: unchecked
    check_same_recipe({"fingerprint": "x", "a": 1}, {"fingerprint": "x", "a": 1}, "F", "a run", "fix")
    with pytest.raises(UserError, match="on other data"):
        check_same_recipe({"fingerprint": "x"}, {"fingerprint": "y"}, "F", "a run", "fix it")
    with pytest.raises(UserError, match=r"other settings \(a: 1 -> 2\); fix it"):
        check_same_recipe({"fingerprint": "x", "a": 1}, {"fingerprint": "x", "a": 2}, "F",
                          "a run", "fix it")
