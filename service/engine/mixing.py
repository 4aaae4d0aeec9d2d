"""Iterative parameter mixing: the same SGD on every partition at once, the weights averaged.

For a convex loss (McDonald, Hall & Mann 2010; Zinkevich, Weimer, Smola & Li 2010) each
partition runs one local epoch of :class:`~service.engine.sgd.SGDRegressor`'s updates from the
shared weights, the partitions' weights are averaged, weighted by their rows, and the average
is where the next round starts. A round is one pass over every partition, in parallel, and a
few floats per partition each way; nothing is exchanged within an epoch.

This module is the numerics alone, whatever runs the partitions (a Dask cluster in
``service.cluster``, or a loop in tests):

- :func:`partition_stats` summarises a partition's training rows for the shared scaler
  (mergeable statistics, level counts, every k-th row for the step-size bound);
- :func:`local_epoch` is what a partition runs each round;
- :class:`Mixing` is the driver: the shared scaler and step bound, the mixing, and the
  stopping rule, schedule and early stopping of :meth:`SGDRegressor.fit`.

Every partition has its own seeded random stream (partition 0 the regressor's own seed, as in
a local fit) carried by the driver between rounds, and results are mixed in partition order,
so a fit is the same for a fixed partitioning whoever runs it and however often a task is
retried. With one partition it is :meth:`SGDRegressor.fit` on that partition's rows, bit for
bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .sgd import _CURVATURE_ROWS, ScalerStats, SGDRegressor, _Average, _StopRule

__all__ = ["Carry", "Mixing", "PartitionStats", "RoundResult", "Shared", "local_epoch",
           "partition_stats"]


@dataclass
class PartitionStats:
    """A partition's training rows for the shared scaler: statistics that merge, level counts,
    and the rows at the shared stride (for the step-size bound)."""

    x: ScalerStats
    y: ScalerStats
    level_counts: np.ndarray
    sample_X: np.ndarray
    sample_codes: np.ndarray | None

    @property
    def rows(self) -> int:
        return self.x.count


def sample_stride(n_train: int) -> int:
    """Every how many training rows the step-size bound looks at (as a local fit does)."""
    return max(1, n_train // _CURVATURE_ROWS)


def partition_stats(X: np.ndarray, y: np.ndarray, codes: np.ndarray | None,
                    n_levels: Sequence[int], *, first_row: int, stride: int) -> PartitionStats:
    """The summary of one partition's training rows; ``first_row`` is its first training
    row's number among all partitions' training rows, ``stride`` :func:`sample_stride`."""
    x_stats, y_stats = ScalerStats(X.shape[1]), ScalerStats(1)
    with np.errstate(invalid="ignore", over="ignore"):
        x_stats.update(X)
        y_stats.update(y[:, None])
    if not (np.isfinite(x_stats.m2).all() and np.isfinite(y_stats.m2).all()):
        raise ValueError("X or y has a value that is not finite, or too large to standardise")
    offsets = np.concatenate([[0], np.cumsum(n_levels)[:-1]]).astype(np.int64) \
        if len(n_levels) else np.zeros(0, np.int64)
    counts = np.zeros(int(sum(n_levels)))
    if codes is not None and len(n_levels):
        counts += np.bincount((np.asarray(codes, np.int64) + offsets).ravel(),
                              minlength=len(counts))
    rows = slice((-first_row) % stride, None, stride)
    # Fortran order, as the design is: the bound's products then run as in a local fit.
    sample_X = np.asfortranarray(X[rows])
    sample_codes = None if codes is None else np.ascontiguousarray(codes[rows])
    return PartitionStats(x_stats, y_stats, counts, sample_X, sample_codes)


@dataclass
class Shared:
    """What every partition starts a round from: the regressor's settings, the shared scaler
    and step bound, the weights, and the schedule's position."""

    params: dict[str, Any]
    n_features: int
    n_levels: tuple[int, ...]
    x_stats: ScalerStats
    y_stats: ScalerStats
    level_counts: np.ndarray
    step_scale: float
    curvature: float
    batch: int  # rows per update (a partition with fewer rows uses all of them)
    w: np.ndarray
    b: float
    W: np.ndarray
    avg: tuple[np.ndarray, float, np.ndarray, int] | None
    t: int  # updates made so far
    rows_seen: int
    eta: float  # the schedule's current step (adaptive divides it at plateaus)
    epoch: bool = True  # run an epoch (False: only evaluate, after the last one)
    evaluate: bool = False  # the validation loss of the weights the round starts from


@dataclass
class Carry:
    """A partition's own state, kept by the driver between rounds: its random stream and,
    with early stopping, which of its batches are held out for validation."""

    rng: dict[str, Any]
    validation: np.ndarray | None = None


@dataclass
class RoundResult:
    """What a partition sends back after a round."""

    rows: int  # rows the epoch updated on
    loss: float  # their summed loss, met during the epoch
    updates: int
    w: np.ndarray
    b: float
    W: np.ndarray
    avg: tuple[np.ndarray, float, np.ndarray, int] | None
    carry: Carry
    validation_loss: float | None = None
    validation_rows: int = 0


def local_epoch(X: np.ndarray, y: np.ndarray, codes: np.ndarray | None, shared: Shared,
                carry: Carry) -> RoundResult:
    """One round on one partition: the validation loss of the shared weights (with early
    stopping), then one epoch of SGD from them over the partition's rows."""
    reg = _regressor(shared, carry)
    n = X.shape[0]
    B = min(shared.batch, n)
    C = reg._global_codes(codes)
    ys = (y - reg.y_mean_) / reg.y_scale_
    validation = carry.validation
    if reg.early_stopping and validation is None:
        validation = reg._validation_blocks(n, B)  # first, from the fresh stream, as fit does
    result = RoundResult(0, 0.0, 0, reg._w, reg._b, reg._W, None, carry)
    if shared.evaluate and validation is not None:
        result.validation_loss = reg._holdout_loss(X, ys, C, validation, B)
        result.validation_rows = sum(min(s + B, n) - s for s in np.flatnonzero(validation) * B)
    if shared.epoch:
        total, rows = reg._pass(X, ys, C, B, validation, reg._row_bound(X, B))
        result.loss, result.rows, result.updates = total, rows, reg._t - shared.t
        result.w, result.b, result.W = reg._w, reg._b, reg._W
        if reg._avg is not None:
            a = reg._avg
            result.avg = (a.w, a.b, a.W, a.count)
    result.carry = Carry(reg._rng.bit_generator.state, validation)
    return result


def _regressor(shared: Shared, carry: Carry) -> SGDRegressor:
    """A regressor in the shared state, with the partition's random stream."""
    reg = SGDRegressor(**shared.params)
    reg._reset(shared.n_features, shared.n_levels)
    _adopt_stats(reg, shared.x_stats, shared.y_stats, shared.level_counts)
    reg._scaler_frozen = True
    reg._step_scale, reg.step_scale_, reg.curvature_ = (shared.step_scale, shared.step_scale,
                                                        shared.curvature)
    reg._w, reg._b, reg._W = shared.w.copy(), float(shared.b), shared.W.copy()
    if shared.avg is not None:
        w, b, W, count = shared.avg
        reg._avg = _Average(w.copy(), b, W.copy(), count)
    reg._t, reg._rows_seen = shared.t, shared.rows_seen
    reg._schedule.eta = shared.eta
    reg._rng = np.random.Generator(np.random.PCG64())
    reg._rng.bit_generator.state = carry.rng
    return reg


def _adopt_stats(reg: SGDRegressor, x: ScalerStats, y: ScalerStats, counts: np.ndarray) -> None:
    """Set merged statistics as a fit's statistics pass would (``SGDRegressor._merge_stats``)."""
    reg._x_stats, reg._y_stats = x, y
    reg._level_counts = np.array(counts, dtype=np.float64)
    reg.x_mean_ = x.mean.copy()
    reg.x_scale_ = x.scale
    reg.y_mean_ = float(y.mean[0])
    reg.y_scale_ = float(y.scale[0])
    reg._publish()


def partition_seed(random_state: int | None, partition: int) -> dict[str, Any]:
    """Partition ``partition``'s random stream: partition 0 has the regressor's own (so one
    partition is a local fit), the others streams spawned from the same seed."""
    if partition == 0:
        return np.random.default_rng(random_state).bit_generator.state
    seed = np.random.SeedSequence(random_state, spawn_key=(partition,))
    return np.random.default_rng(seed).bit_generator.state


# A round: the shared state and each partition's carry in, each partition's result out, in
# partition order.
Runner = Callable[[Shared, list[Carry]], list[RoundResult]]


@dataclass
class Mixing:
    """The driver of a mixed fit: :meth:`start` from the partitions' statistics, then
    :meth:`fit` with a runner that runs :func:`local_epoch` on every partition."""

    reg: SGDRegressor
    rounds: int = 0  # rounds run, including the evaluation-only last one of early stopping
    carries: list[Carry] = field(default_factory=list)
    batch: int = 0

    def start(self, stats: Sequence[PartitionStats], n_features: int,
              n_levels: Sequence[int]) -> None:
        """The shared scaler, level counts and step bound, from every partition's summary."""
        reg = self.reg
        reg._validate_params()
        if reg.random_state is None:  # drawn once now, so a retried task repeats itself
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        else:
            seed = reg.random_state
        reg._reset(n_features, tuple(int(k) for k in n_levels))
        x, y = ScalerStats(n_features), ScalerStats(1)
        counts = np.zeros(int(sum(n_levels)))
        for part in stats:
            x.merge(part.x)
            y.merge(part.y)
            counts += part.level_counts
        if x.count < 2:
            raise ValueError(f"need at least 2 training rows, got {x.count}")
        _adopt_stats(reg, x, y, counts)
        sample_X = stats[0].sample_X if len(stats) == 1 else np.asfortranarray(
            np.concatenate([s.sample_X for s in stats]))
        codes = [s.sample_codes for s in stats]
        sample_codes = None if codes[0] is None else codes[0] if len(stats) == 1 else \
            np.concatenate(codes)  # type: ignore[arg-type]
        reg._set_step_bound(sample_X, reg._global_codes(sample_codes))
        self.batch = reg._batch_size_for(x.count)
        self.carries = [Carry(partition_seed(seed, p)) for p in range(len(stats))]

    def shared(self, *, epoch: bool = True, evaluate: bool = False) -> Shared:
        reg = self.reg
        avg = None if reg._avg is None else (reg._avg.w, reg._avg.b, reg._avg.W, reg._avg.count)
        return Shared(
            params=reg.get_params(), n_features=reg.n_features_in_, n_levels=reg.n_levels_,
            x_stats=reg._x_stats, y_stats=reg._y_stats, level_counts=reg._level_counts,
            step_scale=reg._step_scale, curvature=reg.curvature_, batch=self.batch,
            w=reg._w, b=reg._b, W=reg._W, avg=avg, t=reg._t, rows_seen=reg._rows_seen,
            eta=reg._schedule.eta, epoch=epoch, evaluate=evaluate)

    def fit(self, run: Runner, progress: Callable[[int, int], None] | None = None
            ) -> SGDRegressor:
        """Rounds until the stopping rule stops (or ``max_iter``), as ``SGDRegressor.fit``.

        With early stopping, the validation loss of a round's starting weights comes back with
        the round itself (no extra trip per epoch); when it stops training, that round's epoch
        is dropped, and when it changes the step (a plateau), the epoch is run again with the
        new step. A last evaluation-only round scores the weights after ``max_iter`` epochs.
        """
        reg = self.reg
        rule = _StopRule(reg)
        early = reg.early_stopping
        for epoch in range(reg.max_iter):
            if progress is not None:
                progress(epoch, reg.max_iter)
            results = self._round(run, evaluate=early and epoch > 0)
            if early and epoch > 0:
                eta = reg._schedule.eta
                if self._stop_on_validation(rule, results):
                    break  # on the weights this round started from; its epoch is dropped
                if reg._schedule.eta != eta:  # a plateau: the epoch again, at the new step
                    results = self._round(run)
            self._mix(results)
            epoch_loss = reg._end_epoch(_total(r.loss for r in results),
                                        sum(r.rows for r in results))
            if not early and rule.stop(epoch_loss):
                break
        else:
            if early:
                self._stop_on_validation(rule, self._round(run, epoch=False, evaluate=True))
        reg._finish(rule)
        return reg

    def _round(self, run: Runner, *, epoch: bool = True, evaluate: bool = False
               ) -> list[RoundResult]:
        self.rounds += 1
        results = run(self.shared(epoch=epoch, evaluate=evaluate), list(self.carries))
        if len(results) != len(self.carries):
            raise RuntimeError(f"a round returned {len(results)} results for "
                               f"{len(self.carries)} partitions")
        return results

    def _stop_on_validation(self, rule: _StopRule, results: list[RoundResult]) -> bool:
        rows = sum(r.validation_rows for r in results)
        monitored = _total((r.validation_rows / rows) * r.validation_loss  # type: ignore[operator]
                           for r in results)
        self.reg.validation_history_.append(monitored)
        return rule.stop(monitored)

    def _mix(self, results: list[RoundResult]) -> None:
        """The round's weights averaged, weighted by the rows each partition updated on."""
        reg = self.reg
        rows = sum(r.rows for r in results)
        shares = [r.rows / rows for r in results]  # one partition: 1.0, so w is its w exactly
        reg._w = _weighted([r.w for r in results], shares)
        reg._b = float(_total(s * r.b for s, r in zip(shares, results, strict=True)))
        reg._W = _weighted([r.W for r in results], shares)
        averages = [r.avg if r.avg is not None else (r.w, r.b, r.W, 0) for r in results]
        if any(r.avg is not None for r in results):
            reg._avg = _Average(
                _weighted([a[0] for a in averages], shares),
                float(_total(s * a[1] for s, a in zip(shares, averages, strict=True))),
                _weighted([a[2] for a in averages], shares),
                max(a[3] for a in averages))
        reg._t += max(r.updates for r in results)
        reg._rows_seen += rows
        self.carries = [r.carry for r in results]


def _weighted(arrays: list[np.ndarray], shares: list[float]) -> np.ndarray:
    out = shares[0] * arrays[0]
    for share, a in zip(shares[1:], arrays[1:], strict=True):
        out = out + share * a
    return out


def _total(values: Any) -> Any:
    """A sum in order, starting from the first value (one value: itself, bit for bit)."""
    it = iter(values)
    out = next(it)
    for v in it:
        out = out + v
    return out

