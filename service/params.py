"""The training parameters: one description that drives every place a user can give them.

``POST /retrain`` (JSON bodies, forms and query strings), the ``sgdserve train`` / ``schedule``
options and the OpenAPI document are all built from :data:`TRAINING_PARAMS`; a new parameter is
one :class:`Param` here. :func:`parse_training_params` validates values with short messages that
name the parameter and the value (``"epochs must be between 1 and 100000, got 0"``) and returns a
:class:`TrainingSpec`.

Names mean one thing each: ``learning_rate`` is the schedule (adaptive, constant, invscaling), as
in ``SGDRegressor``; ``eta0`` is the initial step size. Before this naming, ``learning_rate``
over HTTP and ``--learning-rate`` on the command line took the step size: a number given for
``learning_rate`` is still read as ``eta0`` (the old spelling, kept as an alias), and the old
``--schedule`` option is ``--learning-rate``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .engine.schema import DEFAULT_MAX_LEVELS, DEFAULT_MIN_FREQUENCY
from .engine.sgd import LOSSES, PENALTIES, SCHEDULES, SGDRegressor

__all__ = [
    "MAX_EPOCHS",
    "MAX_FEATURES",
    "TRAINING_PARAMS",
    "Param",
    "ParameterError",
    "TrainingSpec",
    "param",
    "parse_training_params",
]

MAX_EPOCHS = 100_000
MAX_FEATURES = 1000
MAX_NAME_LENGTH = 200

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ParameterError(ValueError):
    """A training parameter is invalid; ``name`` is the parameter as the user spelled it."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


@dataclass(frozen=True)
class Param:
    """One training parameter: its name, kind, bounds, help, and where it goes.

    ``kind`` is ``"int"``, ``"float"``, ``"choice"``, ``"bool"``, ``"name"`` (a column name) or
    ``"names"`` (a list of column names). ``sgd`` names the ``SGDRegressor`` keyword it sets,
    ``encoding`` the data layer's option; with neither it is a parameter of the pipeline (the
    data's format, split, gate). ``low`` and ``high`` are inclusive bounds, except when open.
    """

    name: str
    kind: str
    help: str
    sgd: str | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] = ()
    default: Any = None  # the pipeline's default; an sgd parameter's comes from SGDRegressor
    http: bool = True  # accepted by POST /retrain
    number_alias: str | None = None  # a number given for it is the old spelling of this one
    encoding: str | None = None  # the data layer's option it sets

    @property
    def flag(self) -> str:
        """The command-line option: ``--batch-size`` for ``batch_size``."""
        return "--" + self.name.replace("_", "-")

    @property
    def default_value(self) -> Any:
        if self.sgd is not None:
            return _SGD_DEFAULTS[self.sgd]
        return self.default

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema (OpenAPI 3.0 dialect) of the parameter's value in a JSON body."""
        schema: dict[str, Any]
        if self.kind == "int":
            schema = {"type": "integer"}
        elif self.kind == "float":
            schema = {"type": "number"}
        elif self.kind == "bool":
            schema = {"type": "boolean"}
        elif self.kind == "choice":
            schema = {"type": "string", "enum": list(self.choices)}
        elif self.kind == "name":
            schema = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}
        else:  # names
            schema = {"oneOf": [
                {"type": "array", "minItems": 1, "maxItems": MAX_FEATURES, "uniqueItems": True,
                 "items": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}},
                {"type": "string", "minLength": 1},
            ]}
        if self.low is not None:
            schema["minimum"] = self.low
            if self.low_open:
                schema["exclusiveMinimum"] = True
        if self.high is not None:
            schema["maximum"] = self.high
            if self.high_open:
                schema["exclusiveMaximum"] = True
        description = self.help
        if self.default_value is not None:
            description += f" Default: {self.default_value}."
        if self.number_alias is not None:
            alias = _BY_NAME[self.number_alias].json_schema()
            alias.update(deprecated=True, description=f"The old spelling of {self.number_alias}:"
                         f" a number is read as {self.number_alias}.")
            return {"description": description, "oneOf": [schema, alias]}
        schema["description"] = description
        return schema


_SGD_DEFAULTS = SGDRegressor().get_params()

TRAINING_PARAMS: tuple[Param, ...] = (
    Param("target", "name", "Column to predict (default over HTTP: the active model's target)."),
    Param("features", "names", "Columns to train on (default: every other column); a JSON "
          "list, or comma-separated names."),
    Param("format", "choice", "Format of the data (default: from the file's extension).",
          choices=("csv", "parquet", "jsonl")),
    Param("categorical", "names", "Columns to treat as categories whatever they hold (e.g. an "
          "integer zip code).", encoding="categorical"),
    Param("numeric", "names", "Columns to treat as numbers (a value that is not one is an "
          "error naming its line).", encoding="numeric"),
    Param("drop", "names", "Columns to leave out.", encoding="drop"),
    Param("min_frequency", "int", "Training rows a level needs to get its own weight; rarer "
          "levels share one 'other' weight.", encoding="min_frequency", low=1,
          default=DEFAULT_MIN_FREQUENCY),
    Param("max_levels", "int", "Most levels kept per categorical column (the most frequent).",
          encoding="max_levels", low=1, default=DEFAULT_MAX_LEVELS),
    Param("target_transform", "choice", "Fit the logarithm of a positive, skewed target "
          "(house prices); predictions and metrics stay in the target's units, and predictions "
          "stay within the training range of the target.",
          encoding="target_transform", choices=("none", "log"), default="none"),
    Param("epochs", "int", "Maximum passes over the data.", sgd="max_iter", low=1,
          high=MAX_EPOCHS),
    Param("eta0", "float", "Initial step size on standardised data.", sgd="eta0", low=0,
          low_open=True),
    Param("learning_rate", "choice", "Learning-rate schedule.", sgd="learning_rate",
          choices=tuple(SCHEDULES), number_alias="eta0"),
    Param("batch_size", "int", "Rows per update (default: chosen from the number of rows).",
          sgd="batch_size", low=1),
    Param("loss", "choice", "Loss function.", sgd="loss", choices=tuple(LOSSES)),
    Param("epsilon", "float", "Width of the huber / epsilon-insensitive zone, in standard "
          "deviations of the target.", sgd="epsilon", low=0),
    Param("penalty", "choice", "Regularisation.", sgd="penalty", choices=tuple(PENALTIES)),
    Param("alpha", "float", "Regularisation strength.", sgd="alpha", low=0),
    Param("l1_ratio", "float", "L1 share of the elastic net.", sgd="l1_ratio", low=0, high=1),
    Param("tol", "float", "Relative loss improvement per epoch below which training stops.",
          sgd="tol", low=0),
    Param("early_stopping", "bool", "Stop on a validation split instead of the training loss.",
          sgd="early_stopping"),
    Param("average", "bool", "Averaged SGD.", sgd="average"),
    Param("holdout_fraction", "float", "Share of rows held out for evaluation and the gate.",
          low=0, high=1, low_open=True, high_open=True, default=0.2),
    Param("seed", "int", "Random seed of the split and the fit.", low=0, high=2**32 - 1,
          default=0),
    Param("force", "bool", "Promote even if the candidate is worse than the active model or "
          "its features differ.", default=False),
    # The gate's tolerance is the operator's (SGDSERVE_PROMOTE_TOLERANCE): not an API parameter.
    Param("tolerance", "float", "Promote when the holdout RMSE is at most this much worse "
          "than the active model's (0.01 = 1%).", low=0, http=False),
)

_BY_NAME = {p.name: p for p in TRAINING_PARAMS}


def param(name: str) -> Param:
    """The parameter called ``name``."""
    return _BY_NAME[name]


@dataclass
class TrainingSpec:
    """Validated training parameters: the pipeline's own, and the ``SGDRegressor`` keywords.

    Only parameters that were given are set; the rest keep their defaults here (or in
    ``SGDRegressor``), so a spec records what the user asked for.
    """

    target: str | None = None
    features: list[str] | None = None
    format: str | None = None
    force: bool = False
    seed: int = 0
    holdout_fraction: float = 0.2
    tolerance: float | None = None
    sgd: dict[str, Any] = field(default_factory=dict)
    encoding: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. an old spelling that was read

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target, "features": self.features, "format": self.format,
            "force": self.force, "seed": self.seed, "holdout_fraction": self.holdout_fraction,
            "tolerance": self.tolerance, "params": dict(self.sgd),
            "encoding": dict(self.encoding), "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainingSpec:
        return cls(
            target=d.get("target"), features=d.get("features"), format=d.get("format"),
            force=bool(d.get("force")), seed=int(d.get("seed", 0)),
            holdout_fraction=float(d.get("holdout_fraction", 0.2)),
            tolerance=d.get("tolerance"), sgd=dict(d.get("params") or {}),
            encoding=dict(d.get("encoding") or {}), notes=list(d.get("notes") or []),
        )

    def merge(self, other: TrainingSpec, given: set[str]) -> None:
        """Take what ``other`` was given: its ``SGDRegressor`` keywords, and the pipeline
        parameters named in ``given`` (the rest of ``other`` is defaults)."""
        self.sgd.update(other.sgd)
        self.encoding.update(other.encoding)
        for name in given:
            p = _BY_NAME[name]
            if p.sgd is None and p.encoding is None:
                setattr(self, name, getattr(other, name))
        self.notes.extend(other.notes)


def parse_training_params(
    values: Mapping[str, Any], *, typed: bool, context: str = "http"
) -> TrainingSpec:
    """Validate training parameters into a :class:`TrainingSpec`.

    ``typed`` for JSON values; otherwise every value is text, as from a form, a query string or
    the command line (a bool flag may also be given as a bool). ``context`` ``"http"`` refuses
    parameters that are not accepted over HTTP.
    """
    spec = TrainingSpec()
    for name, raw in values.items():
        p = _BY_NAME.get(name)
        if p is None or (context == "http" and not p.http):
            accepted = [q.name for q in TRAINING_PARAMS if q.http or context != "http"]
            raise ParameterError(
                str(name), f"unknown parameter {str(name)[:50]!r}; expected one of "
                f"{', '.join(accepted)}"
            )
        if p.number_alias is not None and _is_number(raw, typed, p.choices):
            alias = _BY_NAME[p.number_alias]
            value = _convert(alias, name, raw, typed)  # errors name what the user typed
            spec.sgd[alias.sgd or alias.name] = value
            spec.notes.append(_old_spelling(context, name, alias.name, value, p.choices))
            continue
        value = _convert(p, name, raw, typed)
        if p.sgd is not None:
            spec.sgd[p.sgd] = value
        elif p.encoding is not None:
            spec.encoding[p.encoding] = value
        else:
            setattr(spec, name, value)
    return spec


def _old_spelling(context: str, name: str, alias: str, value: float,
                  choices: tuple[str, ...]) -> str:
    if context == "cli":
        name, alias = "--" + name.replace("_", "-"), "--" + alias.replace("_", "-")
        given, meant = f"{name} {value:g}", f"{alias} {value:g}"
    else:
        given, meant = f"{name}={value:g}", f"{alias}={value:g}"
    return (f"{given} is the old spelling of {meant}; {name} now names the schedule "
            f"({', '.join(choices)})")


def _is_number(raw: Any, typed: bool, choices: tuple[str, ...]) -> bool:
    """A JSON number, or (as text) something that reads as one and is not a choice."""
    if isinstance(raw, bool):
        return False
    if isinstance(raw, (int, float)):
        return True
    if typed or not isinstance(raw, str) or raw.strip() in choices:
        return False
    try:
        float(raw.strip())
    except ValueError:
        return False
    return True


def _convert(p: Param, name: str, raw: Any, typed: bool) -> Any:
    if p.kind == "int":
        return _int(name, raw, typed, low=int(p.low) if p.low is not None else None,
                    high=int(p.high) if p.high is not None else None)
    if p.kind == "float":
        return _float(name, raw, typed, low=p.low, high=p.high, low_open=p.low_open,
                      high_open=p.high_open)
    if p.kind == "bool":
        return _bool(name, raw, typed)
    if p.kind == "choice":
        value = raw.strip() if isinstance(raw, str) and not typed else raw
        if value not in p.choices:
            raise ParameterError(
                name, f"{name} must be one of {', '.join(p.choices)}, got {_show(raw)}"
            )
        return value
    if p.kind == "name":
        return _name(name, raw)
    return _names(name, raw)


def _name(param_name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(
            param_name, f"{param_name} must be a non-empty string, got {_show(value)}"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise ParameterError(
            param_name, f"{param_name} must be at most {MAX_NAME_LENGTH} characters"
        )
    return value.strip()


def _names(param_name: str, value: Any) -> list[str]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ParameterError(
                    param_name, f"{param_name} is not a valid JSON list: {_show(value)}"
                ) from None
        else:
            value = [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(value, list) or not value:
        raise ParameterError(
            param_name,
            f"{param_name} must be a non-empty list of column names, got {_show(value)}",
        )
    if len(value) > MAX_FEATURES:
        raise ParameterError(param_name, f"{param_name} must name at most {MAX_FEATURES} columns")
    names = [_name(param_name, v) for v in value]
    if len(set(names)) != len(names):
        raise ParameterError(param_name, f"{param_name} must be unique, got {_show(names)}")
    return names


def _bool(param_name: str, value: Any, typed: bool) -> bool:
    if isinstance(value, bool):
        return value
    if not typed and isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ParameterError(param_name, f"{param_name} must be true or false, got {_show(value)}")


def _int(param_name: str, value: Any, typed: bool, *, low: int | None,
         high: int | None) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif not typed and isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = int(value.strip())
    if number is None:
        raise ParameterError(param_name, f"{param_name} must be an integer, got {_show(value)}")
    if (low is not None and number < low) or (high is not None and number > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ParameterError(param_name, f"{param_name} must be {bound}, got {number}")
    return number


def _float(param_name: str, value: Any, typed: bool, *, low: float | None = None,
           high: float | None = None, low_open: bool = False,
           high_open: bool = False) -> float:
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif not typed and isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value.strip())
    if number is None or not math.isfinite(number):
        raise ParameterError(
            param_name, f"{param_name} must be a finite number, got {_show(value)}"
        )
    below = low is not None and (number < low or (low_open and number == low))
    above = high is not None and (number > high or (high_open and number == high))
    if below or above:
        if high is None:
            bound = f"{'>' if low_open else '>='} {low:g}"
        elif low is None:
            bound = f"{'<' if high_open else '<='} {high:g}"
        else:
            bound = f"between {low:g} and {high:g}"
        raise ParameterError(param_name, f"{param_name} must be {bound}, got {number:g}")
    return number


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
