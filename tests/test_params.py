"""service.params: the one description of the training parameters, and the old spellings."""

from __future__ import annotations

import pytest

from service.cli import build_parser
from service.engine import SGDRegressor
from service.http.openapi import document
from service.params import (
    TRAINING_PARAMS,
    ParameterError,
    TrainingSpec,
    param,
    parse_training_params,
)


def test_every_sgd_parameter_names_a_regressor_keyword() -> None:
    keywords = set(SGDRegressor().get_params())
    for p in TRAINING_PARAMS:
        if p.sgd is not None:
            assert p.sgd in keywords, p.name


def test_the_cli_and_openapi_are_built_from_the_description() -> None:
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = {f for action in train._actions for f in action.option_strings}
    assert {p.flag for p in TRAINING_PARAMS} <= flags
    body = document(10_000, 25.0, None)["components"]["schemas"]["RetrainRows"]["properties"]
    assert {p.name for p in TRAINING_PARAMS if p.http} <= set(body)
    assert "tolerance" not in body  # the operator's setting, not the API's


@pytest.mark.parametrize("typed", [True, False])
def test_values_are_converted_and_checked(typed: bool) -> None:
    text = {"epochs": "7", "eta0": "0.5", "early_stopping": "yes", "holdout_fraction": "0.3"}
    json_ = {"epochs": 7, "eta0": 0.5, "early_stopping": True, "holdout_fraction": 0.3}
    spec = parse_training_params(json_ if typed else text, typed=typed)
    assert spec.sgd == {"max_iter": 7, "eta0": 0.5, "early_stopping": True}
    assert spec.holdout_fraction == 0.3


@pytest.mark.parametrize("values, message", [
    ({"epochs": 0}, "epochs must be between 1 and 100000, got 0"),
    ({"eta0": 0}, "eta0 must be > 0, got 0"),
    ({"l1_ratio": 2}, "l1_ratio must be between 0 and 1, got 2"),
    ({"holdout_fraction": 1}, "holdout_fraction must be between 0 and 1, got 1"),
    ({"learning_rate": "fast"}, "learning_rate must be one of constant, invscaling, adaptive, "
                                "got 'fast'"),
    ({"learning_rate": "0.05"}, "learning_rate must be one of"),  # a JSON string is a name
    ({"learning_rate": -1}, "learning_rate must be > 0, got -1"),
    ({"tolerance": 0.5}, "unknown parameter 'tolerance'"),
    ({"colour": "red"}, "unknown parameter 'colour'"),
])
def test_messages_name_the_parameter_and_the_value(values: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message.replace("(", r"\(")) as e:
        parse_training_params(values, typed=True)
    assert e.value.name == next(iter(values))


def test_learning_rate_names_the_schedule_and_a_number_is_the_old_step_size() -> None:
    assert parse_training_params({"learning_rate": "constant"}, typed=True).sgd == {
        "learning_rate": "constant"}
    old = parse_training_params({"learning_rate": 0.05}, typed=True)
    assert old.sgd == {"eta0": 0.05}
    assert old.notes == ["learning_rate=0.05 is the old spelling of eta0=0.05; learning_rate "
                         "now names the schedule (constant, invscaling, adaptive)"]
    form = parse_training_params({"learning_rate": "0.05"}, typed=False)
    assert form.sgd == {"eta0": 0.05} and form.notes == old.notes
    cli = parse_training_params({"learning_rate": "0.05"}, typed=False, context="cli")
    assert cli.notes[0].startswith("--learning-rate 0.05 is the old spelling of --eta0 0.05")
    schema = param("learning_rate").json_schema()
    assert [alt.get("deprecated", False) for alt in schema["oneOf"]] == [False, True]


def test_a_spec_survives_the_job_file() -> None:
    spec = parse_training_params({"target": "price", "features": "a, b", "eta0": "0.1",
                                  "seed": "3", "force": "true"}, typed=False)
    again = TrainingSpec.from_dict(spec.to_dict())
    assert again == spec and again.features == ["a", "b"]


def test_merge_takes_only_the_named_parameters() -> None:
    body = parse_training_params({"epochs": 5, "target": "price"}, typed=True)
    query = parse_training_params({"loss": "huber", "seed": "4"}, typed=False)
    body.merge(query, {"loss", "seed"})
    assert body.sgd == {"max_iter": 5, "loss": "huber"}
    assert (body.target, body.seed) == ("price", 4)
