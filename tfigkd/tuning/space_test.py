"""Search-space parsing and checking (no TensorFlow, no Optuna study)."""

import optuna
import pytest

from tfigkd.config import ConfigError, ExperimentConfig, config_from_dict
from tfigkd.tuning.space import apply_params, config_keys, parse_space


def test_kinds_and_suggestions():
    params = parse_space({"student.alpha": {"low": 0.001, "high": 1.0, "log": True},
                          "student.model.kwargs.filters": {"low": 8, "high": 32, "step": 8,
                                                           "type": "int"},
                          "student.temperature": {"choices": [2.0, 4.0]}})
    assert [p.kind for p in params] == ["float", "int", "categorical"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        v = {p.key: p.suggest(trial) for p in params}
        assert 0.001 <= v["student.alpha"] <= 1.0
        assert v["student.model.kwargs.filters"] in (8, 16, 24, 32)
        assert v["student.temperature"] in (2.0, 4.0)
        study.tell(trial, 0.0)


@pytest.mark.parametrize("spec, words", [
    ({"low": 1.0, "high": 0.5}, "empty range"),
    ({"low": 0.0, "high": 1.0, "log": True}, "log range needs positive"),
    ({"choices": []}, "empty or non-list"),
    ({"choices": [1, 1]}, "repeats a value"),
    ({"low": 0.1}, "needs low and high"),
    ({"low": "1e-3", "high": 1.0}, "expected a number"),
    ({"low": 1, "high": 4, "typ": "int"}, "unknown key 'typ'"),
    ({"low": 1.5, "high": 4, "type": "int"}, "not an integer"),
])
def test_bad_specs(spec, words):
    with pytest.raises(ValueError, match=words):
        parse_space({"student.alpha": spec})


def _cfg(space, **tune):
    return {"name": "t", "data": {"source": "fashion_mnist"}, "tune": {"space": space, **tune}}


@pytest.mark.parametrize("space, tune, words", [
    ({"student.alpah": {"low": 0.1, "high": 0.5}}, {}, "Did you mean 'student.alpha'"),
    ({"student.alpha": {"low": 0.1, "high": 1.5}}, {}, "1.5 is out of range"),
    ({"student.train.optimizer.name": {"choices": ["adam", "rmsprop"]}}, {}, "'rmsprop' is not one"),
    ({"tune.trials": {"low": 1, "high": 4, "type": "int"}}, {}, "not a training setting"),
    ({"student.alpha": {"low": 0.1, "high": 0.5}}, {"sampler": "grid"}, "grid sampler needs"),
    ({"student.alpha": {"low": 0.1, "high": 0.5}}, {"objectives": ["macs"]}, "tune.objectives"),
    ({"student.alpha": {"low": 0.1, "high": 0.5}}, {"enqueue": [{"student.p": 0.1}]},
     "not in tune.space"),
])
def test_config_errors_name_the_key(space, tune, words):
    with pytest.raises(ConfigError, match=words):
        config_from_dict(_cfg(space, **tune))


def test_valid_space_and_free_form_kwargs():
    cfg = config_from_dict(_cfg({"student.model.kwargs.width": {"choices": [0.5, 1.0]},
                                 "student.train.optimizer.lr": {"low": 1e-4, "high": 1e-2,
                                                                "log": True}}))
    assert len(cfg.tune.space) == 2
    keys = config_keys(ExperimentConfig)
    assert "student.alpha" in keys and "student.model.kwargs.*" in keys


def test_apply_params_copies():
    base = {"student": {"alpha": 0.1}}
    out = apply_params(base, {"student.alpha": 0.5, "student.model.kwargs.filters": 16})
    assert out == {"student": {"alpha": 0.5, "model": {"kwargs": {"filters": 16}}}}
    assert base == {"student": {"alpha": 0.1}}
