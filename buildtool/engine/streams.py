"""What the engine's answers can fail with: errors of the transport, and failures reported inside a stream.

The SDK reports build, push and pull failures inside its streams (with HTTP 200), so every chunk is read and
`error`/`errorDetail` turns into an exception by the caller.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

import requests
import urllib3
from docker.errors import DockerException

# What a call or a stream from the engine can raise besides an error chunk.
TRANSPORT_ERRORS = (DockerException, requests.RequestException, urllib3.exceptions.HTTPError, OSError)


def stream_error(chunk: Mapping[str, Any]) -> str | None:
    """The failure a build, push or pull stream reports inside a chunk (with HTTP 200), or None."""
    if "error" not in chunk and "errorDetail" not in chunk:
        return None
    return str(chunk.get("errorDetail", {}).get("message") or chunk.get("error")).strip()


def cut(response: requests.Response) -> None:
    """Stop a streamed response from another thread: shut its socket down, which wakes a blocked read."""
    try:
        sock = response.raw._fp.fp.raw._sock  # what docker-py's own attach helpers reach for
        sock.shutdown(socket.SHUT_RDWR)
    except (AttributeError, OSError):
        pass
    response.close()


def no_progress(_: str) -> None:
    pass
