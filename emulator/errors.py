"""The error type the emulator's state machine raises, and CDF's error body shape."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A CDF API error: the HTTP status plus the ``{"error": {...}}`` body the server answers with.

    ``extra`` holds further keys of the error object, such as ``missing`` or ``duplicated``
    (the SDK turns a 4xx with ``missing`` into ``CogniteNotFoundError``).
    """

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """The JSON body CDF answers for this error."""
        return error_body(self.status, self.message, **self.extra)


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    """``{"error": {"code": status, "message": message, ...extra}}``, CDF's error body."""
    error: dict[str, Any] = {"code": status, "message": message}
    error.update(extra)
    return {"error": error}


def bad_request(message: str, **extra: Any) -> ApiError:
    """A 400 with the given message."""
    return ApiError(400, message, **extra)


def not_found(message: str, **extra: Any) -> ApiError:
    """A 404 with the given message."""
    return ApiError(404, message, **extra)
