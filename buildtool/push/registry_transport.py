"""Requests to a registry: one connection pool under the retry policy, every body read whole, every failure
named (refused, timed out, cut mid-transfer) with the number of tries it took.

Every call is retried a bounded number of times on a dropped connection, a timeout or a 5xx/429 answer:
urllib3's `Retry`, mounted on the session (see registry_retry.py), plus one loop for a body cut after its status
arrived, which urllib3 cannot see.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from typing import Any

import requests
import requests.adapters
import requests.utils
import urllib3
from urllib3.exceptions import MaxRetryError, ProtocolError
from urllib3.util.retry import Retry

from ..errors import RegistryError
from ..reference import Reference
from .registry_retry import RetriesSpent, tries_of


class BodyCut(Exception):
    """An answer's body broke off (or came short of its Content-Length) after its status had arrived."""

    def __init__(self, tries: int) -> None:
        super().__init__()
        self.tries = tries  # the sends urllib3 made for the request that got the cut answer


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and everything it wraps (urllib3 and requests nest the socket error several levels down)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack += [
            e
            for e in (current.__cause__, current.__context__, getattr(current, "reason", None))
            if isinstance(e, BaseException)
        ]
        stack += [a for a in current.args if isinstance(a, BaseException)]


def describe_transport_error(exc: requests.RequestException, host: str, timeout: float) -> str:
    """Which of the ways a connection fails this was: refused, reset mid-transfer, timed out, or else."""
    chain = list(_causes(exc))
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return f"registry {host} refused the connection (nothing listens there): is it running and is the name right?"
    if isinstance(exc, requests.ConnectTimeout) or any(
        isinstance(e, urllib3.exceptions.ConnectTimeoutError) for e in chain
    ):
        return f"registry {host} did not accept a connection within {timeout:.0f}s: is the host reachable?"
    if isinstance(exc, requests.Timeout) or any(
        isinstance(e, (TimeoutError, urllib3.exceptions.ReadTimeoutError)) for e in chain
    ):
        return f"registry {host} stopped answering for {timeout:.0f}s (timeout): is it overloaded?"
    cut = (
        ConnectionResetError,
        BrokenPipeError,
        http.client.IncompleteRead,
        http.client.RemoteDisconnected,
        urllib3.exceptions.ProtocolError,
        requests.exceptions.ChunkedEncodingError,
    )
    if any(isinstance(e, cut) for e in chain):
        return (
            f"the connection to registry {host} was cut mid-transfer (reset or a truncated answer): "
            "a proxy or the registry dropped it"
        )
    return f"registry {host} could not be reached: {exc.__class__.__name__}: {exc}"


def _require_whole(response: requests.Response) -> None:
    """Read the whole body now. A body shorter than its Content-Length is a cut connection (urllib3 1.x hands it
    over as if complete)."""
    body = response.content
    declared = response.headers.get("Content-Length")
    if response.request.method == "HEAD" or not declared or not declared.isdigit():
        return
    if len(body) < int(declared):
        raise requests.exceptions.ChunkedEncodingError(f"truncated answer: {len(body)} of {declared} bytes")


class Transport:
    """One connection pool for the registries a client talks to, every send under the retry policy."""

    def __init__(self, timeout: float, retry: Retry) -> None:
        self.timeout = timeout
        self.retry = retry
        self._session = requests.Session()
        self._session.trust_env = False  # no ~/.netrc; proxies from the environment are applied per request
        adapter = requests.adapters.HTTPAdapter(max_retries=self.retry)  # every send, token requests included
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)

    def close(self) -> None:
        self._session.close()

    def send(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        auth: Any,
        body: bytes | None,
        params: list[tuple[str, str]] | None = None,
        verify: bool | str = True,
    ) -> requests.Response:
        """One request under the retry policy, its body read whole: BodyCut if that body broke off."""
        proxies = requests.utils.get_environ_proxies(url)  # HTTPS_PROXY/NO_PROXY still apply; netrc does not
        response = self._session.request(
            method,
            url,
            headers=headers,
            data=body,
            auth=auth,
            params=params,
            proxies=proxies,
            timeout=self.timeout,
            stream=True,
            verify=verify,
            allow_redirects=method in ("GET", "HEAD"),
        )
        try:
            _require_whole(response)
        except requests.RequestException as exc:
            response.close()
            raise BodyCut(tries_of(response)) from exc
        return response

    def call(self, method: str, url: str, ref: Reference, once: Callable[[], requests.Response]) -> requests.Response:
        """`once()` (a request of `method` to `url`) under the retry policy; RegistryError saying which failure,
        and how many tries it took."""
        retry = self.retry
        tries = 0  # sends made by the attempts whose answer broke off
        while True:
            try:
                return once()
            except BodyCut as cut:
                # The one retry outside urllib3: requests reads a body after urllib3 has handed the answer over,
                # so a body that breaks off is never seen by the mounted Retry. It counts against the same policy
                # here, as a read error (so a POST is not sent again).
                tries += cut.tries
                failure = cut.__cause__ if isinstance(cut.__cause__, requests.RequestException) else None
                try:
                    retry = retry.increment(method=method, url=url, error=ProtocolError(str(failure)))
                except MaxRetryError:
                    reason = describe_transport_error(
                        failure or requests.exceptions.ChunkedEncodingError(), ref.api_host, self.timeout
                    )
                    raise RegistryError(f"{method} {ref}: {reason} (tried {tries} time(s))") from None
                retry.sleep()
            except requests.RequestException as exc:
                spent = next((e for e in _causes(exc) if isinstance(e, RetriesSpent)), None)
                tries += spent.tries if spent else 1  # no RetriesSpent: failed before the policy was asked
                raise RegistryError(
                    f"{method} {ref}: {describe_transport_error(exc, ref.api_host, self.timeout)}"
                    f" (tried {tries} time(s))"
                ) from None
