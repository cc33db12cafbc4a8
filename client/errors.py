"""Errors raised by the client, with the server's status details decoded."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

_DETAILS_KEY = "grpc-status-details-bin"


class CorrigoError(grpc.RpcError):
    """A failed call: the gRPC code and message, plus the ErrorInfo reason, the
    BadRequest field violations and the error id the server sent. Every call of `Client`
    and `AsyncClient`, unary or streaming, raises this and no other gRPC error."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.reason = ""
        self.error_metadata: dict[str, str] = {}
        self.field_violations: list[tuple[str, str]] = []
        for detail in status.details if status else ():
            info = error_details_pb2.ErrorInfo()
            bad_request = error_details_pb2.BadRequest()
            if detail.Unpack(info):
                self.reason = info.reason
                self.error_metadata = dict(info.metadata)
            elif detail.Unpack(bad_request):
                self.field_violations = [
                    (v.field, v.description) for v in bad_request.field_violations
                ]

    @property
    def fields(self) -> list[str]:
        """The names of the fields the server rejected."""
        return [field for field, _ in self.field_violations]

    @property
    def omitted_violations(self) -> int:
        """How many field violations the server counted beyond those it sent (an error
        names the first few, so that it always fits the headers it travels in)."""
        return int(self.error_metadata.get("omitted_violations", "0"))

    @property
    def error_id(self) -> str:
        """The id an INTERNAL error is logged under on the server ("" for other errors)."""
        return self.error_metadata.get("error_id", "")

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> CorrigoError:
        if isinstance(error, CorrigoError):
            return error
        status = None
        for key, value in error.trailing_metadata() or ():
            if key == _DETAILS_KEY:
                status = status_pb2.Status.FromString(value)
        return cls(error.code(), error.details() or "", status)


class UsageError(Exception):
    """A request the client refuses before or without calling the server (a file that
    cannot be read, arguments that contradict each other): one line saying what is wrong,
    where, and what to do. `status`: the command's exit status (2 for arguments that
    cannot be right together, as argparse's own refusals; 1 for the rest)."""

    def __init__(self, message: str, *, status: int = 1) -> None:
        super().__init__(message)
        self.status = status
