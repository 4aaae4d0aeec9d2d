"""Training on a Dask cluster: every file read, summarised and fitted on the worker holding it.

:class:`DaskEngine` says where: an existing ``distributed.Client``, a scheduler's address
(``sgdserve train --engine dask --scheduler tcp://HOST:8786``), or a local cluster of worker
processes that it starts and stops (``--workers N``: every port on 127.0.0.1).
:meth:`DaskEngine.fit` runs the fit step of the training pipeline there (``service.training``
keeps the gate, the store and the output, whichever engine fits):

1. each file of the dataset is a partition, read on a worker and kept in its memory;
2. the statistics pass: each partition's column statistics over its training rows, merged
   in file order into the schema (the schema of a local run on the same files);
3. each partition encoded by the schema and its training rows summarised for the scaler;
4. rounds of iterative parameter mixing (``service.engine.mixing``): the shared state is
   scattered to the workers once per round, each partition's task runs a local epoch from it
   and sends back its weights;
5. the evaluation pass: train and holdout metrics, the active model on the same held-out rows,
   the holdout sample for the model page.

A killed worker loses the partitions it held; Dask recomputes them from their files (their
tasks' lineage is kept) and reruns the round's lost tasks. Every task is deterministic in its
arguments, so the model is the same as if no worker had died.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from . import __version__
from .data import partition as parts
from .data.holdout import HoldoutSample
from .data.inference import ColumnStats, EncodingOptions, plan
from .data.source import Fingerprint, Sources, listing_digest
from .engine import LinearModel, RegressionSums, SGDRegressor
from .engine.mixing import (
    Carry,
    Mixing,
    RoundResult,
    Shared,
    local_epoch,
    partition_stats,
    sample_stride,
)
from .engine.schema import Schema
from .errors import ClusterError, DataError

__all__ = ["CONNECT_TIMEOUT", "DaskEngine", "DaskRun", "Evaluation", "environ_kept"]

CONNECT_TIMEOUT = 10  # seconds to reach a scheduler
WORKERS_TIMEOUT = 30  # seconds a scheduler may take to have a worker

Progress = Callable[[str, int, int], None]


@contextlib.contextmanager
def environ_kept() -> Iterator[None]:
    """Restore this process's environment after starting local workers.

    Dask's nannies write their workers' variables (MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS=1 and
    others) into the parent's ``os.environ``; left there they would reach every later child,
    a gunicorn or a retrain job among them."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@dataclass
class DaskEngine:
    """Where a Dask fit runs: ``client``, else the scheduler at ``scheduler``, else a local
    cluster of ``workers`` processes (default: one per core) started for the fit."""

    scheduler: str | None = None
    workers: int | None = None
    client: Any = None
    name: ClassVar[str] = "dask"

    def __post_init__(self) -> None:
        if self.scheduler is not None and self.workers is not None:
            raise ValueError("give --scheduler or --workers, not both: --workers starts a "
                             "local cluster, --scheduler joins one")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    @contextlib.contextmanager
    def connect(self) -> Iterator[Any]:
        """A client: the given one, one to the scheduler, or one to a local cluster started
        (and stopped) here."""
        try:
            import distributed
        except ImportError:
            raise ClusterError("--engine dask needs dask.distributed: pip install "
                               "'sgdserve[dask]'") from None
        if self.client is not None:
            yield self.client
            return
        if self.scheduler is not None:
            try:
                client = distributed.Client(self.scheduler, timeout=CONNECT_TIMEOUT)
            except ValueError as exc:  # the address itself: no scheme, host or port
                raise ClusterError(f"bad Dask scheduler address {self.scheduler!r} (write "
                                   f"tcp://HOST:PORT): {_first_line(exc)}") from None
            except (OSError, TimeoutError) as exc:
                raise ClusterError(f"cannot reach the Dask scheduler at {self.scheduler}: "
                                   f"{_first_line(exc)}") from None
            with client:
                _check_workers(client, self.scheduler)
                yield client
            return
        n = self.workers or os.cpu_count() or 1
        # Processes: each task is Python and numpy holding the GIL, so threads would not
        # overlap. Loopback only: a laptop's cluster serves nobody else. The scheduler's HTTP
        # server (the dashboard, with bokeh installed) gets a free port there; with None it
        # would still take 8787, and warn when another cluster has it.
        with environ_kept():
            cluster = distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
            with cluster, distributed.Client(cluster) as client:
                yield client

    @contextlib.contextmanager
    def fit(self, reg: SGDRegressor, sources: Sources, *, target: str,
            options: EncodingOptions, fraction: float, seed: int,
            data_format: str | None = None, target_transform: str = "none",
            progress: Progress | None = None) -> Iterator[DaskRun]:
        """Fit ``reg`` on the cluster; the run it yields evaluates models on the same
        partitions, which are released when the block ends."""
        with self.connect() as client:
            run = DaskRun(client, sources, target=target, options=options, fraction=fraction,
                          seed=seed, data_format=data_format, target_transform=target_transform)
            try:
                with _cluster_errors():
                    run.fit(reg, progress)
                yield run
            finally:
                run.release()


@dataclass
class Evaluation:
    """The evaluation pass, merged over the partitions in file order."""

    train: RegressionSums
    holdout: RegressionSums
    active: RegressionSums | None
    sample: HoldoutSample


@dataclass
class DaskRun:
    """One fit on a cluster: the partitions it holds, what it learned about the data, and how
    long each part took."""

    client: Any
    sources: Sources
    target: str
    options: EncodingOptions
    fraction: float
    seed: int
    data_format: str | None = None
    target_transform: str = "none"
    schema: Schema | None = None
    fingerprint: Fingerprint | None = None
    decisions: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    rounds: int = 0
    _encoded: list[Any] = field(default_factory=list)
    _futures: list[Any] = field(default_factory=list)

    @property
    def notices(self) -> list[str]:
        return list(self.sources.notices)

    @property
    def partitions(self) -> int:
        return len(self.sources)

    def fit(self, reg: SGDRegressor, progress: Progress | None = None) -> None:
        client, sources = self.client, self.sources
        started = time.perf_counter()
        columns = plan(sources, self.target, self.options)
        if progress:
            progress("statistics", 0, 1)
        raw = client.map(parts.read, sources.files, range(len(sources)), plan=columns,
                         named=len(sources) > 1, first=sources.first.file,
                         data_format=self.data_format, pure=False)
        self._futures.extend(raw)
        sizes = client.gather(client.map(_rows_and_digest, raw, pure=False))
        offsets = np.concatenate([[0], np.cumsum([n for n, _ in sizes])[:-1]]).tolist()
        for i, (n, _) in enumerate(sizes):
            sources.read_rows(i, n)
        partials = client.gather(client.map(
            parts.column_stats, raw, offsets, plan=columns, options=self.options,
            fraction=self.fraction, seed=self.seed, pure=False))
        schema, decisions, n_rows = self._schema(columns, partials)
        self.schema, self.decisions = schema, decisions
        digests = [d for _, d in sizes]
        digest = digests[0] if len(digests) == 1 else listing_digest(
            [(f.label, f.size, d) for f, d in zip(sources.files, digests, strict=True)])
        self.fingerprint = Fingerprint(file=sources.file, rows=n_rows,
                                       columns=[*schema.names, self.target], sha256=digest,
                                       format=sources.format, files=len(sources))
        self.seconds["statistics"] = time.perf_counter() - started

        started = time.perf_counter()
        if progress:
            progress("scaler", 0, 1)
        encoded = client.map(parts.encode, raw, offsets, schema=schema, target=self.target,
                             fraction=self.fraction, seed=self.seed,
                             target_transform=self.target_transform, pure=False)
        self._futures = list(encoded)
        self._encoded = encoded
        # The rows as read are freed once encoded (dropping the futures; cancelling them would
        # cancel their dependents): the scheduler keeps their tasks to recompute a lost one.
        del raw
        train_rows = client.gather(client.map(_train_rows, encoded, pure=False))
        if sum(train_rows) < 2:
            raise DataError(f"need at least 3 data rows to train and evaluate, got {n_rows}")
        if sum(train_rows) == n_rows:
            raise DataError("the data is too small to hold out rows for evaluation")
        firsts = np.concatenate([[0], np.cumsum(train_rows)[:-1]]).tolist()
        fitted = [f for f, n in zip(encoded, train_rows, strict=True) if n > 0]
        firsts = [a for a, n in zip(firsts, train_rows, strict=True) if n > 0]
        stats = client.gather(client.map(
            _summary, fitted, firsts, n_levels=schema.n_levels,
            stride=sample_stride(sum(train_rows)), pure=False))
        mixing = Mixing(reg)
        mixing.start(stats, stats[0].x.mean.shape[0], schema.n_levels)
        self.seconds["scaler"] = time.perf_counter() - started

        started = time.perf_counter()
        overhead = {"seconds": 0.0}

        def run(shared: Shared, carries: list[Carry]) -> list[RoundResult]:
            begun = time.perf_counter()
            future = _broadcast(client, shared)
            answers = client.gather(client.map(_round, fitted, carries, shared=future,
                                               pure=False))
            del future
            # Time in a round not spent on its slowest partition: scheduling, transfers.
            overhead["seconds"] += time.perf_counter() - begun - max(s for _, s in answers)
            return [result for result, _ in answers]

        mixing.fit(run, progress=(lambda k, n: progress("epoch", k, n)) if progress else None)
        self.rounds = mixing.rounds
        self.seconds["rounds"] = time.perf_counter() - started
        self.seconds["overhead"] = overhead["seconds"]

    def _schema(self, columns: Any, partials: list[tuple[ColumnStats, float, float]]
                ) -> tuple[Schema, list[str], int]:
        """The partitions' statistics merged in file order, and the checks a local run makes."""
        merged = ColumnStats(self.sources, columns, self.options)
        low, high = np.inf, -np.inf
        for stats, lo, hi in partials:
            merged.merge(stats)
            low, high = min(low, lo), max(high, hi)
        if merged.rows < 3:
            raise self.sources.ragged_line() or DataError(
                f"need at least 3 data rows to train and evaluate, got {merged.rows}")
        if low == high:
            raise DataError(f"target column {self.target!r} is constant ({low!r}): "
                            "there is nothing to learn")
        schema, decisions = merged.schema()
        return schema, decisions, merged.rows

    def evaluate(self, candidate: LinearModel, active: LinearModel | None) -> Evaluation:
        """The candidate's metrics on every partition, and ``active``'s on the same held-out
        rows (None: not comparable), merged in file order."""
        started = time.perf_counter()
        client = self.client
        with _cluster_errors():
            models = _broadcast(client, (candidate, active))
            scores = client.gather(client.map(_score, self._encoded, models=models,
                                              seed=self.seed, pure=False))
            del models
        out = Evaluation(RegressionSums(), RegressionSums(),
                         RegressionSums() if active is not None else None,
                         HoldoutSample(self.seed))
        for s in scores:
            out.train.merge(s.train)
            out.holdout.merge(s.holdout)
            if out.active is not None and s.active is not None:
                out.active.merge(s.active)
            out.sample.merge(s.sample)
        self.seconds["evaluation"] = time.perf_counter() - started
        return out

    def provenance(self) -> dict[str, Any]:
        """What the manifest records about the engine: where, on how much, for how long."""
        info = self.client.scheduler_info()
        return {
            "name": "dask",
            "scheduler": info.get("address"),
            "workers": len(info.get("workers", {})),
            "partitions": self.partitions,
            "rounds": self.rounds,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }

    def release(self) -> None:
        """Drop the partitions from the workers' memory."""
        with contextlib.suppress(Exception):  # a cluster that went away has nothing to free
            self.client.cancel(self._futures)
        self._futures, self._encoded = [], []


def _broadcast(client: Any, value: Any) -> Any:
    """``value`` as one future every task of a round depends on: sent once, fetched by each
    worker that needs it, and (unlike scattered data) recomputed if its worker dies."""
    return client.submit(_same, value, pure=False)


# -- tasks (module-level functions: workers import them by name) ------------------------------


def _same(value: Any) -> Any:
    return value


def _rows_and_digest(raw: parts.RawPartition) -> tuple[int, str]:
    return raw.rows, raw.digest


def _train_rows(part: parts.Partition) -> int:
    return len(part.train)


def _summary(part: parts.Partition, first: int, n_levels: tuple[int, ...], stride: int) -> Any:
    train = part.train
    X = train.X if train.X.flags.f_contiguous else np.asfortranarray(train.X)
    return partition_stats(X, train.y, train.codes, n_levels, first_row=first, stride=stride)


def _round(part: parts.Partition, carry: Carry, shared: Shared) -> tuple[RoundResult, float]:
    started = time.perf_counter()
    train = part.train
    # Fortran order whatever a transfer did: the same rounding on every worker, every retry.
    X = train.X if train.X.flags.f_contiguous else np.asfortranarray(train.X)
    result = local_epoch(X, train.y, train.codes, shared, carry)
    return result, time.perf_counter() - started


def _score(part: parts.Partition, models: tuple[LinearModel, LinearModel | None],
           seed: int) -> parts.Scores:
    candidate, active = models
    return parts.score(part, candidate, active, seed)


def _worker_version() -> str:
    return __version__


def _check_workers(client: Any, where: str) -> None:
    """The scheduler has workers, and they run this version of sgdserve."""
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
    except (TimeoutError, OSError):
        raise ClusterError(f"the Dask scheduler at {where} has no workers (waited "
                           f"{WORKERS_TIMEOUT} s)") from None
    try:
        versions: Mapping[str, str] = client.run(_worker_version)
    except Exception as exc:  # a worker that cannot import sgdserve at all
        raise ClusterError(f"the workers of {where} cannot run sgdserve "
                           f"({_first_line(exc)}): install sgdserve[dask] {__version__} on "
                           "every worker") from None
    wrong = {addr: v for addr, v in versions.items() if v != __version__}
    if wrong:
        addr, version = next(iter(wrong.items()))
        raise ClusterError(f"worker {addr} runs sgdserve {version}, this is {__version__}: "
                           "install the same version on every worker")


@contextlib.contextmanager
def _cluster_errors() -> Iterator[None]:
    """The cluster's own failures as one-line ClusterErrors; the data's errors as they are."""
    import distributed

    try:
        yield
    except distributed.KilledWorker as exc:
        raise ClusterError(f"{exc.allowed_failures + 1} workers died in turn while running "
                           f"task {exc.task!r} (out of memory?): give the workers more memory "
                           "or split the data into more, smaller files") from None
    except (distributed.comm.CommClosedError, TimeoutError) as exc:
        raise ClusterError(f"lost the Dask cluster: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
