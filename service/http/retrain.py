"""The retrain blueprint: ``POST /retrain`` (a CSV upload, a text/csv body or JSON rows) and
``GET /retrain/<job_id>``.

The parameters are validated from the one description in service/params.py before any upload is
read; the data is streamed to the job's directory; the job runs in a child process that holds
the store's lock (service/retrain.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, request, url_for

from .. import retrain as jobs
from ..errors import DataError
from ..params import ParameterError, TrainingSpec, parse_training_params
from ..store import HeldLock, JobStatus
from ..util import utc_iso
from .auth import require_token
from .body import json_type, parse_json, read_json_body
from .errors import APIError, json_response
from .state import ServiceState, state

bp = Blueprint("retrain", __name__)

_COPY_CHUNK = 1 << 20
MAX_WAIT_SECONDS = 60.0


@bp.post("/retrain")
def retrain() -> Response:
    """Start a retrain job from a CSV upload, a text/csv body or JSON rows."""
    st = state()
    require_token(st)  # before anything of the body is read
    kind = _upload_kind()
    settings = st.settings
    # Uploads stream to disk, so they may be large; JSON rows are parsed in memory.
    request.max_content_length = (
        settings.max_upload_bytes if kind in ("multipart", "csv") else settings.max_body_bytes
    )
    wait = _parse(lambda: parse_wait(request.args.get("wait"), wait_limit(settings)))
    query = {k: v for k, v in request.args.items() if k != "wait"}
    spec = _merge(query, {}, typed=False)  # the query alone is checked before any upload
    store = st.store
    jobs.check_not_locked(store)  # refuse early, before reading a large upload
    rows = None
    if kind == "json":
        spec, rows = _json_rows(query)

    job_id = store.jobs.new_id()
    directory = store.jobs.directory(job_id)
    held: HeldLock | None = None
    try:
        data_path = directory / jobs.DATA_FILE
        uploaded_as = None
        if kind == "multipart":
            spec, uploaded_as = _receive_multipart(directory, data_path, query)
        elif kind == "csv":
            _receive_stream(data_path)
        else:
            _write_rows(rows, data_path)
        spec.format = spec.format or _format_of(kind, uploaded_as)
        spec.target = _check_columns(st, data_path, spec)
        spec.tolerance = settings.promote_tolerance
        held = jobs.acquire_lock(store, job_id)  # 409 if another run took it meanwhile
        request_record = dict(
            spec.to_dict(),
            source=f"POST /retrain ({kind}, job {job_id})",
            data={"format": kind, "bytes": data_path.stat().st_size},
        )
        store.jobs.write(job_id, {"status": JobStatus.QUEUED, "created_at": utc_iso(),
                                  "request": request_record})
    except BaseException:
        if held is not None:
            jobs.release_unstarted(held)
        jobs.remove_job_dir(directory)
        raise
    _start(st, job_id, held, directory)

    status_url = url_for("retrain.retrain_status", job_id=job_id)
    if wait > 0:
        record = jobs.wait_for(store, job_id, wait)
        if record.get("status") in JobStatus.final():
            return json_response(_job_body(record, status_url))
    accepted: dict[str, Any] = {"job_id": job_id, "status": JobStatus.QUEUED,
                                "status_url": status_url}
    if spec.notes:  # e.g. an old spelling that was read
        accepted["notes"] = spec.notes
    return json_response(accepted, status=202, headers={"Location": status_url})


def wait_limit(settings: Any) -> float:
    """The longest ``?wait=``: a sync worker blocks meanwhile, so stay inside its timeout."""
    if settings.timeout > 0:
        return max(0.0, min(MAX_WAIT_SECONDS, settings.timeout - 5.0))
    return MAX_WAIT_SECONDS


def parse_wait(raw: str | None, limit: float) -> float:
    """Seconds to wait for a job (``?wait=``), between 0 and ``limit``."""
    if raw is None:
        return 0.0
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= limit:  # also refuses NaN
        raise ParameterError("wait", f"wait must be between 0 and {limit:g} seconds, got {raw!r}")
    return seconds


def _json_rows(query: Mapping[str, str]) -> tuple[TrainingSpec, list[Any]]:
    """The parameters and rows of a JSON retrain body."""
    body = parse_json(read_json_body(request._get_current_object()))
    if type(body) is not dict:
        raise APIError(f"request body must be a JSON object with 'rows', got {json_type(body)}")
    rows = body.pop("rows", None)
    if type(rows) is not list or not rows:
        raise APIError(
            "'rows' must be a non-empty list of objects (one per data row)",
            code="invalid_parameter",
            parameter="rows",
        )
    return _merge(query, body, typed=True), rows


def _start(st: ServiceState, job_id: str, held: HeldLock, directory: Path) -> None:
    try:
        jobs.start(st.store, job_id, held, on_exit=st.job_finished)  # hands the lock over
    except OSError as exc:  # fork/exec failed: the job is already marked failed
        jobs.remove_job_dir(directory)
        raise APIError(
            f"cannot start the training process: {exc.strerror or exc}",
            status_code=503,
            code="unavailable",
            job_id=job_id,
        ) from None


@bp.get("/retrain/<job_id>")
def retrain_status(job_id: str) -> Response:
    """A retrain job's status, read from its job file (any worker can answer)."""
    store = state().store
    record = jobs.read_status(store, job_id)
    return json_response(_job_body(record, url_for("retrain.retrain_status", job_id=job_id)))


def _job_body(record: Mapping[str, Any], status_url: str) -> dict[str, Any]:
    body = dict(record)
    body["job_id"] = body.pop("id", None)
    body["status_url"] = status_url
    body.pop("pid", None)
    return body


def _upload_kind() -> str:
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        return "multipart"
    if mimetype == "text/csv":
        return "csv"
    if mimetype == "application/json":
        return "json"
    raise APIError(
        "Content-Type must be multipart/form-data (field 'file'), text/csv or application/json, "
        f"got {mimetype or 'none'!r}",
        status_code=415,
        code="unsupported_media_type",
    )


def _parse(parse: Any) -> Any:
    try:
        return parse()
    except ParameterError as exc:
        raise APIError(str(exc), code="invalid_parameter", parameter=exc.name) from None


def _merge(query: Mapping[str, str], values: Mapping[str, Any], *, typed: bool) -> TrainingSpec:
    """Parameters from the body (form or JSON) together with any in the query string."""
    for name in values:
        if name in query:
            raise APIError(
                f"parameter {name[:50]!r} is given both in the query and in the body",
                code="invalid_parameter",
                parameter=name,
            )
    spec = _parse(lambda: parse_training_params(values, typed=typed))
    spec.merge(_parse(lambda: parse_training_params(query, typed=False)), set(query))
    return spec


def _receive_multipart(
    directory: Path, data_path: Path, query: Mapping[str, str]
) -> tuple[TrainingSpec, str | None]:
    request.upload_dir = str(directory)  # file parts are written straight into the job dir
    files = request.files
    form = request.form.to_dict()
    upload = files.get("file")
    for _field, storage in files.items(multi=True):
        if storage is not upload:
            storage.close()
            _unlink(storage.stream)
    if upload is None:
        if "file" in form:
            raise APIError(
                "field 'file' must be a file upload (with a filename), not a plain form field",
                code="invalid_parameter",
                parameter="file",
            )
        raise APIError(
            "multipart upload has no field 'file' with the data",
            code="invalid_parameter",
            parameter="file",
        )
    filename = upload.filename
    stream = upload.stream
    name = getattr(stream, "name", None)
    if isinstance(name, str) and Path(name).parent == directory:
        stream.close()
        os.replace(name, data_path)  # same directory: a rename, not a copy
    else:  # a stream some other factory made: copy it in chunks
        upload.save(data_path, _COPY_CHUNK)
        upload.close()
    return _merge(query, form, typed=False), filename


def _unlink(stream: Any) -> None:
    name = getattr(stream, "name", None)
    if isinstance(name, str):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass


def _receive_stream(data_path: Path) -> None:
    stream = request.stream  # bounded by max_content_length (413 past it)
    with open(data_path, "wb") as out:
        while True:
            chunk = stream.read(_COPY_CHUNK)
            if not chunk:
                break
            out.write(chunk)


def _write_rows(rows: Any, data_path: Path) -> None:
    from ..data import write_rows_jsonl

    try:
        write_rows_jsonl(rows, data_path)
    except DataError as exc:
        raise APIError(str(exc), code="invalid_data") from None


def _format_of(kind: str, filename: str | None) -> str:
    """The data's format: JSON rows are written as JSON lines, a text/csv body is CSV, and an
    upload is what its file name says (CSV when it says nothing we know)."""
    from ..data import detect_format

    if kind == "json":
        return "jsonl"
    if kind == "multipart" and filename:
        try:
            return detect_format(filename)
        except DataError:
            return "csv"
    return "csv"


def _check_columns(st: ServiceState, data_path: Path, spec: TrainingSpec) -> str:
    """Refuse data without the target or a requested feature now, not in the job."""
    from ..data import open_source

    if data_path.stat().st_size == 0:
        raise APIError("the uploaded data is empty", code="invalid_data")
    try:
        columns = open_source(data_path, spec.format).columns
    except DataError as exc:
        raise APIError(f"the uploaded data cannot be read: {exc}", code="invalid_data") from None
    target = spec.target
    if target is None:
        version, model = st.holder.get()
        if model is None:
            raise APIError(
                "target is required: there is no active model to take it from",
                code="invalid_parameter",
                parameter="target",
            )
        target = model.target
    if target not in columns:
        raise APIError(
            f"target {target!r} is not a column of the data (columns: {_columns(columns)})",
            code="invalid_parameter",
            parameter="target",
        )
    for option in ("features", "categorical", "numeric", "drop"):
        names = spec.features if option == "features" else spec.encoding.get(option)
        for name in names or ():
            if name not in columns:
                raise APIError(
                    f"{'feature' if option == 'features' else option} {name!r} is not a column "
                    f"of the data (columns: {_columns(columns)})",
                    code="invalid_parameter",
                    parameter=option,
                )
    return target


def _columns(columns: list[str]) -> str:
    text = ", ".join(columns)
    return text if len(text) <= 200 else text[:197] + "..."
