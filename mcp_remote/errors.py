"""Errors of the remote backend, each tied to the gRPC status the server answers with.

The server turns every :class:`~mcp_core.errors.MCPError` into a status and sends the error's
class name in the ``mcp-error`` trailer; the client raises the same class again with the same
sentence, so code written against :class:`~mcp_core.backend.LocalBackend` catches the same
exceptions from a :class:`~mcp_remote.client.RemoteBackend`.
"""

from __future__ import annotations

import re

import grpc

from mcp_core import errors as core_errors
from mcp_core.errors import MCPError

from .auth import AuthError


class RemoteError(MCPError):
    """An error reported by (or while reaching) a MultiCellPose server."""

    code = grpc.StatusCode.UNKNOWN


class NotFound(RemoteError):
    """No such file, model, dataset or job for this user."""

    code = grpc.StatusCode.NOT_FOUND


class ModelNotFound(NotFound, core_errors.ModelError):
    """No model of that name for this user (a ModelError, as a LocalBackend raises)."""


class JobNotFound(NotFound, core_errors.JobError):
    """No job of that id for this user (a JobError, as a LocalBackend raises)."""


class InvalidRequest(RemoteError):
    """A request the server refuses whatever its state: a bad name, a pickled file, an oversize upload."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class QuotaExceeded(RemoteError):
    """The user's storage quota would be exceeded."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Busy(RemoteError):
    """The user already has as many calls of this kind open as the server allows one user."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Forbidden(RemoteError):
    """The user may not do this (a non-admin writing a shared model)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Conflict(RemoteError):
    """The request does not fit the current state (an upload offset that is not where the file ends)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class Corrupted(RemoteError):
    """Received data does not match its sha256."""

    code = grpc.StatusCode.DATA_LOSS


class Unreachable(RemoteError):
    """The server cannot be reached (tunnel down, server stopped)."""

    code = grpc.StatusCode.UNAVAILABLE


class Throttled(AuthError):
    """Too many failed logins."""


#: Status of each error class the server may raise; the most specific class wins.
STATUS_OF: dict[type[Exception], grpc.StatusCode] = {
    Throttled: grpc.StatusCode.RESOURCE_EXHAUSTED,
    AuthError: grpc.StatusCode.UNAUTHENTICATED,
    core_errors.ParameterError: grpc.StatusCode.INVALID_ARGUMENT,
    core_errors.ImageReadError: grpc.StatusCode.INVALID_ARGUMENT,
    core_errors.LabelFileError: grpc.StatusCode.INVALID_ARGUMENT,
    core_errors.ModelError: grpc.StatusCode.FAILED_PRECONDITION,
    core_errors.JobError: grpc.StatusCode.FAILED_PRECONDITION,
}

#: Classes a client may re-raise by the name in the ``mcp-error`` trailer (never an arbitrary name).
RAISABLE: dict[str, type[MCPError]] = {cls.__name__: cls for cls in (
    core_errors.MCPError, core_errors.ParameterError, core_errors.ImageReadError, core_errors.LabelFileError,
    core_errors.ModelError, core_errors.JobError, AuthError, Throttled, RemoteError, NotFound, ModelNotFound,
    JobNotFound, InvalidRequest,
    QuotaExceeded, Busy, Forbidden, Conflict, Corrupted, Unreachable)}

_BY_CODE = {cls.code: cls for cls in (NotFound, InvalidRequest, QuotaExceeded, Forbidden, Conflict, Corrupted,
                                       Unreachable)}


#: An absolute path inside a text; only its last part is sent to a client.
_PATH = re.compile(r"(?<![\w.])(?:/[^\s/'\"():,]+)+/([^\s/'\"():,]*)")


def public_message(text: str) -> str:
    """*text* with every absolute path (two parts or more) cut to its last part."""
    return _PATH.sub(r"\1", text)


def status_of(exc: Exception) -> grpc.StatusCode:
    """The status a server answers *exc* with."""
    if isinstance(exc, RemoteError):
        return exc.code
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.INTERNAL


def from_rpc_error(err: grpc.RpcError) -> MCPError:
    """The exception a client raises for a failed call (with ``.status`` set to the gRPC code)."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = (err.details() if hasattr(err, "details") else "") or str(code)
    name = dict(err.trailing_metadata() or ()).get("mcp-error", "") if hasattr(err, "trailing_metadata") else ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        cls: type[MCPError] = AuthError
    elif name in RAISABLE:
        cls = RAISABLE[name]
    else:
        cls = _BY_CODE.get(code, RemoteError)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and name not in RAISABLE:
        cls = Unreachable
        details = f"The MultiCellPose server cannot be reached: {details}"
    exc = cls(details)
    exc.status = code  # type: ignore[attr-defined]
    return exc
