"""The ``sgdserve`` command line: sample | train | predict | models | serve | schedule | monitor.

Every error the user can cause ends the same way: one line on stderr, exit status 2, no
traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn

from . import __version__
from .config import Settings
from .errors import SGDServeError
from .params import TRAINING_PARAMS, ParameterError, TrainingSpec, parse_training_params

EXIT_USAGE = 2


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line too."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def sample_data_path() -> Path:
    """The bundled sample CSV (house prices; target ``price``)."""
    return Path(str(resources.files("service") / "sample_data" / "houses.csv"))


# ---------------------------------------------------------------------------------------------
# Commands


def cmd_sample(args: argparse.Namespace, settings: Settings) -> int:
    from .data import write_houses_csv

    if args.rows < 1:
        raise CLIError(f"--rows must be >= 1, got {args.rows}")
    if args.out == "-":
        with tempfile.TemporaryDirectory() as tmp:
            path = write_houses_csv(Path(tmp) / "houses.csv", args.rows, seed=args.seed)
            sys.stdout.write(path.read_text())
        return 0
    out = Path(args.out)
    if not out.parent.is_dir():
        raise CLIError(f"directory {str(out.parent)!r} does not exist")
    write_houses_csv(out, args.rows, seed=args.seed)
    print(f"wrote {args.rows} rows to {out}", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from .store import open_store
    from .training import train

    spec = _spec(args)
    data, target = _data_and_target(args, spec)
    store = open_store(settings)
    if args.if_empty and store.active_version() is not None:
        print(f"model {settings.model_name!r} already has an active version "
              f"{store.active_version()}; not training (--if-empty)", file=sys.stderr)
        return 0
    engine = _engine(spec)
    progress = _Progress() if sys.stderr.isatty() and not args.json else None
    common = dict(target=target, features=spec.features, params=spec.sgd,
                  encoding=spec.encoding, data_format=spec.format, force=spec.force,
                  tolerance=_tolerance(spec, settings), holdout_fraction=spec.holdout_fraction,
                  seed=spec.seed, progress=progress, owner="sgdserve train", wait_lock=args.wait)
    try:
        if args.with_feedback:
            result = _train_with_feedback(store, _feedback_base(data, engine), settings, args,
                                          common)
        else:
            result = train(store, data, engine=engine, **common)
    finally:
        if progress:
            progress.close()
    if args.json:
        print(json.dumps(_jsonable(result.to_dict())))
    else:
        print(_summary(result, settings))
    return 0


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    from .data import write_predictions
    from .store import open_store

    store = open_store(settings)
    if args.version:
        model, _ = store.load(args.version)
        version = args.version
    else:
        version, model, _ = store.active()
    out_path = Path(args.out) if args.out else None
    if out_path is not None and not out_path.parent.is_dir():
        raise CLIError(f"directory {str(out_path.parent)!r} does not exist")
    rows = write_predictions(model, args.data, out_path, data_format=args.format)
    print(f"scored {rows} row{'' if rows == 1 else 's'} with version {version}" +
          (f" -> {out_path}" if out_path else ""), file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from .errors import IntegrityError
    from .store import open_store

    store = open_store(settings)
    if args.action == "list":
        try:
            active = store.active_version()
        except IntegrityError as exc:  # still list the versions: the user must pick one
            active = None
            print(f"sgdserve models: warning: {exc}", file=sys.stderr)
        versions = store.list()
        if args.json:
            print(json.dumps([{**m, "active": m.get("id") == active} for m in versions]))
            return 0
        if not versions:
            print(f"no versions of {settings.model_name!r} in {settings.model_dir} yet; "
                  "train one with `sgdserve train --data FILE --target COL`")
            return 0
        print(f"  {'VERSION':<31} {'STATUS':<9} {'CREATED':<24} {'HOLDOUT RMSE':>13} "
              f"{'R^2':>8}  DATA")
        for m in versions:
            holdout = (m.get("metrics") or {}).get("holdout") or {}
            mark = "*" if m.get("id") == active else " "
            print(f"{mark} {m.get('id', '?'):<31} {m.get('status', '?'):<9} "
                  f"{m.get('created_at', ''):<24} {_num(holdout.get('rmse')):>13} "
                  f"{_num(holdout.get('r2'), 4):>8}  {(m.get('data') or {}).get('file', '')}")
        return 0
    if args.action == "show":
        version = args.version or store.active_version()
        if version is None:
            raise CLIError("no active model; name a version: sgdserve models show ID")
        model, manifest = store.load(version)
        # The features as the model sees them: kinds, levels with their weights, slopes.
        print(json.dumps({**manifest, "active": version == store.active_version(),
                          "schema": model.describe_features(), "intercept": model.intercept,
                          **model.describe_transform()},
                         indent=2))
        return 0
    if args.action == "sign":
        if args.version:
            raise CLIError("models sign takes no version: it signs every version in the store")
        if store.signer is None:
            raise CLIError("set SGDSERVE_SIGNING_KEY to the key to sign the store with")
        with store.lock(wait=args.wait, owner="sgdserve models sign"):
            outcomes = store.sign_versions()
        refused = [v for v, outcome in outcomes if outcome.startswith("refused")]
        for version, outcome in outcomes:
            print(f"{version}  {outcome}")
        print(f"{len(outcomes) - len(refused)} of {len(outcomes)} versions signed by key "
              f"{store.signer.key_id}", file=sys.stderr)
        if refused:
            raise CLIError(f"{len(refused)} version(s) refused (not signed): "
                           f"{', '.join(refused)}")
        return 0
    # activate
    if not args.version:
        raise CLIError("models activate needs a version id (see sgdserve models list)")
    from .store import ANY

    expected = ANY if args.if_current is None else args.if_current
    with store.lock(wait=args.wait, owner="sgdserve models activate"):
        previous = store.activate(args.version, expected_current=expected)
    print(f"activated {args.version} (was {previous})")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from .server import serve

    return serve(settings)


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    from .schedule import parse_schedule, run_schedule
    from .store import open_store
    from .training import make_regressor, train

    try:
        schedule = parse_schedule(args.every, args.cron)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    spec = _spec(args)
    data, target = _data_and_target(args, spec)
    from .data import resolve

    resolve(data, spec.format)  # a missing file or an empty folder is refused at start
    store = open_store(settings)
    make_regressor(spec.sgd, spec.seed)  # refuse bad parameters at start, not at the first tick
    tolerance = _tolerance(spec, settings)
    from .monitor import Triggers, should_retrain

    try:
        triggers = Triggers(args.min_new_rows, args.on_drift, args.on_rmse)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if (triggers.any or args.with_feedback) and not settings.logs_path.is_dir():
        # The server may not have written anything yet: a run finds no feedback until it has.
        print(f"sgdserve schedule: note: log directory {str(settings.logs_path)!r} does not "
              "exist yet; runs find no feedback until the server writes it (--log-dir or "
              "SGDSERVE_LOG_DIR)", file=sys.stderr)
    engine = _engine(spec)
    base = _feedback_base(data, engine) if args.with_feedback else None
    common = dict(target=target, features=spec.features, params=spec.sgd,
                  encoding=spec.encoding, data_format=spec.format, force=spec.force,
                  tolerance=tolerance, holdout_fraction=spec.holdout_fraction, seed=spec.seed,
                  owner="sgdserve schedule")

    def run_once() -> dict[str, Any]:
        trigger = None
        if triggers.any:
            go, trigger, _ = should_retrain(store, settings.logs_path, triggers,
                                            window=_window(args, settings),
                                            level=settings.monitor_level)
            if not go:
                return {"status": "skipped", "reason": trigger}
        if args.with_feedback:
            result = _train_with_feedback(store, base, settings, args, common).to_dict()
        else:
            result = train(store, data, engine=engine, **common).to_dict()
        if trigger is not None:
            result["trigger"] = trigger
        return result

    return run_schedule(schedule, run_once, max_runs=args.max_runs)


def cmd_monitor(args: argparse.Namespace, settings: Settings) -> int:
    from .monitor import compute_report
    from .store import open_store

    _check_log_dir(settings)
    store = open_store(settings)
    if args.level is not None and not 0 < args.level < 1:
        raise CLIError(f"--level must be between 0 and 1, got {args.level}")
    level = settings.monitor_level if args.level is None else args.level
    report = compute_report(store, settings.logs_path, window=_window(args, settings),
                            level=level, write=not args.no_write)
    if args.json:
        print(json.dumps(report))
    else:
        print(_monitor_summary(report))
    return 0


def _check_log_dir(settings: Settings) -> None:
    if not settings.logs_path.is_dir():
        raise CLIError(f"log directory {str(settings.logs_path)!r} does not exist: give the "
                       "directory the server writes its logs to (--log-dir or "
                       "SGDSERVE_LOG_DIR)")


def _window(args: argparse.Namespace, settings: Settings) -> float | None:
    """--window as seconds (None for 'all'), else the default."""
    from .util import parse_duration

    text = getattr(args, "window", None)
    if text is None:
        return settings.monitor_window if args.command != "train" else None
    if text == "all":
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CLIError(f"--window: {exc} (or 'all')") from None


def _feedback_base(data: str | Path | list[str], engine: Any) -> Path:
    """The one local file --with-feedback trains on beside the joined feedback rows."""
    if engine != "local":
        raise CLIError("--with-feedback runs on the local engine; leave out --engine dask")
    if isinstance(data, list) or str(data).startswith("s3://") or not Path(data).is_file():
        raise CLIError("--with-feedback needs one local --data file (the base data the "
                       "feedback rows are added to)")
    return Path(data)


def _train_with_feedback(store: Any, data: Path, settings: Settings,
                         args: argparse.Namespace, common: dict[str, Any]) -> Any:
    from .monitor import train_with_feedback
    from .monitor.retrain import check_feedback_target

    if args.command == "train":  # one shot: a wrong --log-dir must not pass unnoticed
        _check_log_dir(settings)
    try:
        model_target = store.active()[1].target
    except SGDServeError:
        model_target = None
    check_feedback_target(common["target"], model_target)
    return train_with_feedback(store, data, settings.logs_path,
                               window=_window(args, settings), **common)


def _monitor_summary(report: dict[str, Any]) -> str:
    window = report.get("window") or {}
    version = report.get("model_version") or "-"
    active = " (active)" if report.get("active") else ""
    live, holdout = report.get("live") or {}, report.get("holdout") or {}
    ratio = ""
    if live.get("rmse") is not None and holdout.get("rmse"):
        ratio = f"   ({live['rmse'] / holdout['rmse']:.2f}x the holdout's)"
    cov = report.get("interval_coverage") or {}
    feedback = report.get("feedback") or {}
    lines = [
        f"model       {version}{active}",
        f"window      {window.get('from') or 'the start'} to {window.get('to')}",
        f"predictions {report.get('predictions', 0):,}   with feedback "
        f"{report.get('rows_with_feedback', 0):,}   labelled rows "
        f"{feedback.get('labelled_rows', 0):,}   unmatched feedback "
        f"{feedback.get('unmatched', 0):,}",
        f"live        RMSE {_num(live.get('rmse'))}   MAE {_num(live.get('mae'))}{ratio}",
        f"holdout     RMSE {_num(holdout.get('rmse'))}   MAE {_num(holdout.get('mae'))}",
        f"interval    {_num(cov.get('level'), 2)} level: covered "
        + (f"{cov['observed']:.1%}" if cov.get("observed") is not None else "-")
        + f" of {cov.get('rows', 0):,} rows",
    ]
    drift = report.get("drift") or {}
    if drift:
        width = max(len(n) for n in drift)
        lines.append(f"drift       {'FEATURE':<{width}}  {'PSI':>7}  {'UNSEEN':>7}  "
                     f"{'MISSING':>7}  STATUS")
        for name, d in drift.items():
            def share(v: Any) -> str:
                return f"{v:.1%}" if isinstance(v, (int, float)) else "-"
            lines.append(f"            {name:<{width}}  {_num(d.get('psi'), 3):>7}  "
                         f"{share(d.get('unseen_share')):>7}  {share(d.get('missing_share')):>7}"
                         f"  {d.get('status', '')}")
    for alert in report.get("alerts") or []:
        lines.append(f"alert       {alert}")
    logs = report.get("logs") or {}
    torn = sum((logs.get(k) or {}).get("torn_lines", 0) for k in ("predictions", "feedback"))
    files = sum((logs.get(k) or {}).get("files", 0) for k in ("predictions", "feedback"))
    lines.append(f"logs        {logs.get('directory')}: {files} files, {torn} torn lines skipped")
    others = [v for v in report.get("versions") or [] if v.get("model_version") != version]
    for other in others:
        lines.append(f"also        {other['model_version']}: {other['predictions']:,} "
                     f"predictions, {other['rows_with_feedback']:,} with feedback, live RMSE "
                     f"{_num((other.get('live') or {}).get('rmse'))}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Helpers


def _data_and_target(args: argparse.Namespace, spec: TrainingSpec
                     ) -> tuple[str | Path | list[str], str]:
    """What --data names (one path, or a list for several) and the target column."""
    if args.sample:
        if args.data:
            raise CLIError("give --data FILE or --sample, not both")
        return sample_data_path(), spec.target or "price"
    if not args.data:
        raise CLIError("--data FILE is required (or --sample for the bundled house prices)")
    if not spec.target:
        raise CLIError("--target COL is required: the column to predict")
    return (args.data[0] if len(args.data) == 1 else list(args.data)), spec.target


def _spec(args: argparse.Namespace) -> TrainingSpec:
    """The training options, validated by the one description of them (service/params.py)."""
    given = {p.name: getattr(args, p.name) for p in TRAINING_PARAMS
             if getattr(args, p.name, None) is not None}
    spec = parse_training_params(given, typed=False, context="cli")
    if args.old_schedule is not None:
        if "learning_rate" in spec.sgd:
            raise CLIError("give --learning-rate or its old spelling --schedule, not both")
        old = parse_training_params({"learning_rate": args.old_schedule}, typed=False,
                                    context="cli")
        spec.sgd.update(old.sgd)
        spec.notes.append("--schedule is the old spelling of --learning-rate")
    for note in spec.notes:
        print(f"sgdserve {args.command}: note: {note}", file=sys.stderr)
    return spec


def _engine(spec: TrainingSpec) -> Any:
    """``"local"``, or the Dask cluster --engine dask names (--scheduler) or starts (--workers)."""
    if spec.engine != "dask":
        for name in ("scheduler", "workers"):
            if getattr(spec, name) is not None:
                raise CLIError(f"--{name} needs --engine dask")
        return "local"
    from .cluster import DaskEngine

    return DaskEngine(scheduler=spec.scheduler, workers=spec.workers)


def _tolerance(spec: TrainingSpec, settings: Settings) -> float:
    return settings.promote_tolerance if spec.tolerance is None else spec.tolerance


def _seconds(text: str) -> float:
    """A --wait value: seconds >= 0 (argparse turns the ValueError into a one-line error)."""
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(text)
    return value


_seconds.__name__ = "number of seconds (>= 0)"  # argparse: "invalid number of seconds ..."


def _summary(result: Any, settings: Settings) -> str:
    h, t = result.metrics["holdout"], result.metrics["train"]
    lines = [
        f"version   {result.version}",
        f"promoted  {'yes' if result.promoted else 'no'}: {result.reason}",
        f"holdout   RMSE {_num(h['rmse'])}   MAE {_num(h['mae'])}   R^2 {_num(h['r2'], 4)}"
        f"   ({h['rows']} rows)",
        f"train     RMSE {_num(t['rmse'])}   MAE {_num(t['mae'])}   R^2 {_num(t['r2'], 4)}"
        f"   ({t['rows']} rows)",
        f"epochs    {result.epochs} in {result.seconds:.2f} s",
    ]
    if result.engine.get("name") == "dask":
        e = result.engine
        lines.append(f"engine    dask: {e['partitions']} partitions, {e['rounds']} rounds on "
                     f"{e['workers']} workers ({e['scheduler']})")
    recent = result.metrics.get("recent_holdout")
    if recent is not None:
        lines.append(f"feedback  holdout RMSE {_num(recent['rmse'])} on {recent['rows']} recent "
                     "(feedback) rows")
    lines.extend(_inferred(result.inferred))
    lines.extend(f"note      {n}" for n in result.notices)
    lines.append(f"model     {result.target} = sum(slope * feature) + sum(level weight) + bias"
                 "   (original units)")
    # Largest effect first: a slope times its feature's spread, so units do not decide.
    effects = result.effects or {}
    slopes = sorted(result.coefficients.items(), key=lambda kv: -abs(effects.get(kv[0], kv[1])))
    shown = slopes[:_TOP] if len(slopes) > _TOP + 2 else slopes
    ranked_levels = sorted(result.levels.items(),
                           key=lambda kv: -max((abs(w) for w in kv[1].values()), default=0))
    shown_levels = ranked_levels[:_TOP_LEVELS]
    width = max([len(n) for n, _ in shown] + [len(f) for f, _ in shown_levels] + [4])
    for name, slope in shown:
        lines.append(f"  slope   {name:<{width}}  {_num(slope, 4)}")
    if len(shown) < len(slopes):
        lines.append(f"  ...     {len(slopes) - len(shown)} more slopes (sgdserve models show)")
    for feature, levels in shown_levels:
        top = ", ".join(f"{lv or '(empty)'} {_signed(w)}" for lv, w in levels.items())
        lines.append(f"  levels  {feature:<{width}}  {top}  (against the average level)")
    if len(shown_levels) < len(ranked_levels):
        lines.append(f"  ...     {len(ranked_levels) - len(shown_levels)} more categorical "
                     "features (sgdserve models show)")
    lines.append(f"  bias    {'':<{width}}  {_num(result.intercept, 2)}")
    lines.extend(f"warning   {w}" for w in result.warnings)
    return "\n".join(lines)


_TOP = 10  # slopes shown by `sgdserve train`, largest effect first
_TOP_LEVELS = 5  # categorical features shown, with their largest levels


def _inferred(inferred: dict[str, Any]) -> list[str]:
    """What the data layer inferred, in a few lines (the manifest has every decision)."""
    if not inferred:
        return []
    kinds = ", ".join(f"{len(inferred.get(k, []))} {k}" for k in ("numeric", "boolean",
                                                                   "categorical"))
    lines = [f"columns   {kinds}"]
    levels = inferred.get("levels") or {}
    if levels:
        kept = sum(v["kept"] for v in levels.values())
        pooled = {n: v["pooled"] for n, v in levels.items() if v["pooled"]}
        text = f"levels    {kept} kept"
        if pooled:
            text += (f"; {sum(pooled.values())} rare ones pooled as other, in "
                     f"{_listed(list(pooled))}")
        lines.append(text)
    imputed = inferred.get("imputed") or {}
    if imputed:
        lines.append("imputed   " + _listed([f"{n} ({c})" for n, c in imputed.items()])
                     + ": the training mean, with a missing indicator (text: an empty level)")
    for name, why in (inferred.get("dropped") or {}).items():
        if not why.startswith(("not among", "dropped on request")):
            lines.append(f"dropped   {name}: {why}")
    return lines


def _listed(items: list[str], most: int = 6) -> str:
    shown = ", ".join(items[:most])
    return shown + (f" and {len(items) - most} more" if len(items) > most else "")


def _signed(value: float) -> str:
    return ("+" if value >= 0 else "-") + _num(abs(value), 0)


def _num(value: Any, digits: int = 2) -> str:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:,.{digits}f}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


class _Progress:
    """A one-line progress indicator on stderr, shown once a run takes more than a moment."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.shown = False

    def __call__(self, phase: str, done: int, total: int) -> None:
        if time.monotonic() - self.started < 0.5:
            return
        label = {"read": "reading", "fit": "fitting", "scaler": "scaler pass",
                 "epoch": "epoch"}.get(phase, phase)
        if phase == "epoch":
            bar = "#" * min(30, done * 30 // max(total, 1))
            text = f"\r{label} {done}/{total} [{bar:<30}] {time.monotonic() - self.started:.1f}s"
        else:
            text = f"\r{label}... {time.monotonic() - self.started:.1f}s" + " " * 30
        sys.stderr.write(text)
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# Parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sgdserve",
        description="Train linear-regression models by SGD and serve them over HTTP.",
    )
    parser.add_argument("--version", action="version", version=f"sgdserve {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    def store_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model-dir", help="model store: a directory or s3://bucket/prefix "
                       "(default: $SGDSERVE_MODEL_DIR or ./models)")
        p.add_argument("--name", help="model name (default: $SGDSERVE_MODEL_NAME or house-price)")

    def log_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--log-dir", help="the prediction and feedback logs (default: "
                       "$SGDSERVE_LOG_DIR or logs/ beside the model directory)")

    def feedback_options(p: argparse.ArgumentParser, default_window: str) -> None:
        p.add_argument("--with-feedback", action="store_true",
                       help="train on the data plus the rows joined from the prediction and "
                       "feedback logs (deduplicated by id); the gate judges on the recent ones")
        p.add_argument("--window", help="only predictions made in this last span, e.g. 30d "
                       f"(default: {default_window}; 'all' for every one still logged)")
        log_options(p)

    def training_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", nargs="+", metavar="PATH",
                       help="a CSV (also .csv.gz), Parquet or JSON lines file, or a dataset of "
                       "them: a directory, a glob or several files, local or s3://bucket/prefix/")
        p.add_argument("--sample", action="store_true",
                       help="train on the bundled sample house prices (target: price)")
        for param in TRAINING_PARAMS:  # one description drives the options (service/params.py)
            _add_param_option(p, param)
        # The old spelling of --learning-rate (the schedule); --learning-rate took the step size.
        p.add_argument("--schedule", dest="old_schedule", metavar="{constant,invscaling,adaptive}",
                       help="the old spelling of --learning-rate (the schedule)")
        store_options(p)

    p = sub.add_parser("sample", help="write synthetic house-price data as CSV",
                       description="Write the synthetic house-price data "
                       "(sqft, bedrooms, bathrooms, age_years -> price) as CSV.")
    p.add_argument("--rows", type=int, required=True, help="number of data rows")
    p.add_argument("--out", required=True, help="output CSV file ('-' for stdout)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("train", help="train a model version and promote it if not worse",
                       description="Train on a data file (CSV, Parquet or JSON lines), evaluate "
                       "on a seeded holdout, keep the version, and promote it when its holdout "
                       "RMSE is not worse than the active model's by more than the tolerance.")
    training_options(p)
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON object (the last line of stdout)")
    p.add_argument("--if-empty", action="store_true",
                   help="do nothing when the model already has an active version")
    p.add_argument("--wait", type=_seconds, default=False, metavar="SECONDS",
                   help="wait up to SECONDS for another training to finish (default: fail)")
    feedback_options(p, default_window="all")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="score a CSV file with a model version",
                       description="Write the input rows with a prediction column added.")
    p.add_argument("--data", required=True,
                   help="CSV, Parquet or JSON lines file with the model's feature columns")
    p.add_argument("--format", choices=["csv", "parquet", "jsonl"],
                   help="format of --data (default: from its extension)")
    p.add_argument("--out", help="output file, CSV or Parquet by its extension (default: CSV "
                   "on stdout)")
    p.add_argument("--version", help="version id (default: the active version)")
    store_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="list, show, activate or sign model versions",
                       description="list: every version (* = active); show [ID]: a manifest "
                       "(default: the active one); activate ID: make ID active (rollback), "
                       "after verifying it (its signature too, with SGDSERVE_SIGNING_KEY); "
                       "sign: sign every version not yet signed by SGDSERVE_SIGNING_KEY, in "
                       "place, after checking its sha256 (a store made before signing).")
    p.add_argument("action", choices=["list", "show", "activate", "sign"])
    p.add_argument("version", nargs="?", help="version id (show, activate)")
    p.add_argument("--json", action="store_true", help="list as JSON")
    p.add_argument("--wait", type=_seconds, default=False, metavar="SECONDS",
                   help="activate, sign: wait up to SECONDS for a running training "
                   "(default: fail)")
    p.add_argument("--if-current", metavar="VERSION",
                   help="activate: only if VERSION is still the active one (else exit 2, naming "
                   "the version active now)")
    store_options(p)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("serve", help="serve the HTTP API with gunicorn",
                       description="Serve predictions, retraining and model management over "
                       "HTTP (gunicorn; settings from SGDSERVE_* variables).")
    p.add_argument("--host", help="address to bind (default: $SGDSERVE_HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default: $SGDSERVE_PORT or 8000)")
    p.add_argument("--workers", type=int,
                   help="gunicorn worker processes (default: $SGDSERVE_WORKERS or 2)")
    store_options(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("schedule", help="retrain on a schedule (long-running)",
                       description="Run the training pipeline on every tick of a schedule; "
                       "one JSON line per run on stdout; SIGTERM/SIGINT stop it cleanly.")
    training_options(p)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--every", help="interval: 30s, 15m, 6h, 1d, 1h30m (first run at once)")
    group.add_argument("--cron", help='5-field cron expression in UTC, e.g. "0 3 * * *"')
    p.add_argument("--max-runs", type=int, help="stop after this many runs (default: never)")
    feedback_options(p, default_window="$SGDSERVE_MONITOR_WINDOW, 7d")
    p.add_argument("--min-new-rows", type=int, metavar="N",
                   help="retrain only when N feedback rows came in since the active version "
                   "was trained (or another trigger holds)")
    p.add_argument("--on-drift", type=float, nargs="?", const=0.25, metavar="PSI",
                   help="retrain when a feature's PSI reaches PSI (default 0.25, the usual "
                   "act line) over at least 100 inputs")
    p.add_argument("--on-rmse", type=float, nargs="?", const=1.25, metavar="RATIO",
                   help="retrain when live RMSE reaches RATIO times the holdout's "
                   "(default 1.25)")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("monitor", help="live quality and drift from the logs (one shot)",
                       description="Join the prediction and feedback logs: per model version, "
                       "rows with feedback, live RMSE/MAE against the holdout's, interval "
                       "coverage against its level, and each feature's drift against training "
                       "(PSI: 0.1 warn, 0.25 act). The same JSON as GET /monitoring.")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--window", help="predictions of this last span (default: "
                   "$SGDSERVE_MONITOR_WINDOW, 7d; 'all' for every one still logged)")
    p.add_argument("--level", type=float, help="the interval level whose coverage is checked "
                   "(default: $SGDSERVE_MONITOR_LEVEL, 0.9)")
    p.add_argument("--no-write", action="store_true", help="do not keep the report as the "
                   "log directory's latest (which /metrics exports)")
    log_options(p)
    store_options(p)
    p.set_defaults(func=cmd_monitor)
    return parser


def _add_param_option(p: argparse.ArgumentParser, param: Any) -> None:
    """One training parameter as a command-line option; values are parsed by params.py."""
    default = param.default_value
    text = param.help.rstrip(".")
    if default is not None and param.kind != "bool" and "(default" not in text:
        text += f" (default {default})"
    if param.number_alias is not None:
        text += f"; a number here is read as --{param.number_alias.replace('_', '-')}"
    if param.kind == "bool":
        p.add_argument(param.flag, dest=param.name, action="store_true", default=None,
                       help=text)
        return
    metavar = None
    if param.choices:
        metavar = "{" + ",".join(param.choices) + "}"
    elif param.kind in ("int", "float"):
        metavar = "N" if param.kind == "int" else "X"
    p.add_argument(param.flag, dest=param.name, metavar=metavar, help=text.replace("%", "%%"))


# Commands that hold no resource once they return (files written and fsynced, output printed):
# the console script ends them with os._exit instead of the interpreter's teardown, which
# frees every object and joins polars' thread pool: 0.1 s after a bare `import polars`, 0.2-0.4 s
# after training on a 260 MB file (measured on 2 cores, docs/benchmarks-tabular.md). A Dask
# run is left to its own atexit cleanup, and so is a process under a profiler or tracer
# (cProfile and coverage write their results at exit).
_QUICK_EXIT = frozenset({"train", "predict"})


def run() -> None:
    """The ``sgdserve`` console script."""
    sys.exit(main(quick_exit=True))


def main(argv: Sequence[str] | None = None, *, quick_exit: bool = False) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code = _dispatch(args)
    if quick_exit and args.command in _QUICK_EXIT and getattr(args, "engine", None) != "dask" \
            and sys.getprofile() is None and sys.gettrace() is None:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing left to deliver
                pass
        os._exit(code)
    return code


def _dispatch(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    for opt, key in (("model_dir", "model_dir"), ("name", "model_name"), ("host", "host"),
                     ("port", "port"), ("workers", "workers"), ("log_dir", "log_dir")):
        if opt == "workers" and args.command != "serve":
            continue  # train's --workers is the Dask cluster's, not gunicorn's
        value = getattr(args, opt, None)
        if value is not None:
            overrides[key] = value  # Settings keeps an s3:// URL as it is, a path as a Path
    try:
        settings = Settings.from_env(**overrides)
        return args.func(args, settings)
    except BrokenPipeError:  # `sgdserve predict ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CLIError, SGDServeError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"sgdserve {args.command}: error: {_name_the_option(message, exc)}",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"sgdserve {args.command}: interrupted", file=sys.stderr)
        return 130


def _name_the_option(message: str, exc: BaseException) -> str:
    """``epochs must be ...`` as ``--epochs must be ...``: the option the user typed."""
    if isinstance(exc, ParameterError):
        name = exc.name
        flag = "--" + name.replace("_", "-")
        return f"{flag} {message[len(name) + 1:]}" if message.startswith(name + " ") else message
    for param in TRAINING_PARAMS:  # a check inside SGDRegressor names its own keyword
        keyword = param.sgd or param.name
        if message.startswith(f"{keyword} must"):
            return f"{param.flag} {message[len(keyword) + 1:]}"
    return message


if __name__ == "__main__":
    run()
