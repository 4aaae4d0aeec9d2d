"""The ``sgdserve`` command line: sample | train | predict | models | serve | schedule.

Every error the user can cause ends the same way: one line on stderr, exit status 2, no
traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
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
    from .store import ModelStore
    from .training import train

    data, target = _data_and_target(args)
    store = ModelStore.from_settings(settings)
    if args.if_empty and store.active_version() is not None:
        print(f"model {settings.model_name!r} already has an active version "
              f"{store.active_version()}; not training (--if-empty)", file=sys.stderr)
        return 0
    progress = _Progress() if sys.stderr.isatty() and not args.json else None
    try:
        result = train(
            store,
            data,
            target=target,
            features=_split_features(args.features),
            params=_training_params(args),
            force=args.force,
            tolerance=settings.promote_tolerance if args.tolerance is None else args.tolerance,
            holdout_fraction=args.holdout_fraction,
            seed=args.seed,
            progress=progress,
            source=data.name,
            owner="sgdserve train",
            wait_lock=args.wait,
        )
    finally:
        if progress:
            progress.close()
    if args.json:
        print(json.dumps(_jsonable(result.to_dict())))
    else:
        print(_summary(result, settings))
    return 0


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    from .data import iter_prediction_chunks
    from .store import ModelStore

    store = ModelStore.from_settings(settings)
    if args.version:
        model, _ = store.load(args.version)
        version = args.version
    else:
        version, model, _ = store.active()
    data = Path(args.data)
    out_path = Path(args.out) if args.out else None
    if out_path is not None and not out_path.parent.is_dir():
        raise CLIError(f"directory {str(out_path.parent)!r} does not exist")
    # Written to a temporary file and renamed, so a failure never leaves a partial output.
    tmp = None
    if out_path is not None:
        fd, tmp = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent)
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes it 0600; the output is an ordinary file
        out = os.fdopen(fd, "w", newline="")
    else:
        out = sys.stdout
    rows = 0
    try:
        header_written = False
        for header, lines, X in iter_prediction_chunks(data, model.feature_names):
            if not header_written:
                if "prediction" in next(csv.reader([header])):
                    raise CLIError(f"{data.name} already has a 'prediction' column; rename it "
                                   "or drop it before scoring")
                out.write(f"{header.rstrip()},prediction\n")
                header_written = True
            predictions = model.predict(X)
            out.writelines(f"{line.rstrip()},{p!r}\n" for line, p in
                           zip(lines, predictions.tolist(), strict=True))
            rows += len(lines)
        if not header_written:
            raise CLIError(f"{data.name}: no data rows to score")
        if tmp is not None:
            out.close()
            os.replace(tmp, out_path)
            tmp = None
    finally:
        if tmp is not None:
            out.close()
            os.unlink(tmp)
    print(f"scored {rows} row{'' if rows == 1 else 's'} with version {version}" +
          (f" -> {out_path}" if out_path else ""), file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    from .store import ModelStore

    store = ModelStore.from_settings(settings)
    if args.action == "list":
        active = store.active_version()
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
        manifest = store.get(version)
        print(json.dumps({**manifest, "active": version == store.active_version()}, indent=2))
        return 0
    # activate
    if not args.version:
        raise CLIError("models activate needs a version id (see sgdserve models list)")
    with store.lock(wait=args.wait, owner="sgdserve models activate"):
        previous = store.activate(args.version)
    print(f"activated {args.version} (was {previous})")
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from .server import serve

    return serve(settings)


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> int:
    from .schedule import parse_schedule, run_schedule
    from .store import ModelStore
    from .training import train

    try:
        schedule = parse_schedule(args.every, args.cron)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    data, target = _data_and_target(args)
    if not data.is_file():
        raise CLIError(f"data file {str(data)!r} does not exist")
    store = ModelStore.from_settings(settings)
    params = _training_params(args)
    from .training import make_regressor

    make_regressor(params, args.seed)  # refuse bad parameters at start, not at the first tick
    tolerance = settings.promote_tolerance if args.tolerance is None else args.tolerance

    def run_once() -> dict[str, Any]:
        result = train(
            store, data, target=target, features=_split_features(args.features), params=params,
            force=args.force, tolerance=tolerance, holdout_fraction=args.holdout_fraction,
            seed=args.seed, source=data.name, owner="sgdserve schedule",
        )
        return result.to_dict()

    return run_schedule(schedule, run_once, max_runs=args.max_runs)


# ---------------------------------------------------------------------------------------------
# Helpers


def _data_and_target(args: argparse.Namespace) -> tuple[Path, str]:
    if args.sample:
        if args.data:
            raise CLIError("give --data FILE or --sample, not both")
        return sample_data_path(), args.target or "price"
    if not args.data:
        raise CLIError("--data FILE is required (or --sample for the bundled house prices)")
    if not args.target:
        raise CLIError("--target COL is required: the column to predict")
    return Path(args.data), args.target


def _seconds(text: str) -> float:
    """A --wait value: seconds >= 0 (argparse turns the ValueError into a one-line error)."""
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(text)
    return value


_seconds.__name__ = "number of seconds (>= 0)"  # argparse: "invalid number of seconds ..."


# SGDRegressor parameter -> the command-line option that sets it, for error messages.
_PARAM_FLAGS = {
    "max_iter": "--epochs", "eta0": "--learning-rate", "batch_size": "--batch-size",
    "alpha": "--alpha", "l1_ratio": "--l1-ratio", "epsilon": "--epsilon", "tol": "--tol",
    "learning_rate": "--schedule", "loss": "--loss", "penalty": "--penalty",
    "holdout_fraction": "--holdout-fraction", "tolerance": "--tolerance",
}


def _split_features(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CLIError("--features is empty; give comma-separated column names")
    return names


def _training_params(args: argparse.Namespace) -> dict[str, Any]:
    mapping = {
        "epochs": "max_iter", "learning_rate": "eta0", "batch_size": "batch_size",
        "loss": "loss", "penalty": "penalty", "alpha": "alpha", "schedule": "learning_rate",
        "l1_ratio": "l1_ratio", "epsilon": "epsilon", "tol": "tol",
    }
    params = {key: getattr(args, opt) for opt, key in mapping.items()
              if getattr(args, opt) is not None}
    if args.early_stopping:
        params["early_stopping"] = True
    if args.average:
        params["average"] = True
    return params


def _summary(result: Any, settings: Settings) -> str:
    h, t = result.metrics["holdout"], result.metrics["train"]
    width = max(len(f) for f in result.features)
    lines = [
        f"version   {result.version}",
        f"promoted  {'yes' if result.promoted else 'no'}: {result.reason}",
        f"holdout   RMSE {_num(h['rmse'])}   MAE {_num(h['mae'])}   R^2 {_num(h['r2'], 4)}"
        f"   ({h['rows']} rows)",
        f"train     RMSE {_num(t['rmse'])}   MAE {_num(t['mae'])}   R^2 {_num(t['r2'], 4)}"
        f"   ({t['rows']} rows)",
        f"epochs    {result.epochs} in {result.seconds:.2f} s",
        f"model     {result.target} = sum(slope * feature) + bias   (original units)",
    ]
    for name, slope in result.coefficients.items():
        lines.append(f"  slope   {name:<{width}}  {_num(slope, 4)}")
    lines.append(f"  bias    {'':<{width}}  {_num(result.intercept, 2)}")
    lines.extend(f"warning   {w}" for w in result.warnings)
    return "\n".join(lines)


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
        p.add_argument("--model-dir", help="model store directory "
                       "(default: $SGDSERVE_MODEL_DIR or ./models)")
        p.add_argument("--name", help="model name (default: $SGDSERVE_MODEL_NAME or house-price)")

    def training_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", help="CSV file with a header row")
        p.add_argument("--sample", action="store_true",
                       help="train on the bundled sample house prices (target: price)")
        p.add_argument("--target", help="column to predict")
        p.add_argument("--features", help="comma-separated feature columns "
                       "(default: every column except the target)")
        p.add_argument("--epochs", type=int, help="maximum passes over the data (default 100)")
        p.add_argument("--learning-rate", type=float,
                       help="initial step size eta0 on standardised data (default 0.05)")
        p.add_argument("--schedule", choices=["adaptive", "constant", "invscaling"],
                       help="learning-rate schedule (default adaptive)")
        p.add_argument("--batch-size", type=int, help="rows per update (default: auto)")
        p.add_argument("--loss", choices=["squared_error", "huber", "epsilon_insensitive",
                                          "squared_epsilon_insensitive"],
                       help="loss function (default squared_error)")
        p.add_argument("--epsilon", type=float,
                       help="huber/epsilon-insensitive width, in target standard deviations")
        p.add_argument("--penalty", choices=["l2", "l1", "elasticnet", "none"],
                       help="regularisation (default l2)")
        p.add_argument("--alpha", type=float, help="regularisation strength (default 1e-6)")
        p.add_argument("--l1-ratio", type=float, help="L1 share of the elastic net")
        p.add_argument("--tol", type=float,
                       help="minimum loss improvement per epoch before stopping")
        p.add_argument("--early-stopping", action="store_true",
                       help="stop on a validation split instead of the training loss")
        p.add_argument("--average", action="store_true", help="averaged SGD")
        p.add_argument("--holdout-fraction", type=float, default=0.2,
                       help="share of rows held out for evaluation and the gate (default 0.2)")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument("--tolerance", type=float, help="promote when holdout RMSE is at most "
                       "this much worse than the active model's "
                       "(default $SGDSERVE_PROMOTE_TOLERANCE or 0.01 = 1%%)")
        p.add_argument("--force", action="store_true",
                       help="promote even if worse or if the features differ")
        store_options(p)

    p = sub.add_parser("sample", help="write synthetic house-price data as CSV",
                       description="Write the synthetic house-price data "
                       "(sqft, bedrooms, bathrooms, age_years -> price) as CSV.")
    p.add_argument("--rows", type=int, required=True, help="number of data rows")
    p.add_argument("--out", required=True, help="output CSV file ('-' for stdout)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("train", help="train a model version and promote it if not worse",
                       description="Train on a CSV file, evaluate on a seeded holdout, keep the "
                       "version, and promote it when its holdout RMSE is not worse than the "
                       "active model's by more than the tolerance.")
    training_options(p)
    p.add_argument("--json", action="store_true",
                   help="print the result as one JSON object (the last line of stdout)")
    p.add_argument("--if-empty", action="store_true",
                   help="do nothing when the model already has an active version")
    p.add_argument("--wait", type=_seconds, default=False, metavar="SECONDS",
                   help="wait up to SECONDS for another training to finish (default: fail)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="score a CSV file with a model version",
                       description="Write the input rows with a prediction column added.")
    p.add_argument("--data", required=True, help="CSV file with the model's feature columns")
    p.add_argument("--out", help="output CSV file (default: stdout)")
    p.add_argument("--version", help="version id (default: the active version)")
    store_options(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("models", help="list, show or activate model versions",
                       description="list: every version (* = active); show [ID]: a manifest "
                       "(default: the active one); activate ID: make ID active (rollback).")
    p.add_argument("action", choices=["list", "show", "activate"])
    p.add_argument("version", nargs="?", help="version id (show, activate)")
    p.add_argument("--json", action="store_true", help="list as JSON")
    p.add_argument("--wait", type=_seconds, default=False, metavar="SECONDS",
                   help="activate: wait up to SECONDS for a running training (default: fail)")
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
    p.set_defaults(func=cmd_schedule)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for opt, key in (("model_dir", "model_dir"), ("name", "model_name"), ("host", "host"),
                     ("port", "port"), ("workers", "workers")):
        value = getattr(args, opt, None)
        if value is not None:
            overrides[key] = Path(value) if key == "model_dir" else value
    try:
        settings = Settings.from_env(**overrides)
        return args.func(args, settings)
    except BrokenPipeError:  # `sgdserve predict ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CLIError, SGDServeError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        for param, flag in _PARAM_FLAGS.items():  # name the option the user typed
            if message.startswith(f"{param} must"):
                message = f"{flag} {message[len(param) + 1:]}"
        print(f"sgdserve {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"sgdserve {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
