"""The exceptions sgdserve raises, one hierarchy for the whole package.

    SGDServeError
    ├── DataError (ValueError)          input data is malformed; names the column and line
    ├── DivergenceError (ArithmeticError)  SGD produced a non-finite loss or weight
    ├── ClusterError                    the Dask cluster cannot be reached, or failed a task
    ├── StoreError                      the model store refused an operation
    │   ├── VersionNotFoundError        no such version
    │   ├── NoActiveModelError          nothing has been promoted yet
    │   ├── IntegrityError              an artifact is missing, truncated or tampered with
    │   │   ├── CurrentDamagedError     CURRENT holds something that is not a version id
    │   │   └── SignatureError          a version is unsigned, or its signature does not match
    │   ├── CurrentChangedError         CURRENT is not the version the caller expected
    │   ├── LockHeldError               another process holds the store lock
    │   ├── LockLostError               the lease this process held expired and was taken
    │   └── StoreUnavailableError       the object store cannot be reached or refused access
    └── JobError                        a retrain job cannot be started or found
        ├── JobNotFoundError (KeyError) no job with that id
        └── JobConflictError            another retrain job is running

    ConvergenceWarning (UserWarning)    the epoch limit was reached before converging

The HTTP layer maps these onto status codes in one place (service/http/errors.py).
"""

from __future__ import annotations


class SGDServeError(Exception):
    """Base class of every error sgdserve raises on purpose."""


class DataError(SGDServeError, ValueError):
    """Input data is malformed; the message names the column and line (or row)."""

    def __init__(self, message: str, *, column: str | None = None, line: int | None = None):
        super().__init__(message)
        self.column = column
        self.line = line

    def __reduce__(self) -> tuple:  # raised on a Dask worker, re-raised whole by the client
        return (_data_error, (type(self), str(self), self.column, self.line))


def _data_error(cls: type[DataError], message: str, column: str | None,
                line: int | None) -> DataError:
    return cls(message, column=column, line=line)


class DivergenceError(SGDServeError, ArithmeticError):
    """SGD produced a non-finite loss or weight; a smaller learning rate usually helps."""


class ClusterError(SGDServeError):
    """The Dask cluster cannot be reached (or is missing sgdserve), or a task failed there."""


class StoreError(SGDServeError):
    """The model store refused an operation."""


class VersionNotFoundError(StoreError, KeyError):
    """No version with that id exists in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NoActiveModelError(StoreError):
    """No version has been promoted yet."""


class IntegrityError(StoreError):
    """A stored artifact is missing, truncated, or does not match its recorded sha256."""


class CurrentDamagedError(IntegrityError):
    """``CURRENT`` holds something that is not a version id (a hand edit, a full disk)."""


class SignatureError(IntegrityError):
    """A version has no valid signature by an accepted key (unsigned, tampered, or another key)."""


class CurrentChangedError(StoreError):
    """``CURRENT`` is not the version the caller expected: another promotion came first."""

    def __init__(self, message: str, *, current: str | None = None):
        super().__init__(message)
        self.current = current


class LockHeldError(StoreError):
    """Another process holds the store lock; ``holder`` describes it when known."""

    def __init__(self, message: str, *, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder


class LockLostError(StoreError):
    """The store lease this process held expired and another process took it."""


class StoreUnavailableError(StoreError):
    """The object store cannot be reached, or refused the request (credentials, bucket)."""


class JobError(SGDServeError):
    """A retrain job cannot be started or found."""


class JobNotFoundError(JobError, KeyError):
    """No retrain job with that id exists (or the id is malformed)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class JobConflictError(JobError):
    """Another retrain job is already running."""

    def __init__(self, message: str, *, job_id: str | None = None):
        super().__init__(message)
        self.job_id = job_id


class ConvergenceWarning(UserWarning):
    """The epoch limit was reached before the loss stopped improving."""
