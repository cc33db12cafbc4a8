"""Domain errors and their mapping to google.rpc.Status.

Handlers and stores raise these; the error-mapping interceptor turns them into a
status with an ErrorInfo (stable reason) and, for bad input, a BadRequest.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from corrigo.v1 import errors_pb2

DOMAIN = "corrigo.v1"
# An error travels in headers that a client refuses past 16 KiB (grpc's default limit):
# it names this many violations at most, each clipped, and counts the others.
MAX_VIOLATIONS = 10
_MAX_FIELD_BYTES = 128
_MAX_DESCRIPTION_BYTES = 256
_MAX_MESSAGE_BYTES = 1024


def clipped(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8 (on a character), marked when cut."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "…"


class CorrigoError(Exception):
    """An expected failure with a gRPC code and a stable reason."""

    code = grpc.StatusCode.UNKNOWN
    reason: int = errors_pb2.ERROR_REASON_UNSPECIFIED

    def __init__(
        self,
        message: str,
        *,
        reason: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = dict(metadata or {})

    def details(self) -> list[any_pb2.Any]:
        info = error_details_pb2.ErrorInfo(
            reason=errors_pb2.ErrorReason.Name(errors_pb2.ErrorReason.ValueType(self.reason)),
            domain=DOMAIN,
            metadata=self.metadata,
        )
        packed = any_pb2.Any()
        packed.Pack(info)
        return [packed]

    def to_status(self) -> grpc.Status:
        status = status_pb2.Status(
            code=self.code.value[0],
            message=clipped(self.message, _MAX_MESSAGE_BYTES),
            details=self.details(),
        )
        return rpc_status.to_status(status)


class InvalidArgument(CorrigoError):
    """Bad input; `violations` names each bad field (proto field paths). The status sends
    the first MAX_VIOLATIONS of them (`sent`), in order, and counts the rest (`omitted`)."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = errors_pb2.INVALID_REQUEST

    def __init__(self, violations: list[tuple[str, str]], *, reason: int | None = None) -> None:
        self.violations = violations
        self.sent = [
            (clipped(field, _MAX_FIELD_BYTES), clipped(description, _MAX_DESCRIPTION_BYTES))
            for field, description in violations[:MAX_VIOLATIONS]
        ]
        self.omitted = len(violations) - len(self.sent)
        metadata = {"omitted_violations": str(self.omitted)} if self.omitted else None
        super().__init__(_summary(self.sent, len(violations)), reason=reason, metadata=metadata)

    @classmethod
    def field(cls, field: str, description: str, *, reason: int | None = None) -> InvalidArgument:
        return cls([(field, description)], reason=reason)

    def details(self) -> list[any_pb2.Any]:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
                for field, description in self.sent
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        return [*super().details(), packed]


def _summary(violations: list[tuple[str, str]], total: int) -> str:
    """The violations that fit the message's bytes, in order, then how many more there
    are (the message travels as a header too)."""
    named: list[str] = []
    for field, description in violations:
        more = f"; and {total - len(named) - 1} more like these" if len(named) + 1 < total else ""
        candidate = "; ".join([*named, f"{field}: {description}"]) + more
        if named and len(candidate.encode()) > _MAX_MESSAGE_BYTES:
            break
        named.append(f"{field}: {description}")
    rest = total - len(named)
    return "; ".join(named) + (f"; and {rest} more like these" if rest else "")


class Unauthenticated(CorrigoError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(CorrigoError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = errors_pb2.PERMISSION_MISSING


class NotFound(CorrigoError):
    code = grpc.StatusCode.NOT_FOUND
    reason = errors_pb2.RESOURCE_NOT_FOUND


class AlreadyExists(CorrigoError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = errors_pb2.RESOURCE_EXISTS


class Aborted(CorrigoError):
    """A conflict with the current state that maps to HTTP 409."""

    code = grpc.StatusCode.ABORTED


class ConcurrentChange(Aborted):
    """Another transaction touched the same rows at the same moment (a deadlock or a
    serialization failure): nothing was written, and the same call again succeeds."""

    reason = errors_pb2.CONCURRENT_CHANGE

    def __init__(self) -> None:
        super().__init__("another call changed the same data at the same moment; retry")


class FailedPrecondition(CorrigoError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = errors_pb2.FAILED_PRECONDITION


class Unavailable(CorrigoError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = errors_pb2.DATABASE_UNAVAILABLE


class DeadlineExceeded(CorrigoError):
    """A statement was stopped at its call's deadline or at the server's statement limit;
    its transaction was rolled back. Not retried by the client: a retried slow statement
    would only multiply the load."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = errors_pb2.STATEMENT_TIMEOUT


class TooManyFollowers(CorrigoError):
    """The process follows as many export streams as it may (`--max-followers`)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = errors_pb2.TOO_MANY_FOLLOWERS


class StorageFull(CorrigoError):
    """The database's storage is full: the write was rolled back, reads still work."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = errors_pb2.STORAGE_FULL


def unstorable_value() -> InvalidArgument:
    """The answer for a value the database refused to store (never the driver's text,
    which may quote SQL or values)."""
    return InvalidArgument.field(
        "request",
        "holds a value the database cannot store "
        "(such as a NUL character in a text, or a number out of range)",
    )


class Internal(CorrigoError):
    """An unexpected failure: no stack, no SQL, only an id that is also in the log."""

    code = grpc.StatusCode.INTERNAL
    reason = errors_pb2.INTERNAL_ERROR

    @classmethod
    def logged_as(cls, error_id: str) -> Internal:
        return cls(f"internal error (error id {error_id})", metadata={"error_id": error_id})
