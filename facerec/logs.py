"""Logging set-up for every process: the request id in every line, as plain text (the default) or as
one JSON object a line (`--log-format json`) for log collectors."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import TextIO

from facerec import requestid
from facerec.settings import LOG_FORMATS

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# What a line outside any request shows where the id would be.
NO_REQUEST = "-"


class RequestIdFilter(logging.Filter):
    """Puts the current request id on every record as `request_id` (NO_REQUEST outside a request).

    A filter on the handler, not on a logger: it sees the records of every logger that reaches it,
    the libraries' (uvicorn, grpc) included."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = requestid.current() or NO_REQUEST
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC, ISO 8601), level, logger, message, request_id, and exception
    (the traceback's text) when there is one. Newlines in a message stay inside its JSON string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "") or requestid.current(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def handler(log_format: str = "text", stream: TextIO | None = None) -> logging.Handler:
    """A handler writing to `stream` (stderr when None) in `log_format` ("text" or "json") that adds
    the request id to every record."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"The log format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}.")
    out = logging.StreamHandler(stream)
    out.addFilter(RequestIdFilter())
    out.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    return out


def configure(level: int, log_format: str = "text") -> None:
    """The root logger at `level`, writing to stderr in `log_format`. Forced: `facerec serve gallery -v`
    runs the service in the CLI's process, which configured logging first."""
    logging.basicConfig(level=level, handlers=[handler(log_format)], force=True)
