"""End-to-end tests of the ``sgdserve`` console script, run as a real subprocess.

Each subprocess costs a few tenths of a second, so the read-only commands share one store
trained once per module, and the error exits run a few at a time.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from service import data
from service.cli import build_parser
from service.store import LocalStore

from helpers import child_env

pytestmark = pytest.mark.slow  # every test here runs sgdserve or gunicorn in a process

REPO = Path(__file__).resolve().parent.parent
SGDSERVE = shutil.which("sgdserve", path=str(Path(sys.executable).parent)) or shutil.which(
    "sgdserve"
)
HOUSES = list(data.HOUSE_FEATURES)


def sgdserve(*args: object, cwd: Path | None = None, env: dict[str, str] | None = None,
             ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the installed console script; with ``ok`` it must succeed."""
    assert SGDSERVE, "the sgdserve console script is not installed (pip install -e .)"
    proc = subprocess.run(
        [SGDSERVE, *map(str, args)], capture_output=True, text=True, cwd=cwd,
        env=env or child_env(), timeout=120,
    )
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def last_json(proc: subprocess.CompletedProcess[str]) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def read_rows(text: str) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]


@dataclass
class Trained:
    root: Path
    houses: Path
    models: Path
    first: dict
    second: dict


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    """sample -> train -> train again (forced: a different model); shared, never modified."""
    root = tmp_path_factory.mktemp("cli")
    houses = root / "houses.csv"
    models = root / "models"
    proc = sgdserve("sample", "--rows", 2000, "--out", houses, "--seed", 1)
    assert proc.stderr.strip() == f"wrote 2000 rows to {houses}"
    first = last_json(sgdserve("train", "--data", houses, "--target", "price",
                               "--model-dir", models, "--json"))
    second = last_json(sgdserve("train", "--data", houses, "--target", "price",
                                "--model-dir", models, "--json", "--seed", 3,
                                "--learning-rate", 0.02, "--force"))
    return Trained(root, houses, models, first, second)


# -- sample and train ----------------------------------------------------------------------


def test_sample_writes_the_house_data(trained: Trained) -> None:
    header, rows = read_rows(trained.houses.read_text())
    assert header == HOUSES + ["price"]
    assert len(rows) == 2000
    X, y, _ = data.make_houses(2000, seed=1)
    assert np.array_equal(np.array(rows, dtype=float), np.column_stack([X, y]))
    # '-' writes the same bytes to stdout.
    assert sgdserve("sample", "--rows", 2000, "--out", "-", "--seed", 1).stdout == \
        trained.houses.read_text()


def test_train_json_is_the_last_line(trained: Trained) -> None:
    for result in (trained.first, trained.second):
        assert {"version", "promoted", "reason", "metrics"} <= set(result)
        assert set(result["metrics"]["holdout"]) >= {"rmse", "mae", "r2"}
        assert set(result["metrics"]["train"]) >= {"rmse", "mae", "r2"}
        assert result["promoted"] is True
        assert (trained.models / "house-price" / "versions" / result["version"]).is_dir()
    assert trained.first["reason"].startswith("no active model")
    assert trained.second["active_version"] == trained.first["version"]
    assert trained.second["reason"].startswith(("forced", "not worse"))
    assert trained.first["metrics"]["holdout"]["r2"] > 0.9
    assert trained.first["version"] < trained.second["version"]


def test_train_prints_a_readable_summary(trained: Trained, tmp_path: Path) -> None:
    proc = sgdserve("train", "--data", trained.houses, "--target", "price",
                    "--model-dir", tmp_path / "m", "--epochs", 5, "--tol", 0)
    out = proc.stdout
    store = LocalStore(tmp_path / "m")
    version, model, manifest = store.active()
    assert f"version   {version}" in out
    assert "promoted  yes: no active model" in out
    holdout = manifest["metrics"]["holdout"]
    assert re.search(rf"holdout\s+RMSE {holdout['rmse']:,.2f}\s+MAE {holdout['mae']:,.2f}"
                     rf"\s+R\^2 {holdout['r2']:.4f}", out)
    assert "epochs    5 in" in out
    for name, slope in zip(model.feature_names, model.coef, strict=True):
        assert re.search(rf"slope\s+{name}\s+{slope:,.4f}\n", out), name
    assert re.search(rf"bias\s+{model.intercept:,.2f}", out)
    # --epochs 5 --tol 0 stops before converging: the warning is part of the summary.
    assert "warning   SGD reached max_iter=5" in out
    assert proc.stderr == ""  # no progress bar when stderr is not a terminal


def test_sample_trains_on_the_bundled_data_only_if_empty(tmp_path: Path) -> None:
    # No --model-dir: ./models in the working directory.
    first = last_json(sgdserve("train", "--sample", "--if-empty", "--json", cwd=tmp_path))
    assert first["promoted"] and first["features"] == HOUSES and first["target"] == "price"
    store = LocalStore(tmp_path / "models")
    assert store.active_version() == first["version"]
    assert store.get(first["version"])["data"]["file"] == "houses.csv"

    again = sgdserve("train", "--sample", "--if-empty", "--json", cwd=tmp_path)
    assert again.stdout == ""
    assert "--if-empty" in again.stderr and first["version"] in again.stderr
    assert [m["id"] for m in store.list()] == [first["version"]]

    # --name picks another model in the same directory; the environment sets the directory.
    env = child_env(SGDSERVE_MODEL_DIR=str(tmp_path / "elsewhere"))
    other = last_json(sgdserve("train", "--sample", "--name", "other", "--json", env=env))
    assert LocalStore(tmp_path / "elsewhere", "other").active_version() == other["version"]


# -- predict -------------------------------------------------------------------------------


def test_predict_adds_a_prediction_column(trained: Trained, tmp_path: Path) -> None:
    X, y, _ = data.make_houses(50, seed=9)
    # Columns in another order, a target column that is not even numeric (it is ignored),
    # and extra columns (kept), one quoted with a comma inside.
    lines = ["id,age_years,price,sqft,bedrooms,bathrooms,note"]
    for i, (sqft, bed, bath, age) in enumerate(X):
        lines.append(f'h{i},{age:g},n/a,{sqft:g},{bed:g},{bath:g},"a, b"')
    source = tmp_path / "to_score.csv"
    source.write_text("\n".join(lines) + "\n")

    proc = sgdserve("predict", "--data", source, "--model-dir", trained.models)
    version = trained.second["version"]
    assert proc.stderr.strip() == f"scored 50 rows with version {version}"
    header, rows = read_rows(proc.stdout)
    assert header == lines[0].split(",") + ["prediction"]
    assert proc.stdout.splitlines()[1:] == [f"{line},{row[-1]}" for line, row in
                                             zip(lines[1:], rows, strict=True)]
    model, _ = LocalStore(trained.models).load(version)
    expected = model.predict(X)
    assert [float(row[-1]) for row in rows] == expected.tolist()  # exactly: repr round trips

    out = tmp_path / "scored.csv"
    proc = sgdserve("predict", "--data", source, "--model-dir", trained.models, "--out", out)
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"scored 50 rows with version {version} -> {out}"
    assert out.read_text() == sgdserve("predict", "--data", source, "--model-dir",
                                       trained.models).stdout
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scored.csv", "to_score.csv"]


def test_predict_with_a_named_version(trained: Trained) -> None:
    first = trained.first["version"]
    proc = sgdserve("predict", "--data", trained.houses, "--model-dir", trained.models,
                    "--version", first)
    assert proc.stderr.strip() == f"scored 2000 rows with version {first}"
    model, _ = LocalStore(trained.models).load(first)
    X = pd.read_csv(trained.houses)[list(model.feature_names)].to_numpy(np.float64)
    _, rows = read_rows(proc.stdout)
    assert np.array_equal([float(r[-1]) for r in rows], model.predict(X))


def test_predict_delivers_all_of_a_large_output_before_it_exits(trained: Trained,
                                                               tmp_path: Path) -> None:
    # The console script ends predict with os._exit (no interpreter teardown): what it wrote
    # to a pipe, far more than the pipe holds, must all arrive, and the exit code be 0.
    source = tmp_path / "many.csv"
    source.write_text("sqft,bedrooms,bathrooms,age_years\n" + "1800,3,2,10\n" * 60_000)
    proc = sgdserve("predict", "--data", source, "--model-dir", trained.models)
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert len(lines) == 60_001 and lines[-1].startswith("1800,3,2,10,")
    assert len(proc.stdout) > 1_000_000


def test_predict_out_is_not_left_half_written(trained: Trained, tmp_path: Path) -> None:
    # A bad row after 9 MB (long rows: few of them), so the reader has handed out rows, and
    # they have been written, before it meets the bad one.
    note = "n" * 200
    source = tmp_path / "big.csv"
    source.write_text("sqft,bedrooms,bathrooms,age_years,note\n" + f"1800,3,2,10,{note}\n"
                      * 45_000 + f"1800,x,2,10,{note}\n" + f"1800,3,2,10,{note}\n" * 10)
    assert source.stat().st_size > 9_000_000
    message = "column 'bedrooms', line 45002: 'x' is not a number"

    to_stdout = sgdserve("predict", "--data", source, "--model-dir", trained.models, ok=False)
    assert to_stdout.returncode == 2
    assert to_stdout.stdout.count("\n") > 1000  # scoring had started
    assert message in to_stdout.stderr

    new = tmp_path / "new.csv"
    proc = sgdserve("predict", "--data", source, "--model-dir", trained.models, "--out", new,
                    ok=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr
    assert not new.exists()

    old = tmp_path / "old.csv"
    old.write_text("earlier results\n")
    proc = sgdserve("predict", "--data", source, "--model-dir", trained.models, "--out", old,
                    ok=False)
    assert proc.returncode == 2
    assert old.read_text() == "earlier results\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "old.csv"]  # no temp


# -- models --------------------------------------------------------------------------------


def test_models_list_and_show(trained: Trained) -> None:
    first, second = trained.first["version"], trained.second["version"]
    listing = sgdserve("models", "list", "--model-dir", trained.models).stdout.splitlines()
    assert listing[0].split() == ["VERSION", "STATUS", "CREATED", "HOLDOUT", "RMSE", "R^2",
                                  "DATA"]
    assert listing[1].startswith(f"  {first} ") and "promoted" in listing[1]
    assert listing[2].startswith(f"* {second} ")
    assert f"{trained.second['metrics']['holdout']['rmse']:,.2f}" in listing[2]
    assert listing[2].endswith("houses.csv")

    # The directory from the environment; JSON for scripts.
    env = child_env(SGDSERVE_MODEL_DIR=str(trained.models))
    entries = json.loads(sgdserve("models", "list", "--json", env=env).stdout)
    assert [(e["id"], e["active"]) for e in entries] == [(first, False), (second, True)]

    shown = json.loads(sgdserve("models", "show", "--model-dir", trained.models).stdout)
    assert shown["id"] == second and shown["active"] is True
    assert shown["parent"] == first
    assert shown["metrics"]["holdout"] == pytest.approx(trained.second["metrics"]["holdout"])
    shown = json.loads(sgdserve("models", "show", first, "--model-dir", trained.models).stdout)
    assert shown["id"] == first and shown["active"] is False and shown["parent"] is None
    assert shown["hyperparameters"]["random_state"] == 0


def test_models_list_of_an_empty_store(tmp_path: Path) -> None:
    proc = sgdserve("models", "list", "--model-dir", tmp_path / "none")
    assert proc.stdout.startswith("no versions of 'house-price'")
    assert not (tmp_path / "none").exists()  # reading does not create the store


def test_rollback_by_activating_the_first_version(trained: Trained, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(trained.models, models)
    first, second = trained.first["version"], trained.second["version"]

    proc = sgdserve("models", "activate", first, "--model-dir", models)
    assert proc.stdout.strip() == f"activated {first} (was {second})"
    shown = json.loads(sgdserve("models", "show", "--model-dir", models).stdout)
    assert shown["id"] == first and shown["active"] is True
    proc = sgdserve("predict", "--data", trained.houses, "--model-dir", models)
    assert proc.stderr.strip() == f"scored 2000 rows with version {first}"
    assert LocalStore(models).history()[-1]["previous"] == second


# -- help ----------------------------------------------------------------------------------

# The options the issue promises, per command.
DOCUMENTED = {
    "sample": ["--rows", "--out", "--seed"],
    "train": ["--data", "--target", "--features", "--model-dir", "--name", "--epochs",
              "--learning-rate", "--eta0", "--batch-size", "--loss", "--penalty", "--alpha",
              "--seed", "--force", "--json", "--sample", "--if-empty", "--with-feedback",
              "--window", "--log-dir"],
    "predict": ["--data", "--out", "--model-dir", "--name", "--version"],
    "models": ["list", "show", "activate", "--model-dir", "--name"],
    "serve": ["--host", "--port", "--workers", "--model-dir"],
    "schedule": ["--every", "--cron", "--data", "--target", "--max-runs", "--with-feedback",
                 "--min-new-rows", "--on-drift", "--on-rmse", "--log-dir"],
    "monitor": ["--json", "--window", "--level", "--log-dir", "--model-dir", "--name"],
}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_help_explains_every_option() -> None:
    commands = subcommands()
    assert set(commands) == set(DOCUMENTED)
    with ThreadPoolExecutor(4) as pool:
        helps = dict(zip(["", *commands], pool.map(
            lambda c: sgdserve(*([c] if c else []), "--help"), ["", *commands]), strict=True))
    for name in commands:
        assert name in helps[""].stdout
    for name, parser in commands.items():
        text = helps[name].stdout
        for option in DOCUMENTED[name]:
            assert re.search(rf"(^|[\s{{,\[]){re.escape(option)}\b", text), (name, option)
        # Every option the parser has is listed with an explanation.
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in text, (name, flag)
            if action.option_strings:
                assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)


# -- errors: one line on stderr, exit status 2, no traceback -------------------------------

BAD_VALUE = "a,b,y\n1,2,3\n2,3,5\n3,x,7\n4,5,9\n"
FIRST = "20200101T000000.000000Z-abcdef"  # well-formed, absent

ERRORS = [
    ("train --data {dir}/missing.csv --target y --model-dir {dir}/m",
     r"file '.*missing\.csv' does not exist"),
    ("train --data {bad} --target y --model-dir {dir}/m",
     r"column 'b', line 4: 'x' is not a number"),
    ("train --data {short} --target y --model-dir {dir}/m",
     r"line 3 has 2 fields, the header has 3"),
    ("train --data {houses} --target nope --model-dir {dir}/m",
     r"target column 'nope' is missing; the header has: sqft, "),
    ("train --data {houses} --target price --features sqft,nope --model-dir {dir}/m",
     r"feature column 'nope' is missing"),
    ("train --data {houses} --model-dir {dir}/m", r"--target COL is required"),
    ("train --target price --model-dir {dir}/m", r"--data FILE is required"),
    ("train --sample --data {houses} --model-dir {dir}/m", r"--data FILE or --sample, not both"),
    ("train --data {houses} --target price --learning-rate -0.5 --model-dir {dir}/m",
     r"--learning-rate must be > 0(\.0)?, got -0\.5"),
    ("train --data {houses} --target price --learning-rate abc --model-dir {dir}/m",
     r"--learning-rate must be one of constant, invscaling, adaptive, got 'abc'"),
    ("train --data {houses} --target price --eta0 0 --model-dir {dir}/m",
     r"--eta0 must be > 0, got 0"),
    ("train --data {houses} --target price --epochs 0 --model-dir {dir}/m",
     r"--epochs must be between 1 and 100000, got 0"),
    ("train --data {houses} --target price --holdout-fraction 1.5 --model-dir {dir}/m",
     r"--holdout-fraction must be between 0 and 1, got 1\.5"),
    ("train --data {houses} --target price --tolerance -1 --model-dir {dir}/m",
     r"--tolerance must be >= 0"),
    ("train --data {houses} --target price --loss nope --model-dir {dir}/m",
     r"--loss must be one of squared_error, huber, .*, got 'nope'"),
    ("predict --data {houses} --model-dir {dir}/m", r"no active model in .*; train one"),
    ("predict --data {nofeature} --model-dir {models}", r"feature column 'sqft' is missing"),
    ("predict --data {houses} --model-dir {models} --out {dir}/no/such/out.csv",
     r"directory '.*/no/such' does not exist"),
    (f"predict --data {{houses}} --model-dir {{models}} --version {FIRST}",
     rf"version '{FIRST}' not found"),
    ("models show nope --model-dir {models}", r"version 'nope' not found in "),
    (f"models activate {FIRST} --model-dir {{models}}", rf"version '{FIRST}' not found"),
    ("models activate --model-dir {models}", r"models activate needs a version id"),
    ("models frobnicate", r"argument action: invalid choice: 'frobnicate'"),
    ("sample --rows 0 --out {dir}/s.csv", r"--rows must be >= 1, got 0"),
    ("train --data {houses} --target price --wait -1 --model-dir {dir}/m",
     r"argument --wait: invalid number of seconds \(>= 0\) value: '-1'"),
    ("predict --data {scored} --model-dir {models}",
     r"scored\.csv already has a 'prediction' column; rename it"),
    ("schedule --every 5x --sample --model-dir {dir}/m", r"interval '5x' is not valid"),
    ("", r"the following arguments are required: COMMAND"),
]


@pytest.fixture(scope="module")
def error_runs(trained: Trained, tmp_path_factory) -> dict[str, tuple[Path, object]]:
    """Every case of ERRORS run once, a few at a time; each train case has its own store."""
    root = tmp_path_factory.mktemp("errors")
    (root / "bad.csv").write_text(BAD_VALUE)
    (root / "short.csv").write_text("a,b,y\n1,2,3\n2,3\n")
    (root / "nofeature.csv").write_text("bedrooms,bathrooms,age_years\n3,2,10\n")
    (root / "scored.csv").write_text(
        "sqft,bedrooms,bathrooms,age_years,prediction\n1500,3,2,20,300000\n")

    def run(i_case):
        i, (template, _) = i_case
        folder = root / f"case{i}"
        folder.mkdir()
        args = template.format(dir=folder, bad=root / "bad.csv", short=root / "short.csv",
                               nofeature=root / "nofeature.csv", houses=trained.houses,
                               scored=root / "scored.csv",
                               models=trained.models).split()
        return template, (folder, sgdserve(*args, ok=False))

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(run, enumerate(ERRORS)))


def assert_one_line_error(proc: subprocess.CompletedProcess[str], pattern: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stdout == ""
    assert proc.stderr.endswith("\n") and proc.stderr.count("\n") == 1, proc.stderr
    assert re.match(r"sgdserve( [a-z]+)?: error: ", proc.stderr), proc.stderr
    assert re.search(pattern, proc.stderr), proc.stderr


@pytest.mark.parametrize("template, pattern", ERRORS, ids=[t or "no-args" for t, _ in ERRORS])
def test_error_exits(error_runs, trained: Trained, template: str, pattern: str) -> None:
    folder, proc = error_runs[template]
    assert_one_line_error(proc, pattern)
    # A failed command leaves no version behind, in its own store or in the shared one.
    assert not (folder / "m" / "house-price" / "versions").exists() or not any(
        (folder / "m" / "house-price" / "versions").iterdir())
    assert [m["id"] for m in LocalStore(trained.models).list()] == [
        trained.first["version"], trained.second["version"]]


LOCK_HOLDER = textwrap.dedent("""
    import sys
    from service.store import LocalStore

    with LocalStore(sys.argv[1]).lock(owner="sgdserve train"):
        print("locked", flush=True)
        sys.stdin.read()  # hold the lock until the parent closes stdin
""")


def test_lock_held_by_another_process(trained: Trained, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(trained.models, models)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(models)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=child_env())
    try:
        assert holder.stdout.readline() == "locked\n"
        held = rf"model store is locked by pid {holder.pid} \(sgdserve train\)"
        with ThreadPoolExecutor(3) as pool:
            train, waited, activate = pool.map(lambda args: sgdserve(*args, ok=False), [
                ("train", "--data", trained.houses, "--target", "price", "--model-dir", models),
                ("train", "--data", trained.houses, "--target", "price", "--model-dir", models,
                 "--wait", "0.3"),
                ("models", "activate", trained.first["version"], "--model-dir", models),
            ])
        assert_one_line_error(train, held)
        assert_one_line_error(waited, held + r".*\(waited 0\.3 s\)$")
        assert_one_line_error(activate, held)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
        holder.stdout.close()
    store = LocalStore(models)
    assert store.active_version() == trained.second["version"]
    assert len(store.list()) == 2


# -- a damaged CURRENT, the expected-current precondition, old spellings -----------------------


def test_a_damaged_current_is_reported_and_repaired(tmp_path: Path, trained: Trained) -> None:
    models = tmp_path / "models"
    shutil.copytree(trained.models, models)
    store = LocalStore(models)
    (models / "house-price" / "CURRENT").write_text("oops\n")

    listed = sgdserve("models", "list", "--model-dir", models)
    assert "CURRENT is damaged: it holds 'oops'" in listed.stderr
    assert trained.first["version"] in listed.stdout and "*" not in listed.stdout
    refused = sgdserve("train", "--data", trained.houses, "--target", "price",
                       "--model-dir", models, ok=False)
    assert_one_line_error(refused, r"CURRENT is damaged: it holds 'oops'.*sgdserve models "
                          r"activate ID.*nothing was trained")
    sgdserve("models", "activate", trained.first["version"], "--model-dir", models)
    assert store.active_version() == trained.first["version"]

    (models / "house-price" / "CURRENT").write_text("oops\n")
    forced = last_json(sgdserve("train", "--data", trained.houses, "--target", "price",
                                "--model-dir", models, "--force", "--json"))
    assert forced["promoted"] and store.active_version() == forced["version"]


def test_activate_if_current(tmp_path: Path, trained: Trained) -> None:
    models = tmp_path / "models"
    shutil.copytree(trained.models, models)
    first, second = trained.first["version"], trained.second["version"]
    assert LocalStore(models).active_version() == second
    stale = sgdserve("models", "activate", first, "--if-current", first, "--model-dir", models,
                     ok=False)
    assert_one_line_error(stale, rf"the active version is {second}, not {first} as expected")
    assert LocalStore(models).active_version() == second
    sgdserve("models", "activate", first, "--if-current", second, "--model-dir", models)
    assert LocalStore(models).active_version() == first


def test_old_spellings_of_the_step_size_and_the_schedule(tmp_path: Path, trained: Trained) -> None:
    models = tmp_path / "models"
    proc = sgdserve("train", "--data", trained.houses, "--target", "price", "--model-dir", models,
                    "--learning-rate", "0.02", "--schedule", "constant", "--json")
    assert "--learning-rate 0.02 is the old spelling of --eta0 0.02" in proc.stderr
    assert "--schedule is the old spelling of --learning-rate" in proc.stderr
    params = LocalStore(models).get(last_json(proc)["version"])["hyperparameters"]
    assert (params["eta0"], params["learning_rate"]) == (0.02, "constant")
    both = sgdserve("train", "--data", trained.houses, "--target", "price", "--model-dir", models,
                    "--learning-rate", "constant", "--schedule", "adaptive", ok=False)
    assert_one_line_error(both, "give --learning-rate or its old spelling --schedule, not both")
