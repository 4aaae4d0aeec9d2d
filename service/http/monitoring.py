"""The monitoring blueprint: ``GET /monitoring``, live quality and drift from the logs.

The join (service/monitor/) runs on demand: a request reads the last report when it is younger
than ``SGDSERVE_MONITOR_REFRESH`` seconds and covers the same window and level, else joins the
logs now (one worker at a time; the others wait and read its result). ``?refresh=true`` joins
now; ``?window=24h`` and ``?level=0.8`` change what is covered. The same document is what
``sgdserve monitor --json`` prints.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from ..monitor.report import cached_report
from ..util import parse_duration
from .errors import APIError, json_response
from .state import state

bp = Blueprint("monitoring", __name__)

_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no", "")


@bp.get("/monitoring")
def monitoring() -> Response:
    """Per model version: rows with feedback, live and holdout RMSE/MAE, interval coverage,
    and each feature's drift against training."""
    st = state()
    settings = st.settings
    args = request.args
    for key in args:
        if key not in ("window", "level", "refresh"):
            raise APIError(f"unknown parameter {key[:50]!r}; /monitoring takes window, level "
                           "and refresh", code="invalid_parameter")
    window = settings.monitor_window
    if "window" in args:
        if args["window"] == "all":
            window = None
        else:
            try:
                window = parse_duration(args["window"])
            except ValueError as exc:
                raise APIError(f"window: {exc} (or 'all')", code="invalid_parameter") from None
    level = settings.monitor_level
    if "level" in args:
        try:
            level = float(args["level"])
        except ValueError:
            level = -1.0
        if not 0 < level < 1:
            raise APIError(f"level must be a number between 0 and 1, got {args['level'][:20]!r}",
                           code="invalid_parameter")
    refresh = args.get("refresh", "").lower()
    if refresh not in _TRUE + _FALSE:
        raise APIError(f"refresh must be true or false, got {refresh[:20]!r}",
                       code="invalid_parameter")
    report = cached_report(st.store, settings.logs_path, window=window, level=level,
                           max_age=settings.monitor_refresh, refresh=refresh in _TRUE)
    headers = {"X-Model-Version": report["model_version"]} if report.get("model_version") else None
    return json_response(report, headers=headers)
