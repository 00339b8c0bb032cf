"""The registry client's one retry policy: urllib3's `Retry`, capped, logged, and counting its tries."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

import requests
import urllib3
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

# The retry policy, in numbers. The platform client (images/base/platform-client/platform_client/client.py,
# `retry_policy`) builds the same urllib3 Retry in the same shape; it ships alone in an image, so the two are
# kept alike by hand: change one, look at the other. The numbers differ where the calls do: the platform's are
# all POSTs safe to repeat, tried 5 times on any 5xx, a Retry-After waited up to 30 s inside a pipeline step.
RETRIES = 3  # tries after the first: 4 in all
BACKOFF = 0.5  # urllib3's backoff_factor: the waits between tries are 0 s, 1 s, 2 s
MAX_WAIT = 10.0  # the longest single wait, a server's Retry-After included: 3 waits, 30 s at most
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# The idempotent calls made here. A blob-mount POST is left out: sent twice after a decline it opens two uploads.
# urllib3 still retries a connection that never opened, for any method (nothing was sent).
RETRY_METHODS = frozenset({"HEAD", "GET", "PUT", "DELETE"})


class RetriesSpent(MaxRetryError):
    """urllib3's MaxRetryError, with the number of times the request went out (`reason` is the last failure)."""

    def __init__(self, pool: Any, url: str | None, reason: Exception | None = None, tries: int = 1) -> None:
        super().__init__(pool, url or "", reason)
        self.tries = tries


class _Retry(Retry):
    """urllib3's Retry with every wait capped at `max_wait`, that logs each retry, and gives up with RetriesSpent
    (the tries made: its history has one entry per failed try, which urllib3's MaxRetryError does not carry)."""

    def __init__(self, *args: Any, max_wait: float = MAX_WAIT, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_wait = max_wait

    def new(self, **kw: Any) -> _Retry:
        return super().new(max_wait=self.max_wait, **kw)  # urllib3 rebuilds the next Retry from keywords

    def get_backoff_time(self) -> float:
        return min(super().get_backoff_time(), self.max_wait)

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.max_wait)

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: TracebackType | None = None,
    ) -> _Retry:
        tries = len(self.history) + 1
        try:
            retry = super().increment(method, url, response, error, _pool, _stacktrace)
        except MaxRetryError as exc:
            raise RetriesSpent(_pool, url, exc.reason, tries) from exc
        except Exception as exc:
            if error is None or exc is not error:
                raise
            # A read error on a method not retried (a POST) comes back as it was: give it the count too.
            raise RetriesSpent(_pool, url, error, tries) from error
        # urllib3 builds the next one with type(self) (see `new`).
        assert isinstance(retry, _Retry), "urllib3's Retry.increment returns an instance of the caller's class"
        cause = f"HTTP {response.status}" if error is None and response is not None else repr(error)
        log.debug("%s %s: %s; trying again (retries left: %s)", method, url, cause, retry.total)
        return retry


def retry_policy(retries: int = RETRIES, backoff: float = BACKOFF, max_wait: float = MAX_WAIT) -> Retry:
    """The registry client's one retry policy: dropped connections, timeouts, 429 and 5xx, `retries` times.

    Waits grow as `backoff` * 2**n seconds (urllib3 tries the first retry at once), none longer than `max_wait`,
    a server's Retry-After included. Redirects are followed by requests (GET and HEAD), not counted here.
    """
    each_kind = dict.fromkeys(("total", "connect", "read", "status"), retries)  # one budget for every failure
    return _Retry(
        **each_kind,
        redirect=False,
        allowed_methods=RETRY_METHODS,
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff,
        raise_on_status=False,  # the last answer comes back, so the error can quote it
        respect_retry_after_header=True,
        max_wait=max_wait,
    )


def tries_of(response: requests.Response) -> int:
    """How many times urllib3 sent the request that got `response` (its Retry's history, plus the last send)."""
    spent = response.raw.retries if isinstance(response.raw, urllib3.HTTPResponse) else None
    return len(spent.history) + 1 if spent else 1
