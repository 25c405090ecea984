"""The Mode type: the grammar, the weights, and modes derived from the registries."""

import types

import pytest

from tfigkd import modes
from tfigkd.errors import UserError
from tfigkd.modes import Mode, Weights, parse_mode

SCFG = types.SimpleNamespace(alpha=0.5, p=0.1, gamma=0.8, teacher_mode="cached")


@pytest.mark.parametrize("name, kd, source, at", [
    ("student", False, None, False), ("kd", True, None, False), ("at", False, None, True),
    ("kd_at", True, None, True), ("ig", False, "ig", False), ("kd_ig_at", True, "ig", True),
    ("kd_ig_all_classes", True, "ig_all_classes", False), ("kd_noise", True, "noise", False),
    ("smoothgrad_at", False, "smoothgrad", True)])
def test_grammar(name, kd, source, at):
    m = parse_mode(name)
    assert (m.kd, m.source, m.at) == (kd, source, at)
    assert m.weights(SCFG) == Weights(0.5 if kd else 0.0, 0.1 if source else 0.0,
                                      0.8 if at else 0.0)
    assert name in modes.MODES


def test_derived_controls_need_the_ig_store():
    assert parse_mode("kd_shuffled").stored_source == "ig"
    assert parse_mode("kd_shuffled").control and not parse_mode("kd_ig").control
    assert parse_mode("kd_gradcam").stored_source == "gradcam"
    assert parse_mode("kd").stored_source is None


def test_logit_cache_only_for_cached_kd():
    assert parse_mode("kd_ig").needs_logit_cache(SCFG)
    assert not parse_mode("ig").needs_logit_cache(SCFG)
    assert not parse_mode("kd").needs_logit_cache(types.SimpleNamespace(
        alpha=0.5, teacher_mode="per_view"))


@pytest.mark.parametrize("bad", ["kd_ij", "kd_student", "kd_kd", "", "at_kd", "ig_at_at"])
def test_unknown_modes_are_refused_with_a_suggestion(bad):
    with pytest.raises(UserError, match="is not a mode"):
        parse_mode(bad)


def test_a_new_source_is_one_registry_entry(monkeypatch):
    monkeypatch.setattr(modes, "SOURCES", modes.SOURCES + ("lime",))
    assert "kd_lime_at" in modes.all_modes()
    assert parse_mode("kd_lime") == Mode("kd_lime", True, "lime", False)
