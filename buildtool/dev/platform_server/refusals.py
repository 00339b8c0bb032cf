"""How a request ends early: a refusal the client is told about, or a client that went away."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus


class Refusal(Exception):
    """Answer the request with `status` and a JSON error message."""

    def __init__(
        self, status: HTTPStatus, message: str, headers: Mapping[str, str] | None = None, *, close: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.close = close  # where the request ends is unknown: the connection must not serve another


class ClientGone(Exception):
    """The connection failed or timed out while the request was being read."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out
