"""The server's log lines: text (the default) or one JSON object per line.

A JSON line holds time (ISO 8601, UTC), level, logger and message; an access line
(server/api/interceptors.py) adds method, code, duration_ms, principal, peer and trace_id;
a line logged with an exception adds it as `exception`. Log shippers parse them as they
are. No token is ever logged, in either format.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from corrigo.server.ops import tracing

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
# A worker of `corrigo serve --workers N` names itself by its process id on every line.
WORKER_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s worker=%(process)d %(message)s"


class JsonFormatter(logging.Formatter):
    def __init__(self, worker: bool = False) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker:
            line["worker"] = record.process
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line.update(access)
        else:
            trace_id = tracing.trace_id()
            if trace_id:
                line["trace_id"] = trace_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(level: str, log_format: str, worker: bool = False) -> None:
    """Log to stderr at `level`, as `log_format` says (text or json); a `worker`'s lines
    carry its process id (`worker=PID`, JSON field `worker`)."""
    handler = logging.StreamHandler()
    formatter: logging.Formatter = (
        JsonFormatter(worker)
        if log_format == "json"
        else logging.Formatter(WORKER_TEXT_FORMAT if worker else TEXT_FORMAT)
    )
    handler.setFormatter(formatter)
    logging.basicConfig(level=level, handlers=[handler], force=True)
